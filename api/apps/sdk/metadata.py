"""Document metadata of a dataset: the auto-metadata config, summaries, batch edits.

- ``GET``/``PUT /api/v1/datasets/<id>/metadata/config`` — ``{"enabled", "fields": [...]}``
- ``GET /api/v1/datasets/<id>/metadata/summary`` — ``{"summary": {field: {type, values}}}``
- ``POST /api/v1/datasets/<id>/metadata/update`` and ``PATCH .../documents/metadatas`` —
  ``{"selector": {document_ids, metadata_condition}, "updates": [...], "deletes": [...]}``
- ``PUT /api/v1/datasets/<id>/documents/<doc_id>/metadata/config`` — ``{"metadata": ...}``
- ``GET /api/v1/datasets/metadata/flattened?dataset_ids=a,b`` — ``{field: {value: [doc_id]}}``

Messages are RAGFlow's, since its clients and tests compare them.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints
from quart import Blueprint, Response, g, request

from api.components import components
from api.db.services import metadata_service
from api.errors import argument_error, data_error
from api.utils.api_utils import ok, validate

bp = Blueprint("metadata", __name__, url_prefix="/api/v1/datasets")

FieldName = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=255)]


class AutoMetadataField(BaseModel):
    """One field the parser should extract (RAGFlow's ``AutoMetadataField``)."""

    model_config = ConfigDict(extra="forbid")
    name: FieldName
    type: Literal["string", "list", "time", "number"]
    description: str | None = Field(None, max_length=65535)
    examples: list[str] | None = None
    restrict_values: bool = False


class AutoMetadataConfig(BaseModel):
    """RAGFlow v0.23+'s ``{"enabled", "fields"}``; the ``metadata``/``built_in_metadata``
    lists of its later releases are kept as given."""

    model_config = ConfigDict(extra="forbid")
    enabled: bool = True
    fields: list[AutoMetadataField] = Field(default_factory=list, max_length=256)
    metadata: list[dict[str, Any]] | None = None
    built_in_metadata: list[dict[str, Any]] | None = None


async def _raw_json() -> Any:
    """The body as sent (``None`` when there is none); malformed JSON is 101."""
    raw = await request.get_data()
    if not raw.strip():
        return None
    body = await request.get_json(force=True, silent=True)
    if body is None:
        raise argument_error("The request body is not valid JSON.")
    return body


@bp.get("/<dataset_id>/metadata/config")
async def get_config(dataset_id: str) -> Response:
    return ok(await components().db.run(metadata_service.get_config, g.tenant_id, dataset_id))


@bp.put("/<dataset_id>/metadata/config")
async def put_config(dataset_id: str) -> Response:
    body = await _raw_json()
    if not isinstance(body, dict):
        raise argument_error("The auto-metadata config must be a JSON object.")
    config = validate(AutoMetadataConfig, body).model_dump(exclude_none=True)
    return ok(await components().db.run(metadata_service.set_config, g.tenant_id, dataset_id, config))


@bp.get("/<dataset_id>/metadata/summary")
async def get_summary(dataset_id: str) -> Response:
    parts = components()
    return ok({"summary": await parts.db.run(metadata_service.dataset_summary, g.tenant_id, dataset_id)})


@bp.post("/<dataset_id>/metadata/update")
async def batch_update(dataset_id: str) -> Response:
    return await _batch_update(dataset_id)


@bp.patch("/<dataset_id>/documents/metadatas")
async def patch_metadatas(dataset_id: str) -> Response:
    return await _batch_update(dataset_id)


async def _batch_update(dataset_id: str) -> Response:
    body = await _raw_json() or {}
    if not isinstance(body, dict):
        raise data_error("The request body must be a JSON object.")
    result = await components().db.run(metadata_service.apply_batch_edit, g.tenant_id, dataset_id, body)
    return ok(result)


@bp.put("/<dataset_id>/documents/<doc_id>/metadata/config")
async def put_document_config(dataset_id: str, doc_id: str) -> Response:
    body = await _raw_json()
    if not isinstance(body, dict) or "metadata" not in body:
        raise argument_error("metadata is required")
    parts = components()
    return ok(await parts.db.run(metadata_service.set_document_config, g.tenant_id, dataset_id, doc_id,
                                 body["metadata"]))


@bp.get("/metadata/flattened")
async def get_flattened() -> Response:
    dataset_ids = [d for d in request.args.get("dataset_ids", "").split(",") if d.strip()]
    if not dataset_ids:
        raise data_error("Lack of dataset_ids in query parameters")
    return ok(await components().db.run(metadata_service.flattened_for, g.tenant_id, dataset_ids))
