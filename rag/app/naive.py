"""``chunk_method`` naive: sections → chunks of about ``chunk_token_num`` tokens.

How a document is cut:

1. Each section's text is split after every delimiter of ``parser_config["delimiter"]``
   (each character is one delimiter; text in backticks, like ```` `##` ````, is one
   multi-character delimiter; a run of delimiters stays together). A piece still larger than
   a chunk is split at sentence ends (``. `` ``! `` ``? ``), then at whitespace, and a single
   giant word is finally cut by tokens.
2. Pieces are packed in order into chunks while the chunk stays within ``chunk_token_num``
   tokens (tiktoken cl100k, heading line included; ``token_count`` is the exact count). Only
   a single character wider than the room left (an emoji under a heading at a limit of a few
   tokens) can exceed it.
3. Headings stay with their text: a chunk that starts under a heading begins with the
   heading path line (``Guide > Install``, cut to a quarter of the limit); a heading met
   inside a chunk appears inline; a chunk never ends on a heading whose text went to the
   next chunk. Chunks are not cut at every heading, so short sections share a chunk.
4. ``overlap`` is a **percentage** (0–90) of ``chunk_token_num``: each chunk starts with the
   last pieces of the previous one, up to that many tokens (RAGFlow's name for the same
   setting, ``overlapped_percent``, is accepted too).
5. A plain document's title reaches every chunk's full-text title field: when the document
   starts with a short line standing alone (no heading path, a blank line after it, text
   below; ``document_title``), each chunk that does not hold that line carries it in
   ``ChunkText.title`` and the row's ``title_tks`` gets it beside the file name. Only the
   keyword leg sees it; the chunk's text and embedding are unchanged. On SciFact (its
   documents as ``title, blank line, abstract`` text files, 218-token chunks: about two chunks
   each, the title only in the first), ``python -m rag.benchmark``, nDCG@10 at w = 0.3 tuned on
   train 0.7483 → 0.7507, test 0.7396 → 0.7448 (w = 0 / 0.5 / 0.7: 0.6873 → 0.6941, 0.7437 →
   0.7461, 0.7342 → 0.7352); FinanceBench, whose file names already name company and year,
   0.7698 → 0.7707 at w = 0.3 (w = 0 0.5926 → 0.5886, w = 0.5 0.7806 → 0.7878); 1,217 man(1)
   pages as text, their description line the question and taken out of the page, where the
   "title" is the running header (``CA.PL(1SSL)   OpenSSL   CA.PL(1SSL)``): w = 0.3 0.7000 →
   0.7018, w = 0 0.6318 → 0.6263, w = 0.5 0.7109 → 0.7111. So keyword-only search (w = 0)
   pays a little where the first line is a header or the file name already says it; hybrid
   search gains. A lower weight for the title field (0.5, 0.7) only cost FinanceBench at
   w = 0 more (0.5624, 0.5735: the file name's words weigh less too). Putting the title into
   the chunks' text instead (as a heading line, the way Markdown headings are carried) or
   blending its vector into theirs lowered train (0.7468 and 0.7420 at best).

Chunk size and the builtin embedding model: all-MiniLM-L6-v2 reads at most 256 word pieces
(254 after its two special tokens) and ignores the rest, while ``chunk_token_num`` counts
cl100k tokens. On SciFact abstracts one cl100k token is 1.05 word pieces on average and
1.16 at the 99th percentile (``WORDPIECES_PER_TOKEN``), so the largest chunk the builtin model
still reads whole is ``chunk_tokens_for_model(256)`` = 218 tokens. RAGFlow's default of 512
(``DEFAULT_CHUNK_TOKENS``) is kept for API compatibility; whoever picks the default for the
builtin model should use ``BUILTIN_EMBEDDING_CHUNK_TOKENS`` or tune it by measurement.
"""

from __future__ import annotations

import math
import re
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import Any

from rag.app.parsers import Section, parse
from rag.app.parsers.limits import ReadLimits
from rag.utils.token_utils import encoder, num_tokens, truncate

DEFAULT_CHUNK_TOKENS = 512
DEFAULT_DELIMITER = "\n!?;。；！？"
MAX_OVERLAP_PERCENT = 90
# Word pieces of the MiniLM tokenizer per cl100k token, 99th percentile over SciFact abstracts.
WORDPIECES_PER_TOKEN = 1.16
_SPECIAL_TOKENS = 2  # [CLS] and [SEP]


def chunk_tokens_for_model(max_wordpieces: int, wordpieces_per_token: float = WORDPIECES_PER_TOKEN) -> int:
    """The largest ``chunk_token_num`` whose chunks a model reading ``max_wordpieces`` sees whole."""
    return max(1, math.floor((max_wordpieces - _SPECIAL_TOKENS) / wordpieces_per_token))


BUILTIN_EMBEDDING_CHUNK_TOKENS = chunk_tokens_for_model(256)

_SENTENCE_END = re.compile(r"[.!?…]+[\"'”’)\]]*\s+")
_WHITESPACE = re.compile(r"\s+")


@dataclass(frozen=True)
class ChunkText:
    """One chunk ready for embedding; ``heading`` is the path it starts under, ``page`` its first page.

    The optional fields are what templates other than naive add (``rag.app.chunking``):
    ``match_text`` and ``embed_text`` replace ``content`` for the full-text index and the
    embedding (a Q&A pair is found by its question and returns question and answer),
    ``questions``, ``keywords`` and ``tags`` fill ``question_kwd``, ``important_kwd`` and
    ``tag_kwd``, ``fields`` are extra typed fields of the chunk (a table row's columns), and
    ``columns`` names the column each such field holds (``(field, header)``, one tuple shared
    by the rows of a sheet): what the worker records as the dataset's ``field_map``.
    ``title`` is the document's title for the full-text title field, set on the chunks whose
    text does not hold it (``document_title``).
    """

    content: str
    token_count: int
    heading: str | None = None
    page: int | None = None
    match_text: str | None = None
    embed_text: str | None = None
    questions: tuple[str, ...] = ()
    keywords: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()
    fields: tuple[tuple[str, Any], ...] = ()
    columns: tuple[tuple[str, str], ...] = ()
    title: str | None = None


@dataclass(frozen=True)
class ChunkConfig:
    """The naive chunker's settings, read and checked once from a dataset's ``parser_config``."""

    chunk_tokens: int = DEFAULT_CHUNK_TOKENS
    delimiter: str = DEFAULT_DELIMITER
    overlap_percent: float = 0

    @classmethod
    def from_parser_config(cls, parser_config: dict[str, Any] | None) -> ChunkConfig:
        """Raises ``ValueError`` for a size below 1 or an overlap outside 0–90."""
        config = {key: value for key, value in (parser_config or {}).items() if value is not None}
        chunk_tokens = int(config.get("chunk_token_num", DEFAULT_CHUNK_TOKENS))
        overlap = float(config.get("overlap", config.get("overlapped_percent", 0)))
        delimiter = str(config.get("delimiter", DEFAULT_DELIMITER))
        if chunk_tokens < 1:
            raise ValueError(f"chunk_token_num must be at least 1, got {chunk_tokens}")
        if not 0 <= overlap <= MAX_OVERLAP_PERCENT:
            raise ValueError(f"overlap must be a percentage from 0 to {MAX_OVERLAP_PERCENT}, got {overlap}")
        return cls(chunk_tokens, delimiter, overlap)

    @property
    def overlap_tokens(self) -> int:
        return int(self.chunk_tokens * self.overlap_percent / 100)


def delimiter_pattern(delimiter: str) -> re.Pattern[str] | None:
    """A regex matching a run of delimiters; ``None`` when the setting names none.

    ``\\n`` and ``\\t`` typed literally (as web forms send them) mean newline and tab.
    """
    delimiter = delimiter.replace("\\n", "\n").replace("\\t", "\t")
    multi = re.findall(r"`([^`]+)`", delimiter)
    singles = set(re.sub(r"`[^`]+`", "", delimiter))
    alternatives = sorted(multi, key=len, reverse=True) + sorted(singles)
    if not alternatives:
        return None
    return re.compile("(?:" + "|".join(re.escape(alt) for alt in alternatives) + ")+")


@dataclass(frozen=True)
class _Piece:
    """An unbreakable run of text; ``is_heading`` marks a heading line met in the flow."""

    text: str
    tokens: int
    section: int
    is_heading: bool = False


def chunk(sections: list[Section], parser_config: dict[str, Any] | None = None) -> list[ChunkText]:
    """Chunks of the sections in order, each within ``chunk_token_num`` tokens and never empty."""
    config = ChunkConfig.from_parser_config(parser_config)
    headings = [_heading_line(section, config.chunk_tokens) for section in sections]
    pieces = list(_pieces(sections, headings, config))
    chunks = _Packer(sections, headings, config).pack(pieces)
    title = document_title(sections, config.chunk_tokens)
    if not title:
        return chunks
    return [piece if title in piece.content else replace(piece, title=title) for piece in chunks]


def document_title(sections: list[Section], chunk_tokens: int) -> str:
    """The first line of a document without headings, when it reads as a title; else "".

    A title here is a line standing alone at the very start (a blank line after it, more text
    below) and no longer than a heading line may be (a quarter of a chunk). A document with a
    heading path (Markdown, a Word file's heading styles) already starts each chunk with it.
    """
    if not sections or sections[0].title_path:
        return ""
    first_line, blank, rest = sections[0].text.lstrip().partition("\n\n")
    first_line = first_line.strip()
    if not blank or "\n" in first_line or (not rest.strip() and len(sections) == 1):
        return ""
    return first_line if 0 < num_tokens(first_line) <= chunk_tokens // 4 else ""


def parse_and_chunk(filename: str, data: bytes, parser_config: dict[str, Any] | None = None,
                    limits: ReadLimits | None = None) -> list[ChunkText]:
    """Parse a file and chunk it; raises the parsers' ``IngestError`` subclasses."""
    limits = limits or ReadLimits()
    return chunk(parse(filename, data, limits.package, limits.formats), parser_config)


def _heading_line(section: Section, chunk_tokens: int) -> str:
    """The heading path, cut to a quarter of a chunk so text always has room."""
    return truncate(section.heading, chunk_tokens // 4).strip()


def _pieces(sections: list[Section], headings: list[str], config: ChunkConfig) -> Iterator[_Piece]:
    top = delimiter_pattern(config.delimiter)
    previous_heading = ""
    for index, section in enumerate(sections):
        heading = headings[index]
        heading_cost = num_tokens(heading) + 1 if heading else 0
        if heading and heading != previous_heading:
            yield _Piece(heading, heading_cost - 1, index, is_heading=True)
        previous_heading = heading
        budget = max(1, config.chunk_tokens - heading_cost)
        for part in _split_after(section.text, top) if top else [section.text]:
            for text, tokens in _fit(part, budget, [_SENTENCE_END, _WHITESPACE]):
                if text.strip():
                    yield _Piece(text, tokens, index)


def _fit(text: str, budget: int, levels: list[re.Pattern[str]]) -> list[tuple[str, int]]:
    """``text`` cut into (piece, tokens) pairs of at most ``budget`` tokens, coarsest cuts first."""
    tokens = num_tokens(text)
    if tokens <= budget:
        return [(text, tokens)]
    if not levels:
        return [(piece, num_tokens(piece)) for piece in _hard_split(text, budget)]
    fitted: list[tuple[str, int]] = []
    for piece in _split_after(text, levels[0]):
        fitted.extend(_fit(piece, budget, levels[1:]))
    return fitted


def _split_after(text: str, pattern: re.Pattern[str]) -> list[str]:
    """``text`` cut after each match, delimiters kept with the text before them."""
    pieces, start = [], 0
    for match in pattern.finditer(text):
        if match.end() > start:
            pieces.append(text[start : match.end()])
            start = match.end()
    if start < len(text):
        pieces.append(text[start:])
    return pieces


def _hard_split(text: str, budget: int) -> list[str]:
    """Cut by tokens, moving each cut back to a character boundary so no character is split."""
    enc = encoder()
    raw = text.encode("utf-8")
    token_bytes = enc.decode_tokens_bytes(enc.encode(text, disallowed_special=()))
    pieces, start, offset, count = [], 0, 0, 0
    for piece_bytes in token_bytes:
        if count == budget:
            cut = _char_boundary(raw, offset)
            if cut > start:
                pieces.append(raw[start:cut].decode("utf-8"))
                start = cut
            count = 0
        offset += len(piece_bytes)
        count += 1
    pieces.append(raw[start:].decode("utf-8"))
    return [piece for piece in pieces if piece]


def _char_boundary(raw: bytes, offset: int) -> int:
    while 0 < offset < len(raw) and raw[offset] & 0xC0 == 0x80:
        offset -= 1
    return offset


def _token_tail(text: str, max_tokens: int) -> str:
    """The longest suffix of ``text`` within ``max_tokens`` tokens, cut at a character boundary."""
    enc = encoder()
    raw = text.encode("utf-8")
    tail_bytes = sum(len(b) for b in enc.decode_tokens_bytes(enc.encode(text, disallowed_special=())[-max_tokens:]))
    start = len(raw) - tail_bytes
    while start < len(raw) and raw[start] & 0xC0 == 0x80:
        start += 1
    return raw[start:].decode("utf-8")


class _Packer:
    """Packs pieces into chunks: size limit, heading prefixes, overlap carried forward.

    Packing decides with per-piece token counts (cheap); each chunk is then counted exactly
    once, and the rare chunk that BPE merges push over the limit gives its last piece back.
    """

    def __init__(self, sections: list[Section], headings: list[str], config: ChunkConfig) -> None:
        self._sections = sections
        self._headings = headings
        self._limit = config.chunk_tokens
        self._overlap_tokens = config.overlap_tokens
        self._chunks: list[ChunkText] = []

    def pack(self, pieces: list[_Piece]) -> list[ChunkText]:
        queue = deque(pieces)
        current: list[_Piece] = []
        carried = 0  # leading pieces of ``current`` repeated from the previous chunk
        while queue or _has_fresh(current, carried):
            if not queue:
                current, carried = self._flush(current, carried, queue)
                continue
            piece = queue.popleft()
            if _has_fresh(current, carried) and self._cost([*current, piece]) > self._limit:
                queue.appendleft(piece)
                current, carried = self._flush(current, carried, queue)
                continue
            while carried and self._cost([*current, piece]) > self._limit:
                current, carried = current[1:], carried - 1
            current.append(piece)
        return self._chunks

    def _cost(self, pieces: list[_Piece]) -> int:
        """Estimated tokens of the rendered chunk: pieces, separators and the heading prefix."""
        prefix = self._prefix(pieces)
        separators = sum(1 for a, b in zip(pieces, pieces[1:], strict=False) if _needs_newline(a, b))
        return sum(piece.tokens for piece in pieces) + separators + (num_tokens(prefix) + 1 if prefix else 0)

    def _flush(self, current: list[_Piece], carried: int, queue: deque[_Piece]) -> tuple[list[_Piece], int]:
        """Emit a chunk from ``current``; pieces that did not fit go back to the queue.

        Returns the next chunk's start: the overlap carried from this one.
        """
        body = _without_trailing_headings(current)
        returned = current[len(body) :]
        content, tokens = self._render_counted(body)
        while tokens > self._limit and (shrunk := self._shrink(body, carried)) is not None:
            body, carried, back = shrunk
            returned = back + returned
            trimmed = _without_trailing_headings(body)
            returned = body[len(trimmed) :] + returned
            body = trimmed
            content, tokens = self._render_counted(body)
        queue.extendleft(reversed(returned))
        self._chunks.append(self._chunk_text(body, carried, content, tokens))
        carry = self._overlap(body)
        return carry, len(carry)

    def _shrink(self, body: list[_Piece], carried: int) -> tuple[list[_Piece], int, list[_Piece]] | None:
        """Make ``body`` smaller: give back its last fresh piece, else drop overlap, else cut it.

        ``None`` when nothing is left to take away (a single character wider than the limit).
        """
        if sum(1 for piece in body[carried:] if not piece.is_heading) > 1:
            return body[:-1], carried, body[-1:]
        if carried:
            return body[1:], carried - 1, []
        text = body[-1].text.rstrip()
        head, *rest = _hard_split(text, max(1, num_tokens(text) - 1))
        tail = "".join(rest)
        if not tail.strip():
            return None
        section = body[-1].section
        pieces = [_Piece(head, num_tokens(head), section)]
        return body[:-1] + pieces, carried, [_Piece(tail, num_tokens(tail), section)]

    def _chunk_text(self, body: list[_Piece], carried: int, content: str, tokens: int) -> ChunkText:
        first_fresh = next(piece for piece in body[carried:] if not piece.is_heading)
        return ChunkText(
            content=content,
            token_count=tokens,
            heading=self._headings[body[0].section] or None,
            page=self._sections[first_fresh.section].page,
        )

    def _overlap(self, body: list[_Piece]) -> list[_Piece]:
        """The tail of ``body`` within the overlap budget, whole pieces when they fit."""
        if self._overlap_tokens <= 0:
            return []
        tail: list[_Piece] = []
        used = 0
        for piece in reversed(body):
            if piece.is_heading or used + piece.tokens > self._overlap_tokens:
                break
            tail.insert(0, piece)
            used += piece.tokens
        if tail:
            return tail
        last = body[-1]
        text = _token_tail(last.text, self._overlap_tokens).lstrip()
        return [_Piece(text, num_tokens(text), last.section)] if text else []

    def _prefix(self, pieces: list[_Piece]) -> str:
        """The heading line a chunk starts with when its first piece is not that heading itself."""
        if not pieces or pieces[0].is_heading:
            return ""
        return self._headings[pieces[0].section]

    def _render_counted(self, pieces: list[_Piece]) -> tuple[str, int]:
        prefix = self._prefix(pieces)
        parts = [prefix + "\n"] if prefix else []
        for index, piece in enumerate(pieces):
            if index and _needs_newline(pieces[index - 1], piece) and not parts[-1].endswith("\n"):
                parts.append("\n")
            parts.append(piece.text)
        content = "".join(parts).strip()
        return content, num_tokens(content)


def _has_fresh(current: list[_Piece], carried: int) -> bool:
    """Whether ``current`` holds text of its own, not only overlap and headings."""
    return any(not piece.is_heading for piece in current[carried:])


def _needs_newline(before: _Piece, after: _Piece) -> bool:
    return before.is_heading or after.is_heading or before.section != after.section


def _without_trailing_headings(pieces: list[_Piece]) -> list[_Piece]:
    """``pieces`` minus headings at its end: a heading belongs with the text that follows it."""
    end = len(pieces)
    while end and pieces[end - 1].is_heading:
        end -= 1
    return pieces[:end]
