"""``chunk_method`` one: the whole document as a single chunk.

For documents that only make sense whole (a short contract, a recipe, a form). The one limit
is the embedding model's: a document longer than ``ONE_MAX_TOKENS`` is cut into chunks of
that size (8,192 tokens, the largest input the common embedding APIs accept; a smaller local
model reads the start of each). ``chunk_token_num`` is ignored, as in RAGFlow.
"""

from __future__ import annotations

from rag.app.naive import ChunkText, chunk
from rag.app.parsers import Section, parse
from rag.app.parsers.limits import ReadLimits
from rag.utils.token_utils import num_tokens

ONE_MAX_TOKENS = 8192


def chunk_file(filename: str, data: bytes, parser_config: dict | None, limits: ReadLimits) -> list[ChunkText]:
    return whole(parse(filename, data, limits.package, limits.formats), parser_config)


def whole(sections: list[Section], parser_config: dict | None) -> list[ChunkText]:
    """The sections as one chunk, headings inline; split at ``ONE_MAX_TOKENS`` only."""
    lines: list[str] = []
    previous = ""
    for section in sections:
        if section.heading and section.heading != previous:
            lines.append(section.heading)
        previous = section.heading
        lines.append(section.text)
    content = "\n".join(lines)
    tokens = num_tokens(content)
    if tokens <= ONE_MAX_TOKENS:
        return [ChunkText(content, tokens, sections[0].heading or None, sections[0].page)]
    return chunk(sections, {**(parser_config or {}), "chunk_token_num": ONE_MAX_TOKENS, "overlap": 0})
