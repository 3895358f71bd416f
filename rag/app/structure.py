"""Headings found in the text itself, for the structure-aware templates (laws, book, manual, paper).

Word and Markdown files name their headings (``Section.title_path``); PDFs and plain text do
not, but contracts, statutes, manuals and papers number them: ``Chapter 2``, ``Article 14``,
``3.2 Installation``, ``Abstract``. ``restructure`` finds such lines with a template's
``HeadingRule``s and rebuilds the sections so each one carries its full heading path: the
file's own headings first, then the ones found in its text.

A heading line that also holds the clause itself (``Article 5 Any person who ...``) keeps its
label as the heading and its remainder as the clause's text. Numbered lines count as headings
only when they look like titles (short, no closing period), so numbered steps and list items
stay text.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from rag.app.naive import ChunkText, chunk
from rag.app.parsers.base import Section, tidy_text
from rag.utils.token_utils import num_tokens

MAX_TITLE_CHARS = 80
CJK_NUMBER = "[一二三四五六七八九十百千零〇两\\d]+"
_SENTENCE_END = re.compile(r"[.;:!?。；！？]$")
_NUMBERED = re.compile(r"^(?P<label>\d{1,3}(?:\.\d{1,3}){0,5})(?:\.|\))?\s+(?P<rest>[A-Z\u4e00-\u9fff].*)$")


@dataclass(frozen=True)
class HeadingRule:
    """Lines matching ``pattern`` (group ``label``, the rest of the line after it) are headings of
    ``level``; ``numbered`` rules add the label's depth (``2.1`` is one deeper than ``2``)."""

    pattern: re.Pattern[str]
    level: int
    numbered: bool = False
    title_only: bool = False  # the line must look like a title (short, no closing period)


def rule(pattern: str, level: int, *, title_only: bool = False) -> HeadingRule:
    return HeadingRule(re.compile(pattern, re.IGNORECASE), level, title_only=title_only)


def numbered(level: int, *, title_only: bool = True) -> HeadingRule:
    """``1``, ``1.2``, ``1.2.3`` at ``level`` + depth - 1: titles only, or also clauses that go
    on after their number (``title_only=False``, contracts)."""
    return HeadingRule(_NUMBERED, level, numbered=True, title_only=title_only)


def restructure(sections: list[Section], rules: list[HeadingRule]) -> list[Section]:
    """``sections`` with the headings the rules find in their text added to their paths."""
    found: list[tuple[int, str]] = []
    base: tuple[str, ...] | None = None
    rebuilt: list[Section] = []
    for section in sections:
        if section.title_path != base:
            base, found = section.title_path, []
        lines: list[str] = []
        for line in section.text.split("\n"):
            heading = _match(line.strip(), rules)
            if heading is None:
                lines.append(line)
                continue
            _emit(rebuilt, lines, base, found, section.page)
            level, title, rest = heading
            found = [(lvl, text) for lvl, text in found if lvl < level] + [(level, title)]
            lines = [rest] if rest else []
        _emit(rebuilt, lines, base, found, section.page)
    return rebuilt


def _emit(out: list[Section], lines: list[str], base: tuple[str, ...], found: list[tuple[int, str]],
          page: int | None) -> None:
    text = tidy_text("\n".join(lines))
    if text:
        out.append(Section(text, base + tuple(title for _, title in found), page))
    lines.clear()


def _match(line: str, rules: list[HeadingRule]) -> tuple[int, str, str] | None:
    """(level, title, text after the title) when ``line`` is a heading under ``rules``."""
    if not line:
        return None
    looks_like_title = len(line) <= MAX_TITLE_CHARS and not _SENTENCE_END.search(line)
    for heading in rules:
        match = heading.pattern.match(line)
        if match is None or (heading.title_only and not looks_like_title):
            continue
        label = match.group("label").strip()
        level = heading.level + (label.count(".") if heading.numbered else 0)
        if looks_like_title:
            return level, " ".join(line.split()), ""
        return level, label, line[match.end("label"):].lstrip(" .:)-—")
    return None


def chunk_by_heading(sections: list[Section], parser_config: dict | None,
                     whole: Callable[[Section], bool] = lambda _section: False) -> list[ChunkText]:
    """Chunks that never cross a heading: each run of sections under one path is chunked alone,
    so every chunk starts with its heading path. A run whose first section ``whole`` accepts is
    kept as one chunk whatever its size (a paper's abstract)."""
    chunks: list[ChunkText] = []
    for run in _runs(sections):
        if whole(run[0]):
            chunks.append(_one_chunk(run))
        else:
            chunks.extend(chunk(run, parser_config))
    return chunks


def _runs(sections: list[Section]) -> list[list[Section]]:
    runs: list[list[Section]] = []
    for section in sections:
        if runs and runs[-1][-1].title_path == section.title_path:
            runs[-1].append(section)
        else:
            runs.append([section])
    return runs


def _one_chunk(run: list[Section]) -> ChunkText:
    heading = run[0].heading
    content = "\n".join([heading, *(section.text for section in run)] if heading else
                        [section.text for section in run])
    return ChunkText(content, num_tokens(content), heading or None, run[0].page)
