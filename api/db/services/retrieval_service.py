"""Retrieval for an API caller: check the datasets are theirs and agree on one embedding model,
then run the (synchronous) Dealer in the worker pool and shape its chunks for the API."""

from __future__ import annotations

from typing import Any

from api.db.models import Document, Knowledgebase
from api.db.services import metadata_service
from api.db.services.knowledgebase_service import owned_with_one_model
from api.db.services.metadata_service import MetadataCondition
from api.errors import ApiError, RetCode, data_error
from rag.llm.errors import LLMServiceError


def datasets_for_retrieval(tenant_id: str, kb_ids: list[str], doc_ids: list[str] | None) -> list[Knowledgebase]:
    """The caller's datasets, refusing foreign ids and mixed embedding models (102), with the
    messages RAGFlow gives (its clients and tests compare them)."""
    owned = {kb_id for (kb_id,) in Knowledgebase.select(Knowledgebase.id).where(
        (Knowledgebase.tenant_id == tenant_id) & Knowledgebase.id.in_(kb_ids)).tuples()}
    for kb_id in kb_ids:
        if kb_id not in owned:
            raise data_error(f"You don't own the dataset {kb_id}.")
    found = owned_with_one_model(tenant_id, kb_ids)
    if doc_ids:
        in_datasets = {d for (d,) in Document.select(Document.id).where(
            Document.id.in_(doc_ids) & Document.kb_id.in_(kb_ids) & (Document.tenant_id == tenant_id)
        ).tuples()}
        for doc_id in doc_ids:
            if doc_id not in in_datasets:
                raise data_error(f"The datasets don't own the document {doc_id}")
    return found


def documents_to_search(tenant_id: str, kb_ids: list[str], doc_ids: list[str] | None,
                        condition: MetadataCondition | None) -> list[str] | None:
    """The ``doc_ids`` filter for the search: ``None`` searches every document of the datasets;
    a list (maybe empty, then there is nothing to search) is the given documents narrowed to
    those whose metadata match the condition."""
    if not metadata_service.is_filtering(condition):
        return list(doc_ids) if doc_ids else None
    matching = metadata_service.matching_document_ids(tenant_id, kb_ids, condition)
    if not doc_ids:
        return matching
    wanted = set(matching)
    return [doc_id for doc_id in dict.fromkeys(doc_ids) if doc_id in wanted]


def search_scope(tenant_id: str, kb_ids: list[str], doc_ids: list[str] | None,
                 condition: MetadataCondition | None) -> tuple[list[Knowledgebase], list[str] | None]:
    """``datasets_for_retrieval`` then ``documents_to_search``, in one call so a request crosses
    to the database's worker thread once (each crossing is a wake-up of that thread and of the
    loop, a sizeable share of a 7 ms retrieval)."""
    return datasets_for_retrieval(tenant_id, kb_ids, doc_ids), documents_to_search(tenant_id, kb_ids, doc_ids,
                                                                                    condition)


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
        "tag_kwd": chunk.get("tag_kwd", []),
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
