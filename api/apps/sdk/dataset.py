"""/api/v1/datasets: create, list, update and delete datasets (RAGFlow's shapes)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator
from quart import Blueprint, Response, g

from api.components import components
from api.db.services import knowledgebase_service
from api.utils.api_utils import ListQuery, json_body, ok, query_args

bp = Blueprint("datasets", __name__, url_prefix="/api/v1/datasets")

CHUNK_METHODS = ("naive",)
ChunkMethod = Literal[CHUNK_METHODS]  # type: ignore[valid-type]


def _model_name(value: str | None) -> str | None:
    if value is None:
        return None
    name, sep, factory = value.strip().rpartition("@")
    if not sep or not name or not factory:
        raise ValueError("expected name@factory, e.g. all-MiniLM-L6-v2@Builtin")
    return value.strip()


class ParserConfig(BaseModel):
    model_config = ConfigDict(extra="allow")

    chunk_token_num: int | None = Field(None, ge=1, le=8192)
    delimiter: str | None = Field(None, min_length=1, max_length=64)
    overlap: int | None = Field(None, ge=0, le=90)


class DatasetFields(BaseModel):
    """Fields a client may set; ``None`` means "not given" so updates change only what is sent."""

    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(None, max_length=128)
    avatar: str | None = Field(None, max_length=65_535)
    description: str | None = Field(None, max_length=65_535)
    embedding_model: str | None = Field(None, max_length=128)
    permission: Literal["me", "team"] | None = None
    chunk_method: ChunkMethod | None = None
    parser_config: ParserConfig | None = None
    pagerank: int | None = Field(None, ge=0, le=100)

    @field_validator("name")
    @classmethod
    def _name(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if not value.strip():
            raise ValueError("must not be empty")
        return value.strip()

    @field_validator("embedding_model")
    @classmethod
    def _embedding(cls, value: str | None) -> str | None:
        return _model_name(value)

    def given(self) -> dict[str, Any]:
        return self.model_dump(exclude_none=True)


class CreateDataset(DatasetFields):
    name: str = Field(..., max_length=128)


class DeleteDatasets(BaseModel):
    model_config = ConfigDict(extra="forbid")
    ids: list[str] | None


@bp.post("")
async def create_dataset() -> Response:
    body = await json_body(CreateDataset)
    fields = body.given()
    fields.setdefault("embedding_model", components().settings.embedding_model)
    dataset = await components().db.run(knowledgebase_service.create, g.tenant_id, fields)
    return ok(dataset)


@bp.get("")
async def list_datasets() -> Response:
    query = query_args(ListQuery)
    datasets, total = await components().db.run(
        knowledgebase_service.list_page, g.tenant_id, page=query.page, page_size=query.page_size,
        orderby=query.orderby, desc=query.desc, kb_id=query.id, name=query.name,
    )
    return ok(datasets, total_datasets=total)


@bp.put("/<dataset_id>")
async def update_dataset(dataset_id: str) -> Response:
    body = await json_body(DatasetFields)
    dataset = await components().db.run(knowledgebase_service.update, g.tenant_id, dataset_id, body.given())
    return ok(dataset)


@bp.delete("")
async def delete_datasets() -> Response:
    body = await json_body(DeleteDatasets)
    parts = components()
    await parts.db.run(knowledgebase_service.delete_many, g.tenant_id, body.ids, parts.doc_store, parts.storage)
    return ok(True)
