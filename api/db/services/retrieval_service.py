"""Retrieval for an API caller: check the datasets are theirs and agree on one embedding model,
then run the (synchronous) Dealer in the worker pool and shape its chunks for the API."""

from __future__ import annotations

from typing import Any

from api.db.models import Document, Knowledgebase
from api.db.services.common import require_all
from api.db.services.knowledgebase_service import owned_with_one_model
from api.errors import ApiError, RetCode
from rag.llm.errors import LLMServiceError


def datasets_for_retrieval(tenant_id: str, kb_ids: list[str], doc_ids: list[str] | None) -> list[Knowledgebase]:
    """The caller's datasets, refusing foreign ids and mixed embedding models (102)."""
    found = owned_with_one_model(tenant_id, kb_ids)
    if doc_ids:
        owned = {d.id for d in Document.select(Document.id).where(
            Document.id.in_(doc_ids) & Document.kb_id.in_(kb_ids) & (Document.tenant_id == tenant_id)
        )}
        require_all(doc_ids, owned, "These documents are not in the given datasets")
    return found


def to_api_chunk(chunk: dict[str, Any]) -> dict[str, Any]:
    """A Dealer chunk in ``/api/v1/retrieval``'s shape."""
    shaped = {
        "id": chunk["chunk_id"],
        "content": chunk["content_with_weight"],
        "document_id": chunk["doc_id"],
        "document_keyword": chunk["docnm_kwd"],
        "dataset_id": chunk["kb_id"],
        "important_keywords": chunk.get("important_kwd", []),
        "questions": chunk.get("question_kwd", []),
        "image_id": chunk.get("image_id", ""),
        "similarity": chunk["similarity"],
        "vector_similarity": chunk["vector_similarity"],
        "term_similarity": chunk["term_similarity"],
        "positions": chunk.get("positions", []),
    }
    if "highlight" in chunk:
        shaped["highlight"] = chunk["highlight"]
    return shaped


def model_failure(error: LLMServiceError, model_name: str | None = None) -> ApiError:
    """A model the request needed (embedding, rerank) failed: 103 naming it, never a bare 500.

    Shared by retrieval and the chunk routes, which embed text with the dataset's model.
    """
    name = model_name or error.model
    subject = f"The model {name}" if name else "A model"
    return ApiError(RetCode.OPERATING_ERROR, f"{subject} failed: {error.message}")
