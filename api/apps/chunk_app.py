"""Chunks of a document: list, get, add, update (PATCH, and PUT as before), delete. Added or
edited content is re-embedded with the dataset's embedding model before it is stored, so it
is searchable on return.

Bodies are checked the way RAGFlow checks them, with its codes and messages, since its
clients and tests compare them. ``image_base64`` is decoded and stored through the storage
component under the key ``<dataset_id>-<chunk_id>``, which is also the chunk's ``image_id``
(RAGFlow's naming).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from quart import Blueprint, Response, g, request

from api.components import components
from api.db.models import new_id
from api.db.services import chunk_service, document_service, knowledgebase_service, retrieval_service
from api.errors import ApiError, RetCode, argument_error, data_error
from api.utils.api_utils import ok, parse_bool, query_args
from api.utils.compat import DEFAULT_DIALECT, ids_to_delete
from rag.llm.errors import LLMServiceError

bp = Blueprint("chunks", __name__, url_prefix="/api/v1/datasets")

MAX_CHUNK_CHARS = 100_000
MAX_LIST_ITEMS = 256
MAX_IMAGE_BYTES = 10 * 1024 * 1024
DEFAULT_PAGE_SIZE = 30


class ChunkQuery(BaseModel):
    model_config = ConfigDict(extra="ignore")
    page: int = Field(1, ge=1)
    page_size: int = Field(DEFAULT_PAGE_SIZE, ge=0, le=1000)
    keywords: str | None = Field(None, max_length=1000)
    id: str | None = None
    available: bool | None = None


async def _body() -> dict[str, Any]:
    """The JSON object sent (``{}`` for none); anything else is 101."""
    raw = await request.get_data()
    if not raw.strip():
        return {}
    body = await request.get_json(force=True, silent=True)
    if not isinstance(body, dict):
        raise argument_error("The request body must be a JSON object.")
    return body


def _string_list(body: dict[str, Any], key: str, not_a_list: str, bad_item: str | None = None) -> list[str]:
    """``body[key]`` as a list of strings. RAGFlow answers a non-list with 102 and, for the
    keyword lists, a non-string item with the TypeError its join raised (100)."""
    value = body[key]
    if not isinstance(value, list):
        raise data_error(not_a_list)
    for position, item in enumerate(value):
        if not isinstance(item, str):
            if bad_item:
                raise data_error(bad_item)
            raise ApiError(RetCode.EXCEPTION_ERROR,
                           f"TypeError('sequence item {position}: expected str instance, {type(item).__name__} found')")
    if len(value) > MAX_LIST_ITEMS:
        raise argument_error(f"`{key}` takes at most {MAX_LIST_ITEMS} items.")
    return value


def _content(value: Any) -> str:
    if value is None or (isinstance(value, str) and not value.strip()):
        raise data_error("`content` is required")
    if not isinstance(value, str):
        raise argument_error("`content` must be a string.")
    if len(value) > MAX_CHUNK_CHARS:
        raise argument_error(f"`content` is longer than {MAX_CHUNK_CHARS} characters.")
    return value


def _added_content(body: dict[str, Any]) -> Any:
    """``content`` of an add body. An explicit ``null`` is where the lines differ: v0.22's
    HTTP cases expect the TypeError RAGFlow hit concatenating it (code 100), later RAGFlow
    answers "`content` is required" (102), which ``_content`` gives."""
    value = body.get("content")
    if value is None and "content" in body and getattr(g, "dialect", DEFAULT_DIALECT) == "0.22":
        raise ApiError(RetCode.EXCEPTION_ERROR,
                       "TypeError(\"unsupported operand type(s) for +: 'NoneType' and 'str'\")")
    return value


def _image(value: Any) -> bytes:
    """RAGFlow's checks of ``image_base64`` (a ``data:...;base64,`` prefix is also read)."""
    if not isinstance(value, str) or not value.strip():
        raise data_error("`image_base64` must be a non-empty string")
    encoded = value.split(",", 1)[1] if value.startswith("data:") and "," in value else value
    try:
        image = base64.b64decode(encoded.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise data_error("Invalid `image_base64`") from None
    if not image:
        raise data_error("`image_base64` is empty")
    if len(image) > MAX_IMAGE_BYTES:
        raise ApiError(RetCode.ARGUMENT_ERROR, f"`image_base64` is larger than {MAX_IMAGE_BYTES} bytes.", 413)
    return image


def stored_fields(body: dict[str, Any], *, adding: bool) -> dict[str, Any]:
    """The chunk fields a body sets, in the doc store's names; RAGFlow's wording differs
    between add ("is required to be a list") and update ("should be a list")."""
    wording = "is required to be a list" if adding else "should be a list"
    fields: dict[str, Any] = {}
    if "important_keywords" in body:
        fields["important_kwd"] = _string_list(body, "important_keywords", f"`important_keywords` {wording}")
    if "questions" in body:
        questions = _string_list(body, "questions", f"`questions` {wording}")
        fields["question_kwd"] = [q.strip() for q in questions if q.strip()]
    if "tag_kwd" in body:
        fields["tag_kwd"] = _string_list(body, "tag_kwd", f"`tag_kwd` {wording}", "`tag_kwd` must be a list of strings")
    return fields


def update_changes(body: dict[str, Any]) -> dict[str, Any]:
    """What an update body changes, in ``chunk_service.update``'s terms; unknown keys are
    ignored as RAGFlow ignores them."""
    changes: dict[str, Any] = {}
    if body.get("content") is not None:  # null leaves the content as it is (RAGFlow's cases on both lines)
        changes["content"] = _content(body["content"])
    fields = stored_fields(body, adding=False)
    if "important_kwd" in fields:
        changes["important_keywords"] = fields.pop("important_kwd")
    if "question_kwd" in fields:
        changes["questions"] = fields.pop("question_kwd")
    changes.update(fields)
    if "available" in body:
        available = parse_bool(body["available"])
        if not isinstance(available, (bool, int)) or isinstance(available, float):
            raise argument_error("`available` should be a boolean")
        changes["available"] = bool(available)
    if "positions" in body:
        if not isinstance(body["positions"], list):
            raise data_error("`positions` should be a list")
        changes["position_int"] = body["positions"]
    return changes


async def _embed_for_dataset(dataset_id: str, text: str):
    parts = components()
    dataset = await parts.db.run(knowledgebase_service.get_owned, g.tenant_id, dataset_id)
    try:
        vectors, _ = await parts.bundle(g.tenant_id, dataset.embd_id, "embedding").encode([text])
    except LLMServiceError as error:
        raise retrieval_service.model_failure(error, dataset.embd_id) from None
    return vectors[0]


async def _store_image(dataset_id: str, chunk_id: str, image: bytes) -> str:
    image_id = f"{dataset_id}-{chunk_id}"
    await asyncio.to_thread(components().storage.put, image_id, image)
    return image_id


@bp.get("/<dataset_id>/documents/<doc_id>/chunks")
async def list_chunks(dataset_id: str, doc_id: str) -> Response:
    query = query_args(ChunkQuery)
    parts = components()
    listed = await parts.db.run(chunk_service.list_page, g.tenant_id, dataset_id, doc_id, parts.doc_store,
                                page=query.page, page_size=query.page_size or DEFAULT_PAGE_SIZE,
                                keywords=query.keywords, chunk_id=query.id, available=query.available)
    return ok(listed)


@bp.get("/<dataset_id>/documents/<doc_id>/chunks/<chunk_id>")
async def get_chunk(dataset_id: str, doc_id: str, chunk_id: str) -> Response:
    parts = components()
    return ok(await parts.db.run(chunk_service.get_one, g.tenant_id, dataset_id, doc_id, chunk_id, parts.doc_store))


@bp.post("/<dataset_id>/documents/<doc_id>/chunks")
async def add_chunk(dataset_id: str, doc_id: str) -> Response:
    parts = components()
    await parts.db.run(document_service.get_owned, g.tenant_id, dataset_id, doc_id)
    body = await _body()
    content = _content(_added_content(body))
    fields = stored_fields(body, adding=True)
    image = _image(body["image_base64"]) if "image_base64" in body else None
    vector = await _embed_for_dataset(dataset_id, content)
    chunk_id = new_id()
    if image is not None:
        fields["img_id"] = await _store_image(dataset_id, chunk_id, image)
    chunk = await parts.db.run(chunk_service.add, g.tenant_id, dataset_id, doc_id, parts.doc_store,
                               content=content, vector=vector, extra=fields, chunk_id=chunk_id)
    return ok({"chunk": chunk})


@bp.route("/<dataset_id>/documents/<doc_id>/chunks/<chunk_id>", methods=["PUT", "PATCH"])
async def update_chunk(dataset_id: str, doc_id: str, chunk_id: str) -> Response:
    parts = components()
    await parts.db.run(chunk_service.get_owned_chunk, g.tenant_id, dataset_id, doc_id, chunk_id, parts.doc_store)
    body = await _body()
    changes = update_changes(body)
    image = _image(body["image_base64"]) if "image_base64" in body else None
    vector = await _embed_for_dataset(dataset_id, changes["content"]) if "content" in changes else None
    if image is not None:
        changes["img_id"] = await _store_image(dataset_id, chunk_id, image)
    chunk = await parts.db.run(chunk_service.update, g.tenant_id, dataset_id, doc_id, chunk_id, parts.doc_store,
                               changes, vector)
    return ok(chunk)


class ChunkDeletion(BaseModel):
    model_config = ConfigDict(extra="ignore")
    chunk_ids: list[str] | None = None
    delete_all: bool | None = None


@bp.delete("/<dataset_id>/documents/<doc_id>/chunks")
async def delete_chunks(dataset_id: str, doc_id: str) -> Response:
    """RAGFlow's semantics: the named chunks that exist are deleted; a count short of the
    unique ids asked is 102 ``rm_chunk deleted chunks N, expect M``; repeated ids are reported
    in ``data.errors``. Without ``delete_all`` an empty list meant "all" to v0.22 (its tests
    assert it), so it still does for a client on that line."""
    parts = components()
    await parts.db.run(document_service.get_owned, g.tenant_id, dataset_id, doc_id)
    body = await _body()
    try:
        asked = ChunkDeletion.model_validate(body)
    except ValueError:
        raise argument_error("`chunk_ids` must be a list of ids and `delete_all` a boolean.") from None
    chunk_ids = asked.chunk_ids
    if asked.delete_all is None and chunk_ids == [] and getattr(g, "dialect", "0.22") == "0.22":
        chunk_ids = None
    targets = ids_to_delete(chunk_ids, asked.delete_all)
    unique = None if targets is None else list(dict.fromkeys(targets))
    deleted = await parts.db.run(chunk_service.delete, g.tenant_id, dataset_id, doc_id, unique, parts.doc_store)
    if unique is None or not unique:
        return ok(True, message=f"deleted {deleted} chunks")
    if deleted != len(unique):
        raise data_error(f"rm_chunk deleted chunks {deleted}, expect {len(unique)}")
    repeated = [f"Duplicate chunk ids: {chunk_id}" for chunk_id in unique if targets.count(chunk_id) > 1]
    if repeated:
        return ok({"success_count": deleted, "errors": repeated},
                  message=f"Partially deleted {deleted} chunks with {len(repeated)} errors")
    return ok(True, message=f"deleted {deleted} chunks")
