"""``chunk_method`` email: an .eml message's headers, body and text attachments.

The parser (``rag.app.parsers.eml``) gives the headers, the body and each text attachment as
sections under the subject; they are chunked as naive chunks them, so a chunk of the body
starts with the subject and one of an attachment with ``subject > Attachment: name``.
"""

from __future__ import annotations

from rag.app.naive import ChunkText, chunk
from rag.app.parsers import parse
from rag.app.parsers.limits import ReadLimits


def chunk_file(filename: str, data: bytes, parser_config: dict | None, limits: ReadLimits) -> list[ChunkText]:
    return chunk(parse(filename, data, limits.package, limits.formats), parser_config)
