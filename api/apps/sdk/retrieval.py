"""POST /api/v1/retrieval: hybrid search over the caller's datasets.

Takes what both ragflow-sdk lines send: v0.22's fields and v0.27's ``cross_languages``,
``metadata_condition``, ``use_kg`` and ``toc_enhance`` (``null`` for any optional one means
its default). ``metadata_condition`` narrows the search to the documents whose metadata match
(with ``document_ids`` too: to those of them that match); no match means no chunks.
``cross_languages``, ``use_kg`` and ``toc_enhance`` are accepted and have no effect: Ragline
builds no knowledge graph or table of contents, and searches the question as asked.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field
from quart import Blueprint, Response, g

from api.components import components
from api.db.services import metadata_service, retrieval_service
from api.errors import ApiError, RetCode, data_error
from api.utils.api_utils import json_body, ok, parse_bool, validate
from rag.llm.errors import LLMServiceError
from rag.prompts import keyword_extraction

bp = Blueprint("retrieval", __name__, url_prefix="/api/v1")

MAX_QUESTION_CHARS = 10_000


def _default_when_null(default: Any):
    """RAGFlow clients send ``null`` for an option they leave at its default."""
    return BeforeValidator(lambda value: default if value is None else parse_bool(value))


class RetrievalRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")

    dataset_ids: list[str] = Field(..., min_length=1, max_length=256)
    question: str = Field(..., max_length=MAX_QUESTION_CHARS)
    document_ids: Annotated[list[str], _default_when_null([])] = Field(default_factory=list, max_length=10_000)
    page: Annotated[int, _default_when_null(1)] = Field(1, ge=1)
    page_size: Annotated[int, _default_when_null(30)] = Field(30, ge=1, le=1000)
    similarity_threshold: Annotated[float, _default_when_null(0.2)] = Field(0.2, ge=0, le=1)
    vector_similarity_weight: Annotated[float, _default_when_null(0.3)] = 0.3
    top_k: Annotated[int, _default_when_null(1024)] = Field(1024, le=10_000)
    rerank_id: str | None = None
    keyword: Annotated[bool, _default_when_null(False)] = False
    highlight: Annotated[bool, _default_when_null(False)] = False
    cross_languages: list[str] | None = None
    metadata_condition: dict[str, Any] | None = None
    use_kg: Annotated[bool, _default_when_null(False)] = False
    toc_enhance: Annotated[bool, _default_when_null(False)] = False

    def fusion_weight(self) -> float:
        """RAGFlow takes any number and its tests send 10; the weight is a share, so clamp."""
        return min(1.0, max(0.0, self.vector_similarity_weight))


class _AnyBody(BaseModel):
    model_config = ConfigDict(extra="allow")


def check_ragflow_rules(body: dict[str, Any]) -> None:
    """The checks RAGFlow makes before any type check, with its codes and messages (its tests
    compare them): 102 for a missing part, ``top_k`` per API line (v0.22 answered its search
    engine's error, 100; v0.27 checks it, 102)."""
    if not body.get("dataset_ids"):
        raise data_error("`dataset_ids` is required.")
    if not isinstance(body["dataset_ids"], list):
        raise data_error("`dataset_ids` should be a list")
    if "question" not in body or body["question"] is None:
        raise data_error("`question` is required.")
    if body.get("document_ids") is not None and not isinstance(body["document_ids"], list):
        raise data_error("`documents` should be a list")
    top_k = body.get("top_k")
    if isinstance(top_k, (int, float, str)) and not isinstance(top_k, bool) and _as_int(top_k) is not None \
            and _as_int(top_k) <= 0:
        code = RetCode.EXCEPTION_ERROR if getattr(g, "dialect", "0.22") == "0.22" else RetCode.DATA_ERROR
        raise ApiError(code, "`top_k` must be greater than 0")
    highlight = body.get("highlight")
    if highlight is not None and not isinstance(parse_bool(highlight), bool):
        raise data_error("`highlight` should be a boolean")


def _as_int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


async def _with_keywords(question: str) -> str:
    """``keyword: true``: the tenant's chat model adds the question's main keywords (the builtin
    extractive model cannot, so with it the question stays as asked)."""
    llm = components().bundle(g.tenant_id, None, "chat")
    if llm.is_extractive:
        return question
    return " ".join([question, *await keyword_extraction(llm, question)])


EMPTY_RESULT: dict[str, Any] = {"total": 0, "chunks": [], "doc_aggs": []}


@bp.post("/retrieval")
async def retrieval() -> Response:
    raw = (await json_body(_AnyBody)).model_extra or {}
    check_ragflow_rules(raw)
    body = validate(RetrievalRequest, raw)
    condition = metadata_service.parse_condition(body.metadata_condition)
    parts = components()
    datasets, doc_ids = await parts.db.run(retrieval_service.search_scope, g.tenant_id, body.dataset_ids,
                                           body.document_ids, condition)
    if doc_ids == [] or not body.question.strip():
        return ok(EMPTY_RESULT)
    try:
        question = await _with_keywords(body.question) if body.keyword else body.question
        reranker = parts.sync_view(parts.bundle(g.tenant_id, body.rerank_id, "rerank")) if body.rerank_id else None
        result = await parts.search_question(
            g.tenant_id, datasets[0].embd_id, question, body.dataset_ids, body.page, body.page_size,
            rerank_mdl=reranker,
            similarity_threshold=body.similarity_threshold, vector_similarity_weight=body.fusion_weight(),
            top=body.top_k, doc_ids=doc_ids, highlight=body.highlight,
        )
    except LLMServiceError as error:
        raise retrieval_service.model_failure(error) from None
    chunks = [retrieval_service.to_api_chunk(chunk) for chunk in result["chunks"]]
    return ok({"total": result["total"], "chunks": chunks, "doc_aggs": result["doc_aggs"]})
