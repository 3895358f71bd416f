"""Chunks of a document: list, add, update, delete. Added or edited content is re-embedded
with the dataset's embedding model before it is stored, so it is searchable on return."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field
from quart import Blueprint, Response, g

from api.components import components
from api.db.services import chunk_service, document_service, knowledgebase_service, retrieval_service
from api.utils.api_utils import NonBlank, json_body, ok, query_args
from rag.llm.errors import LLMServiceError

bp = Blueprint("chunks", __name__, url_prefix="/api/v1/datasets")

MAX_CHUNK_CHARS = 100_000


class ChunkQuery(BaseModel):
    model_config = ConfigDict(extra="ignore")
    page: int = Field(1, ge=1)
    page_size: int = Field(30, ge=1, le=1000)
    keywords: str | None = Field(None, max_length=1000)
    id: str | None = None


class KeywordLists(BaseModel):
    model_config = ConfigDict(extra="forbid")
    important_keywords: list[str] | None = Field(None, max_length=256)
    questions: list[str] | None = Field(None, max_length=256)


class NewChunk(KeywordLists):
    content: NonBlank = Field(..., max_length=MAX_CHUNK_CHARS)


class ChunkChanges(KeywordLists):
    content: NonBlank | None = Field(None, max_length=MAX_CHUNK_CHARS)
    available: bool | None = None


class ChunkIds(BaseModel):
    model_config = ConfigDict(extra="forbid")
    chunk_ids: list[str] | None


async def _embed_for_dataset(dataset_id: str, text: str):
    parts = components()
    dataset = await parts.db.run(knowledgebase_service.get_owned, g.tenant_id, dataset_id)
    try:
        vectors, _ = await parts.bundle(g.tenant_id, dataset.embd_id, "embedding").encode([text])
    except LLMServiceError as error:
        raise retrieval_service.model_failure(error, dataset.embd_id) from None
    return vectors[0]


@bp.get("/<dataset_id>/documents/<doc_id>/chunks")
async def list_chunks(dataset_id: str, doc_id: str) -> Response:
    query = query_args(ChunkQuery)
    parts = components()
    listed = await parts.db.run(chunk_service.list_page, g.tenant_id, dataset_id, doc_id, parts.doc_store,
                                page=query.page, page_size=query.page_size, keywords=query.keywords,
                                chunk_id=query.id)
    return ok(listed)


@bp.post("/<dataset_id>/documents/<doc_id>/chunks")
async def add_chunk(dataset_id: str, doc_id: str) -> Response:
    body = await json_body(NewChunk)
    parts = components()
    await parts.db.run(document_service.get_owned, g.tenant_id, dataset_id, doc_id)
    vector = await _embed_for_dataset(dataset_id, body.content)
    chunk = await parts.db.run(
        chunk_service.add, g.tenant_id, dataset_id, doc_id, parts.doc_store, content=body.content,
        important_keywords=body.important_keywords or [], questions=body.questions or [], vector=vector,
    )
    return ok({"chunk": chunk})


@bp.put("/<dataset_id>/documents/<doc_id>/chunks/<chunk_id>")
async def update_chunk(dataset_id: str, doc_id: str, chunk_id: str) -> Response:
    changes = (await json_body(ChunkChanges)).model_dump(exclude_none=True)
    parts = components()
    await parts.db.run(chunk_service.get_owned_chunk, g.tenant_id, dataset_id, doc_id, chunk_id, parts.doc_store)
    vector = await _embed_for_dataset(dataset_id, changes["content"]) if "content" in changes else None
    chunk = await parts.db.run(chunk_service.update, g.tenant_id, dataset_id, doc_id, chunk_id, parts.doc_store,
                               changes, vector)
    return ok(chunk)


@bp.delete("/<dataset_id>/documents/<doc_id>/chunks")
async def delete_chunks(dataset_id: str, doc_id: str) -> Response:
    body = await json_body(ChunkIds)
    parts = components()
    await parts.db.run(chunk_service.delete, g.tenant_id, dataset_id, doc_id, body.chunk_ids, parts.doc_store)
    return ok(True)
