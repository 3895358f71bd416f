"""One dispatch from a document's ``chunk_method`` to its template, as RAGFlow's ``rag/app`` has.

Every template module has ``chunk_file(filename, data, parser_config, limits)`` → chunk texts.
Methods RAGFlow lists that Ragline does not build differently are chunked as ``naive`` and
say so here: ``resume`` (RAGFlow's needs a resume-parsing service), ``audio`` and
``knowledge_graph`` (no speech model, no graph extraction). ``parser_config``'s ``raptor`` and
``graphrag`` settings are accepted and stored but build nothing (``IGNORED_SETTINGS``): the
chunks are the template's alone.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from rag.app import book, email, laws, manual, naive, one, paper, picture, presentation, qa, table, tag
from rag.app.naive import ChunkText
from rag.app.parsers.limits import ReadLimits

Chunker = Callable[[str, bytes, dict | None, ReadLimits], list[ChunkText]]


def _naive(filename: str, data: bytes, parser_config: dict | None, limits: ReadLimits) -> list[ChunkText]:
    return naive.parse_and_chunk(filename, data, parser_config, limits)


CHUNKERS: dict[str, Chunker] = {
    "naive": _naive,
    "qa": qa.chunk_file,
    "table": table.chunk_file,
    "one": one.chunk_file,
    "book": book.chunk_file,
    "laws": laws.chunk_file,
    "manual": manual.chunk_file,
    "paper": paper.chunk_file,
    "presentation": presentation.chunk_file,
    "email": email.chunk_file,
    "picture": picture.chunk_file,
    "tag": tag.chunk_file,
}
CHUNKED_AS_NAIVE = ("resume", "audio", "knowledge_graph")
IGNORED_SETTINGS = ("raptor", "graphrag")


def chunker(method: str | None) -> Chunker:
    """The template of ``method``; naive for an empty, unknown or not-built method."""
    return CHUNKERS.get(method or "naive", _naive)


def chunk_document(method: str | None, filename: str, data: bytes, parser_config: dict[str, Any] | None,
                   limits: ReadLimits | None = None) -> list[ChunkText]:
    """The document's chunk texts under ``method``; raises the parsers' ``IngestError``s and
    ``ValueError`` for a ``parser_config`` the chunker refuses."""
    return chunker(method)(filename, data, parser_config, limits or ReadLimits())
