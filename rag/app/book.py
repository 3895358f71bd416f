"""``chunk_method`` book: long documents split along their parts, chapters and sections.

Besides the file's own headings (Word styles, Markdown ``#``), lines such as ``Part II``,
``Chapter 3: Storms`` and numbered titles (``3.2 Winds``) are headings. Text is chunked within
each section, never across two, and every chunk starts with its heading path.
"""

from __future__ import annotations

from rag.app.naive import ChunkText
from rag.app.parsers import parse
from rag.app.parsers.limits import ReadLimits
from rag.app.structure import CJK_NUMBER, chunk_by_heading, numbered, restructure, rule

RULES = [
    rule(r"(?P<label>part\s+[ivxlc\d]+)\b", 1, title_only=True),
    rule(rf"(?P<label>chapter\s+[ivxlc\d]+\b|第{CJK_NUMBER}章)", 2, title_only=True),
    rule(rf"(?P<label>section\s+\d+\b|第{CJK_NUMBER}节)", 3, title_only=True),
    numbered(3),
]


def chunk_file(filename: str, data: bytes, parser_config: dict | None, limits: ReadLimits) -> list[ChunkText]:
    sections = parse(filename, data, limits.package, limits.formats)
    return chunk_by_heading(restructure(sections, RULES), parser_config)
