"""/api/v1/datasets/<id>/documents: upload, list, download, update, delete; (re)parse and cancel.

Both API lines are served: ``PUT`` (v0.22) and ``PATCH`` (v0.27) update a document, and parsing is
asked for on ``/chunks`` (v0.22) or ``/documents/parse`` and ``/documents/stop`` (v0.27) with the
same body. Messages follow RAGFlow's where its test cases assert them.
"""

from __future__ import annotations

import asyncio
from typing import Any
from urllib.parse import quote

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from quart import Blueprint, Response, g, request

from api.apps.sdk.dataset import ParserConfig
from api.components import components
from api.db.services import document_service
from api.db.services.document_service import Upload
from api.errors import ApiError, RetCode, data_error
from api.utils.api_utils import ListQuery, json_body, ok, validate
from api.utils.compat import ids_to_delete

bp = Blueprint("documents", __name__, url_prefix="/api/v1/datasets")

READ_ONLY_FIELDS = ("chunk_count", "token_count", "progress")


class DocumentQuery(ListQuery):
    """List parameters; ``ids``, ``suffix`` and ``run`` repeat (``?ids=a&ids=b``).

    RAGFlow's document list is lenient where the dataset list is strict: ``page=0`` reads as
    the first page and ``page_size=0`` answers no documents (with the total), as its cases assert.
    """

    page: int = Field(1, ge=0)
    page_size: int = Field(30, ge=0, le=1000)
    keywords: str | None = None
    create_time_from: int = Field(0, ge=0)
    create_time_to: int = Field(0, ge=0)
    ids: list[str] | None = None
    suffix: list[str] | None = None
    run: list[str] | None = None


REPEATED_PARAMS = ("ids", "suffix", "run")


def document_query() -> DocumentQuery:
    args: dict[str, Any] = {}
    for key in request.args:
        values = [value for value in request.args.getlist(key) if value != ""]
        if values:
            args[key] = values if key in REPEATED_PARAMS else values[-1]
    return validate(DocumentQuery, args)


class DocumentChanges(BaseModel):
    """What a client may change. RAGFlow refuses the counters by name; other unknown keys are
    argument errors. ``chunk_method`` is checked by the service, with RAGFlow's message."""

    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(None, max_length=255)
    chunk_method: str | None = None
    parser_config: ParserConfig | None = None
    meta_fields: dict[str, Any] | None = None
    enabled: bool | None = None

    @model_validator(mode="before")
    @classmethod
    def _read_only(cls, data: Any) -> Any:
        if isinstance(data, dict):
            for field in READ_ONLY_FIELDS:
                if field in data:
                    raise data_error(f"Can't change `{field}`.")
            if "name" in data and not isinstance(data["name"], str):
                raise not_a_string_name(data["name"])
            if "meta_fields" in data and not isinstance(data["meta_fields"], dict | None):
                raise ValueError("meta_fields must be a dictionary")
        return data

    @field_validator("enabled", mode="before")
    @classmethod
    def _enabled(cls, value: Any) -> Any:
        """RAGFlow documents ``enabled`` as 1/0; JSON booleans work too."""
        return bool(value) if value in (0, 1) else value

    def given(self) -> dict[str, Any]:
        changes = self.model_dump(exclude_none=True)
        if self.parser_config is not None:
            changes["parser_config"] = self.parser_config.given()
        return changes


def not_a_string_name(value: Any) -> ApiError:
    """RAGFlow answers a non-string ``name`` (``0``, ``null``) with code 100 and the Python
    error its rename hits; its test cases assert that exact text, so Ragline says the same."""
    return ApiError(RetCode.EXCEPTION_ERROR, f"AttributeError(\"'{type(value).__name__}' object has no attribute 'encode'\")")


class DocumentIds(BaseModel):
    model_config = ConfigDict(extra="forbid")

    ids: list[str] | None = None
    delete_all: bool | None = None


class ParseRequest(BaseModel):
    """Which documents to parse or stop; an empty list is refused by the service in RAGFlow's words."""

    model_config = ConfigDict(extra="forbid")
    document_ids: list[str]


@bp.post("/<dataset_id>/documents")
async def upload_documents(dataset_id: str) -> Response:
    files = await request.files
    uploads = [Upload(item.filename or "", await asyncio.to_thread(item.read)) for item in files.getlist("file")]
    parts = components()
    documents = await parts.db.run(document_service.upload, g.tenant_id, dataset_id, uploads, parts.storage)
    return ok(documents)


@bp.get("/<dataset_id>/documents")
async def list_documents(dataset_id: str) -> Response:
    query = document_query()
    docs, total = await components().db.run(
        document_service.list_page, g.tenant_id, dataset_id, page=max(query.page, 1),
        page_size=max(query.page_size, 1),
        orderby=query.orderby, desc=query.desc, doc_id=query.id, doc_ids=query.ids, name=query.name,
        keywords=query.keywords, create_time_from=query.create_time_from, create_time_to=query.create_time_to,
        suffixes=query.suffix, runs=query.run,
    )
    return ok({"total": total, "docs": docs if query.page_size else []})


@bp.get("/<dataset_id>/documents/<doc_id>")
async def download_document(dataset_id: str, doc_id: str) -> Response:
    parts = components()
    name, data = await parts.db.run(document_service.read_file, g.tenant_id, dataset_id, doc_id, parts.storage)
    response = Response(data, content_type="application/octet-stream")
    response.headers["Content-Disposition"] = f"attachment; filename*=UTF-8''{quote(name)}"
    return response


@bp.put("/<dataset_id>/documents/<doc_id>")
@bp.patch("/<dataset_id>/documents/<doc_id>")
async def update_document(dataset_id: str, doc_id: str) -> Response:
    changes = (await json_body(DocumentChanges)).given()
    parts = components()
    document = await parts.db.run(document_service.update, g.tenant_id, dataset_id, doc_id, changes, parts.doc_store)
    return ok(document)


async def refuse_non_object_body() -> None:
    """A JSON body that is not an object (``"not json"``) gets RAGFlow's code 100 and the Python
    error it hits reading it, the text its document-delete cases assert."""
    data = await request.get_json(force=True, silent=True)
    if data is not None and not isinstance(data, dict):
        raise ApiError(RetCode.EXCEPTION_ERROR, f"AttributeError(\"'{type(data).__name__}' object has no attribute 'get'\")")


@bp.delete("/<dataset_id>/documents")
async def delete_documents(dataset_id: str) -> Response:
    """Without ``delete_all`` (v0.22), no ids or an empty list deletes every document of the
    dataset, as RAGFlow v0.22 does; with it (v0.27), only ``delete_all: true`` does."""
    await refuse_non_object_body()
    body = await json_body(DocumentIds)
    ids = ids_to_delete(body.ids, body.delete_all)
    if body.delete_all is None and not ids:
        ids = None
    parts = components()
    result = await parts.db.run(document_service.delete_many, g.tenant_id, dataset_id, ids, parts.doc_store,
                                parts.storage)
    return ok(result)


@bp.post("/<dataset_id>/chunks")
@bp.post("/<dataset_id>/documents/parse")
async def parse_documents(dataset_id: str) -> Response:
    body = await json_body(ParseRequest)
    await components().db.run(document_service.queue_parsing, g.tenant_id, dataset_id, body.document_ids)
    return ok(True)


@bp.delete("/<dataset_id>/chunks")
@bp.post("/<dataset_id>/documents/stop")
async def cancel_parsing(dataset_id: str) -> Response:
    body = await json_body(ParseRequest)
    await components().db.run(document_service.cancel_parsing, g.tenant_id, dataset_id, body.document_ids)
    return ok(True)
