"""``chunk_method`` presentation: one chunk per slide of a .pptx, or per page of a PDF deck.

A slide is the unit a deck is read in, so it is the unit retrieved; a slide larger than
``chunk_token_num`` (a page of speaker notes) is split, each part keeping its slide number.
Other file types are chunked as naive does.
"""

from __future__ import annotations

from rag.app.naive import ChunkText, chunk
from rag.app.parsers import parse
from rag.app.parsers.limits import ReadLimits


def chunk_file(filename: str, data: bytes, parser_config: dict | None, limits: ReadLimits) -> list[ChunkText]:
    sections = parse(filename, data, limits.package, limits.formats)
    if any(section.page is None for section in sections):
        return chunk(sections, parser_config)
    chunks: list[ChunkText] = []
    for page in dict.fromkeys(section.page for section in sections):
        chunks.extend(chunk([section for section in sections if section.page == page], parser_config))
    return chunks
