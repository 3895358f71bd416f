"""POST /api/v1/retrieval: hybrid search over the caller's datasets."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field
from quart import Blueprint, Response, g

from api.components import components
from api.db.services import retrieval_service
from api.utils.api_utils import NonBlank, json_body, ok
from rag.llm.errors import LLMServiceError
from rag.prompts import keyword_extraction

bp = Blueprint("retrieval", __name__, url_prefix="/api/v1")

MAX_QUESTION_CHARS = 10_000


class RetrievalRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")

    dataset_ids: list[str] = Field(..., min_length=1, max_length=256)
    question: NonBlank = Field(..., max_length=MAX_QUESTION_CHARS)
    document_ids: list[str] | None = Field(None, max_length=10_000)
    page: int = Field(1, ge=1)
    page_size: int = Field(30, ge=1, le=1000)
    similarity_threshold: float = Field(0.2, ge=0, le=1)
    vector_similarity_weight: float = Field(0.3, ge=0, le=1)
    top_k: int = Field(1024, ge=1, le=10_000)
    rerank_id: str | None = None
    keyword: bool = False
    highlight: bool = False


async def _with_keywords(question: str) -> str:
    """``keyword: true``: the tenant's chat model adds the question's main keywords (the builtin
    extractive model cannot, so with it the question stays as asked)."""
    llm = components().bundle(g.tenant_id, None, "chat")
    if llm.is_extractive:
        return question
    return " ".join([question, *await keyword_extraction(llm, question)])


@bp.post("/retrieval")
async def retrieval() -> Response:
    body = await json_body(RetrievalRequest)
    parts = components()
    datasets = await parts.db.run(retrieval_service.datasets_for_retrieval, g.tenant_id, body.dataset_ids,
                                  body.document_ids)
    try:
        question = await _with_keywords(body.question) if body.keyword else body.question
        reranker = parts.sync_view(parts.bundle(g.tenant_id, body.rerank_id, "rerank")) if body.rerank_id else None
        query_encoder = await parts.embedded_question(g.tenant_id, datasets[0].embd_id, question)
        result = await parts.search(
            question, query_encoder, g.tenant_id, body.dataset_ids, body.page, body.page_size, rerank_mdl=reranker,
            similarity_threshold=body.similarity_threshold, vector_similarity_weight=body.vector_similarity_weight,
            top=body.top_k, doc_ids=body.document_ids, highlight=body.highlight,
        )
    except LLMServiceError as error:
        raise retrieval_service.model_failure(error) from None
    chunks = [retrieval_service.to_api_chunk(chunk) for chunk in result["chunks"]]
    return ok({"total": result["total"], "chunks": chunks, "doc_aggs": result["doc_aggs"]})
