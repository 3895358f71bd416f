"""``chunk_method`` manual: product and user manuals, one section at a time.

Manuals number their sections (``4 Maintenance``, ``4.2 Replacing the filter``); those lines,
``Chapter N`` lines and the file's own headings make the path. Numbered steps (``1. Open the
lid.``) end with a period and stay text. Each section is chunked on its own and every chunk
starts with its heading path.
"""

from __future__ import annotations

from rag.app.naive import ChunkText
from rag.app.parsers import parse
from rag.app.parsers.limits import ReadLimits
from rag.app.structure import chunk_by_heading, numbered, restructure, rule

RULES = [
    rule(r"(?P<label>chapter\s+[ivxlc\d]+)\b", 1, title_only=True),
    numbered(2),
]


def chunk_file(filename: str, data: bytes, parser_config: dict | None, limits: ReadLimits) -> list[ChunkText]:
    sections = parse(filename, data, limits.package, limits.formats)
    return chunk_by_heading(restructure(sections, RULES), parser_config)
