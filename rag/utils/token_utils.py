"""Token counting with tiktoken, from the encodings LiteLLM ships (no download).

One encoder per process, loaded on first use: counting must be cheap enough for chunking
and prompt fitting, and the encoding is immutable so sharing it across threads is safe.
"""

from __future__ import annotations

import functools
import re

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


@functools.lru_cache(maxsize=CACHED_PIECES)
def _piece_tokens(piece: str, encoding: str) -> int:
    return len(encoder(encoding).encode(piece, disallowed_special=()))


def prompt_tokens(text: str, encoding: str = DEFAULT_ENCODING) -> int:
    """``num_tokens(text)``, remembering the count of each line-started piece of the text.

    Prompts are assembled from recurring pieces: template lines and the chunks that answer
    similar questions. Fitting a prompt counts its knowledge, then the system prompt holding
    that knowledge again, which cost about 3 ms per answer of six 512-token chunks; counting
    what was counted before costs a hash lookup. For text seen once (ingestion) use
    ``num_tokens``: the cache would only churn.
    """
    if not text:
        return 0
    return sum(_piece_tokens(piece, encoding) for piece in _INDEPENDENT_PIECE.split(text) if piece)
