"""Token counting with tiktoken, from the encodings LiteLLM ships (no download).

One encoder per process, loaded on first use: counting must be cheap enough for chunking
and prompt fitting, and the encoding is immutable so sharing it across threads is safe.
"""

from __future__ import annotations

import contextlib
import functools
import re
import threading
from collections import OrderedDict
from collections.abc import Sequence

import tiktoken

DEFAULT_ENCODING = "cl100k_base"


@functools.cache
def encoder(name: str = DEFAULT_ENCODING) -> tiktoken.Encoding:
    return tiktoken.get_encoding(name)


def num_tokens(text: str, encoding: str = DEFAULT_ENCODING) -> int:
    """Tokens in ``text``; special-token markers in user text count as plain text."""
    if not text:
        return 0
    return len(encoder(encoding).encode(text, disallowed_special=()))


def truncate(text: str, max_tokens: int, encoding: str = DEFAULT_ENCODING) -> str:
    """The longest prefix of ``text`` that fits in ``max_tokens`` tokens."""
    tokens = encoder(encoding).encode(text, disallowed_special=())
    if len(tokens) <= max_tokens:
        return text
    return encoder(encoding).decode(tokens[: max(max_tokens, 0)])


# A newline followed by anything but whitespace ends every pre-token of cl100k and o200k
# (their split patterns let a token run over newlines only into more newlines or spaces), so
# the pieces of a text split after it are encoded independently: their counts add up exactly.
_INDEPENDENT_PIECE = re.compile(r"(?<=\n)(?=\S)")
CACHED_PIECES = 8192


class PieceCounts:
    """Token counts of the pieces prompts are made of, the ``size`` most recently used kept.

    Shared by threads (prompts are counted in worker threads, and bounded on the loop, which
    also counts a few short pieces). Writers take the lock, held for one insertion; a lookup
    does not, because bounding a prompt looks up every line of it on the event loop: its
    ``get`` and ``move_to_end`` are single operations under the GIL, and a key evicted between
    the two is simply not moved.
    """

    def __init__(self, size: int = CACHED_PIECES) -> None:
        self.size = size
        self._counts: OrderedDict[tuple[str, str], int] = OrderedDict()
        self._lock = threading.Lock()

    def known(self, piece: str, encoding: str) -> int | None:
        key = (piece, encoding)
        count = self._counts.get(key)
        if count is not None:
            with contextlib.suppress(KeyError):  # evicted by a writer meanwhile
                self._counts.move_to_end(key)
        return count

    def count(self, piece: str, encoding: str) -> int:
        known = self.known(piece, encoding)
        if known is not None:
            return known
        count = len(encoder(encoding).encode(piece, disallowed_special=()))
        with self._lock:
            self._counts[(piece, encoding)] = count
            if len(self._counts) > self.size:
                self._counts.popitem(last=False)
        return count


PIECE_COUNTS = PieceCounts()


def _pieces(text: str) -> list[str]:
    return [piece for piece in _INDEPENDENT_PIECE.split(text) if piece]


def prompt_tokens(text: str, encoding: str = DEFAULT_ENCODING) -> int:
    """``num_tokens(text)``, remembering the count of each line-started piece of the text.

    Prompts are assembled from recurring pieces: template lines and the chunks that answer
    similar questions. Fitting a prompt counts its knowledge, then the system prompt holding
    that knowledge again, which cost about 3 ms per answer of six 512-token chunks; counting
    what was counted before costs a hash lookup. For text seen once (ingestion) use
    ``num_tokens``: the cache would only churn.
    """
    return sum(PIECE_COUNTS.count(piece, encoding) for piece in _pieces(text)) if text else 0


def byte_bound(text: str) -> int:
    """At least ``num_tokens(text)``: a byte-level BPE token covers one byte or more, so no
    text has more tokens than UTF-8 bytes. Constant time for ASCII text."""
    return len(text) if text.isascii() else len(text.encode("utf-8"))


# Unknown pieces up to this long may be counted (and remembered) by a bound rather than bounded
# by their bytes: the template lines and chunk headers around the knowledge, a few microseconds
# each, once. At most ``BOUND_COUNTING_CHARS`` of a prompt are counted so: bounds run on the
# event loop, and a long question of many short lines must not turn into a long encoding there.
COUNTED_PIECE_CHARS = 1024
BOUND_COUNTING_CHARS = 4096


class CountingAllowance:
    """How many characters of short unknown pieces bounds may still encode; share one across
    the bounds of one prompt. ``CountingAllowance(0)`` bounds by lookups and bytes alone."""

    def __init__(self, chars: int = BOUND_COUNTING_CHARS) -> None:
        self.chars = chars

    def bound(self, piece: str, encoding: str) -> int:
        known = PIECE_COUNTS.known(piece, encoding)
        if known is not None:
            return known
        if len(piece) <= min(COUNTED_PIECE_CHARS, self.chars):
            self.chars -= len(piece)
            return PIECE_COUNTS.count(piece, encoding)
        return byte_bound(piece)


def _pieces_bound(text: str, encoding: str, allowance: CountingAllowance) -> int:
    return sum(allowance.bound(piece, encoding) for piece in _pieces(text))


# What joining a counted text to its neighbours can add to the sum of the parts' counts, per
# side: BPE re-splits only the pre-tokens that meet at the join, which in practice merges
# them (fewer tokens) and at worst re-encodes a pre-token or two differently.
SPAN_JOIN_SLACK = 2


def token_bound(text: str, encoding: str = DEFAULT_ENCODING, counted: Sequence[tuple[str, int]] = (),
                allowance: CountingAllowance | None = None) -> int:
    """At least ``num_tokens(text)``, without encoding any long text: the exact count of each
    piece counted before (here or by ``prompt_tokens``) or short enough for the ``allowance``
    (a fresh ``CountingAllowance()`` when none is given), the byte count of the others. For a
    prompt of chunks whose pieces an earlier prompt counted it is exact.

    ``counted`` are texts inside ``text``, in the order they occur, whose cl100k token counts
    are known already (a chunk's count, stored when it was indexed): each costs its count plus
    ``SPAN_JOIN_SLACK`` per side instead of its pieces' bounds, so a prompt of chunks never seen
    before is bounded within a few tokens too. A text not found from where the previous one
    ended is ignored; an earlier occurrence of the same text is bounded in its place, which is
    as good. Other encodings ignore ``counted``.
    """
    if not text:
        return 0
    allowance = allowance if allowance is not None else CountingAllowance()
    total, start = 0, 0
    for span, count in counted if encoding == DEFAULT_ENCODING else ():
        at = text.find(span, start) if span else -1
        if at < 0:
            continue
        total += _pieces_bound(text[start:at], encoding, allowance) + count + 2 * SPAN_JOIN_SLACK
        start = at + len(span)
    return total + _pieces_bound(text[start:], encoding, allowance)
