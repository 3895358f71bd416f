"""Markdown: ATX (``# Title``) and setext (``Title`` over ``===``) headings become the title path.

The body keeps its Markdown markup: it reads fine for embedding and for the LLM, and a
renderer would lose code blocks and tables that matter for retrieval. Lines inside fenced
code blocks are never headings (``# comment`` in a shell snippet).
"""

from __future__ import annotations

import re

from rag.app.parsers.base import Section, SectionBuilder
from rag.app.parsers.txt import decode_text

_ATX = re.compile(r"^ {0,3}(#{1,6})[ \t]+(.*?)(?:[ \t]+#+)?[ \t]*$")
_SETEXT = re.compile(r"^ {0,3}(=+|-+)[ \t]*$")
_FENCE = re.compile(r"^ {0,3}(```|~~~)")


def parse(data: bytes) -> list[Section]:
    lines = decode_text(data).replace("\r\n", "\n").replace("\r", "\n").split("\n")
    builder = SectionBuilder()
    fence: str | None = None
    index = 0
    while index < len(lines):
        line = lines[index]
        fence_match = _FENCE.match(line)
        if fence_match:
            marker = fence_match.group(1)
            fence = None if fence == marker else (fence or marker)
        if fence is None and not fence_match:
            heading = _heading(line, lines[index + 1] if index + 1 < len(lines) else "")
            if heading:
                level, title, consumed = heading
                builder.add_heading(level, title)
                index += consumed
                continue
        builder.add_text(line + "\n")
        index += 1
    return builder.sections()


def _heading(line: str, next_line: str) -> tuple[int, str, int] | None:
    """(level, title, lines consumed) when ``line`` starts a heading."""
    atx = _ATX.match(line)
    if atx:
        return len(atx.group(1)), atx.group(2), 1
    if line.strip() and not line.startswith((" " * 4, "\t")) and _SETEXT.match(next_line):
        return (1 if next_line.strip().startswith("=") else 2), line.strip(), 2
    return None
