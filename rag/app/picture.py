"""``chunk_method`` picture: the text of an image, read by OCR (``rag.app.parsers.image``).

RAGFlow also asks a vision model to describe the picture; Ragline has no vision model, so a
picture without text fails with "OCR found no text in the image" rather than indexing
nothing. The OCR text is chunked as naive chunks text.
"""

from __future__ import annotations

from rag.app.naive import ChunkText, chunk
from rag.app.parsers import parse
from rag.app.parsers.limits import ReadLimits


def chunk_file(filename: str, data: bytes, parser_config: dict | None, limits: ReadLimits) -> list[ChunkText]:
    return chunk(parse(filename, data, limits.package, limits.formats), parser_config)
