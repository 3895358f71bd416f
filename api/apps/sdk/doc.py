"""/api/v1/datasets/<id>/documents: upload, list, download, update, delete; (re)parse and cancel."""

from __future__ import annotations

import asyncio
from typing import Any
from urllib.parse import quote

from pydantic import BaseModel, ConfigDict, Field
from quart import Blueprint, Response, g, request

from api.apps.sdk.dataset import ChunkMethod, ParserConfig
from api.components import components
from api.db.services import document_service
from api.db.services.document_service import Upload
from api.utils.api_utils import ListQuery, json_body, ok, query_args

bp = Blueprint("documents", __name__, url_prefix="/api/v1/datasets")


class DocumentQuery(ListQuery):
    keywords: str | None = None
    create_time_from: int = Field(0, ge=0)
    create_time_to: int = Field(0, ge=0)


class DocumentChanges(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(None, min_length=1, max_length=255)
    chunk_method: ChunkMethod | None = None
    parser_config: ParserConfig | None = None
    meta_fields: dict[str, Any] | None = None
    enabled: bool | None = None

    def given(self) -> dict[str, Any]:
        return self.model_dump(exclude_none=True)


class DocumentIds(BaseModel):
    model_config = ConfigDict(extra="forbid")
    ids: list[str] | None


class ParseRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    document_ids: list[str] = Field(..., min_length=1)


@bp.post("/<dataset_id>/documents")
async def upload_documents(dataset_id: str) -> Response:
    files = await request.files
    uploads = [Upload(item.filename or "", await asyncio.to_thread(item.read)) for item in files.getlist("file")]
    parts = components()
    documents = await parts.db.run(document_service.upload, g.tenant_id, dataset_id, uploads, parts.storage)
    return ok(documents)


@bp.get("/<dataset_id>/documents")
async def list_documents(dataset_id: str) -> Response:
    query = query_args(DocumentQuery)
    docs, total = await components().db.run(
        document_service.list_page, g.tenant_id, dataset_id, page=query.page, page_size=query.page_size,
        orderby=query.orderby, desc=query.desc, doc_id=query.id, name=query.name, keywords=query.keywords,
        create_time_from=query.create_time_from, create_time_to=query.create_time_to,
    )
    return ok({"total": total, "docs": docs})


@bp.get("/<dataset_id>/documents/<doc_id>")
async def download_document(dataset_id: str, doc_id: str) -> Response:
    parts = components()
    name, data = await parts.db.run(document_service.read_file, g.tenant_id, dataset_id, doc_id, parts.storage)
    response = Response(data, content_type="application/octet-stream")
    response.headers["Content-Disposition"] = f"attachment; filename*=UTF-8''{quote(name)}"
    return response


@bp.put("/<dataset_id>/documents/<doc_id>")
async def update_document(dataset_id: str, doc_id: str) -> Response:
    changes = (await json_body(DocumentChanges)).given()
    parts = components()
    document = await parts.db.run(document_service.update, g.tenant_id, dataset_id, doc_id, changes, parts.doc_store)
    return ok(document)


@bp.delete("/<dataset_id>/documents")
async def delete_documents(dataset_id: str) -> Response:
    body = await json_body(DocumentIds)
    parts = components()
    await parts.db.run(document_service.delete_many, g.tenant_id, dataset_id, body.ids, parts.doc_store,
                       parts.storage)
    return ok(True)


@bp.post("/<dataset_id>/chunks")
async def parse_documents(dataset_id: str) -> Response:
    body = await json_body(ParseRequest)
    await components().db.run(document_service.queue_parsing, g.tenant_id, dataset_id, body.document_ids)
    return ok(True)


@bp.delete("/<dataset_id>/chunks")
async def cancel_parsing(dataset_id: str) -> Response:
    body = await json_body(ParseRequest)
    await components().db.run(document_service.cancel_parsing, g.tenant_id, dataset_id, body.document_ids)
    return ok(True)
