"""Chunks of one document: list, add, update, delete, with the document's counters kept true.

Synchronous, run in the worker pool. Embedding happens before these functions are called (it
may be a network call); they receive the vectors ready to store, so a chunk written here is
searchable as soon as the call returns.
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np

from api.db.models import Document, Knowledgebase, new_id
from api.db.services.document_service import get_owned as get_owned_document
from api.db.services.knowledgebase_service import get_owned as get_owned_dataset
from api.errors import data_error
from rag.nlp import tokenize
from rag.utils.doc_store_conn import (
    DocStoreConnection,
    MatchTextExpr,
    OrderByExpr,
    important_tokens,
    index_name,
    make_chunk_row,
)
from rag.utils.token_utils import num_tokens

CHUNK_FIELDS = ["id", "content_with_weight", "doc_id", "docnm_kwd", "important_kwd", "question_kwd", "tag_kwd", "kb_id",
                "img_id", "available_int", "position_int", "create_time", "create_timestamp_flt"]
RUNTIME_FIELD = re.compile(r"(_vec$|_sm_|_tks|_ltks)")


def to_api(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": row["id"],
        "content": row.get("content_with_weight", ""),
        "document_id": row.get("doc_id"),
        "docnm_kwd": row.get("docnm_kwd"),
        "important_keywords": row.get("important_kwd") or [],
        "questions": row.get("question_kwd") or [],
        "tag_kwd": row.get("tag_kwd") or [],
        "dataset_id": row.get("kb_id"),
        "image_id": row.get("img_id") or "",
        "available": bool(row.get("available_int", 1)),
        "positions": row.get("position_int") or [],
        "create_time": row.get("create_time"),
        "create_timestamp": row.get("create_timestamp_flt"),
    }


def list_page(tenant_id: str, kb_id: str, doc_id: str, doc_store: DocStoreConnection, *, page: int,
              page_size: int, keywords: str | None = None, chunk_id: str | None = None,
              available: bool | None = None) -> dict[str, Any]:
    """A page of the document's chunks; ``chunk_id`` one of them (102 when it is not there)."""
    from api.db.services.document_service import to_api as document_to_api

    doc = get_owned_document(tenant_id, kb_id, doc_id)
    index = index_name(tenant_id)
    exists = doc_store.index_exist(index, kb_id)
    if chunk_id:
        row = doc_store.get(chunk_id, index, [kb_id]) if exists else None
        if row is None or row.get("doc_id") != doc_id:
            raise data_error(f"Chunk not found: {kb_id}/{chunk_id}")
        return {"total": 1, "chunks": [to_api(row)], "doc": document_to_api(doc)}
    if not exists:
        return {"total": 0, "chunks": [], "doc": document_to_api(doc)}
    condition: dict[str, Any] = {"doc_id": doc_id}
    if available is not None:
        condition["available_int"] = int(available)
    matches = [MatchTextExpr(("content_ltks",), keywords, topn=10_000)] if keywords else []
    order = None if keywords else OrderByExpr().asc("create_timestamp_flt")
    result = doc_store.search(CHUNK_FIELDS, [], condition, matches, order, (page - 1) * page_size, page_size,
                              [index], [kb_id])
    return {"total": result.total, "chunks": [to_api(row) for row in result.rows], "doc": document_to_api(doc)}


def get_one(tenant_id: str, kb_id: str, doc_id: str, chunk_id: str, doc_store: DocStoreConnection) -> dict[str, Any]:
    """One chunk: the API's fields and, as RAGFlow v0.27 answers, the stored ones (no vectors
    or token lists)."""
    get_owned_document(tenant_id, kb_id, doc_id)
    index = index_name(tenant_id)
    row = doc_store.get(chunk_id, index, [kb_id]) if doc_store.index_exist(index, kb_id) else None
    if row is None or row.get("doc_id") != doc_id:
        raise data_error("Chunk not found!")
    stored = {key: value for key, value in row.items() if not RUNTIME_FIELD.search(key)}
    return {**stored, **to_api(row)}


def add(tenant_id: str, kb_id: str, doc_id: str, doc_store: DocStoreConnection, *, content: str,
        vector: np.ndarray, extra: dict[str, Any], chunk_id: str | None = None) -> dict[str, Any]:
    """Store a new chunk; ``extra`` holds its optional stored fields (``important_kwd``,
    ``question_kwd``, ``tag_kwd``, ``img_id``...).

    Each call adds a chunk of its own, as in RAGFlow (the same text twice is two chunks);
    ``chunk_id`` is given when the caller already stored something under it (an image).
    """
    doc = get_owned_document(tenant_id, kb_id, doc_id)
    row = make_chunk_row(doc.id, kb_id, doc.name, content, vector.tolist(),
                         important_kwd=extra.get("important_kwd", ()), question_kwd=extra.get("question_kwd", ()),
                         tag_kwd=extra.get("tag_kwd", ()))
    row.update(extra, id=chunk_id or new_id())
    index = index_name(tenant_id)
    doc_store.create_idx(index, kb_id, len(vector))
    errors = doc_store.insert([row], index, kb_id)
    if errors:
        raise data_error(f"The chunk could not be stored: {errors[0]}")
    _count(doc, chunks=1, tokens=row["token_num_int"])
    return to_api(row)


def get_owned_chunk(tenant_id: str, kb_id: str, doc_id: str, chunk_id: str,
                    doc_store: DocStoreConnection) -> dict[str, Any]:
    """The chunk, checked in RAGFlow's order: dataset, chunk (gone with a deleted document),
    document, then that the chunk is the document's."""
    get_owned_dataset(tenant_id, kb_id)
    index = index_name(tenant_id)
    row = doc_store.get(chunk_id, index, [kb_id]) if doc_store.index_exist(index, kb_id) else None
    if row is None:
        raise data_error(f"Can't find this chunk {chunk_id}")
    get_owned_document(tenant_id, kb_id, doc_id)
    if row.get("doc_id") != doc_id:
        raise data_error(f"Can't find this chunk {chunk_id}")
    return row


def update(tenant_id: str, kb_id: str, doc_id: str, chunk_id: str, doc_store: DocStoreConnection,
           changes: dict[str, Any], vector: np.ndarray | None) -> dict[str, Any]:
    """Apply ``changes`` (content, important_keywords, questions, available, and the stored
    fields tag_kwd, position_int, img_id) to one chunk.

    ``vector`` is the new content's embedding when the content changed.
    """
    row = get_owned_chunk(tenant_id, kb_id, doc_id, chunk_id, doc_store)
    new_value: dict[str, Any] = {}
    if "content" in changes:
        new_value.update(content_with_weight=changes["content"], content_ltks=tokenize(changes["content"]),
                         token_num_int=num_tokens(changes["content"]))
        new_value[next(k for k in row if k.startswith("q_") and k.endswith("_vec"))] = vector.tolist()
    if "important_keywords" in changes:
        new_value["important_kwd"] = changes["important_keywords"]
    if "important_keywords" in changes or "tag_kwd" in changes:  # full text matches both
        new_value["important_tks"] = important_tokens(changes.get("important_keywords", row.get("important_kwd") or []),
                                                      changes.get("tag_kwd", row.get("tag_kwd") or []))
    if "questions" in changes:
        new_value.update(question_kwd=changes["questions"], question_tks=tokenize(" ".join(changes["questions"])))
    if "available" in changes:
        new_value["available_int"] = int(bool(changes["available"]))
    for field in ("tag_kwd", "position_int", "img_id"):
        if field in changes:
            new_value[field] = changes[field]
    if new_value:
        doc_store.update({"id": chunk_id}, new_value, index_name(tenant_id), kb_id)
    if "content" in changes:
        old_tokens = row.get("token_num_int")  # absent from chunks indexed before it was stored
        if old_tokens is None:
            old_tokens = num_tokens(row.get("content_with_weight", ""))
        token_change = new_value["token_num_int"] - old_tokens
        _count(Document.get_by_id(doc_id), chunks=0, tokens=token_change)
    return to_api({**row, **new_value})


def delete(tenant_id: str, kb_id: str, doc_id: str, chunk_ids: list[str] | None,
           doc_store: DocStoreConnection) -> int:
    """Delete the named chunks that exist (all of the document's when ``chunk_ids`` is None);
    the number deleted. Like RAGFlow, a missing id does not stop the others: the caller
    compares the count with what it asked for."""
    doc = get_owned_document(tenant_id, kb_id, doc_id)
    index = index_name(tenant_id)
    if (chunk_ids is not None and not chunk_ids) or not doc_store.index_exist(index, kb_id):
        return 0
    condition: dict[str, Any] = {"doc_id": doc_id}
    if chunk_ids is not None:
        condition["id"] = list(dict.fromkeys(chunk_ids))
    found = doc_store.search(["id", "content_with_weight", "token_num_int"], [], condition, [], None, 0, 10_000,
                             [index], [kb_id]).rows
    deleted = doc_store.delete(condition, index, kb_id)
    if chunk_ids is None:  # every chunk went, also those past the rows listed above
        _count(doc, chunks=-doc.chunk_num, tokens=-doc.token_num)
    elif deleted:
        _count(doc, chunks=-deleted, tokens=-sum(_tokens_of(row) for row in found))
    return deleted


def _tokens_of(row: dict[str, Any]) -> int:
    stored = row.get("token_num_int")  # absent from chunks indexed before it was stored
    return num_tokens(row.get("content_with_weight", "")) if stored is None else stored


def _count(doc: Document, *, chunks: int, tokens: int) -> None:
    """Move the document's and its dataset's counters together, in one transaction."""
    with Document._meta.database.atomic():
        Document.update(chunk_num=Document.chunk_num + chunks, token_num=Document.token_num + tokens).where(
            Document.id == doc.id
        ).execute()
        Knowledgebase.update(chunk_num=Knowledgebase.chunk_num + chunks,
                             token_num=Knowledgebase.token_num + tokens).where(Knowledgebase.id == doc.kb_id).execute()
