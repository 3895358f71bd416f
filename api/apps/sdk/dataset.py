"""/api/v1/datasets: create, get, list, update and delete datasets (RAGFlow v0.22-v0.27 shapes).

Validation follows RAGFlow's request models so clients see the same messages ("Input should be
'me' or 'team'", "Extra inputs are not permitted", ...). Ragline parses every chunk method with
its general chunker; the method and the RAPTOR/GraphRAG settings are stored and returned as given.
Knowledge graphs and RAPTOR trees are not built: their routes say so, or show an empty graph.
"""

from __future__ import annotations

import json
import re
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    field_validator,
    model_validator,
)
from quart import Blueprint, Response, g, request

from api.components import components
from api.db.services import knowledgebase_service
from api.errors import ApiError, RetCode, argument_error
from api.utils.api_utils import json_body, ok, validate
from api.utils.compat import ids_to_delete

bp = Blueprint("datasets", __name__, url_prefix="/api/v1/datasets")

CHUNK_METHODS = ("naive", "book", "email", "laws", "manual", "one", "paper", "picture", "presentation",
                 "qa", "table", "tag", "resume")
ChunkMethod = Literal[CHUNK_METHODS]  # type: ignore[valid-type]
HEX_ID = re.compile(r"^[0-9a-f]{32}$")
MAX_TEXT = 65_535
MAX_PARSER_CONFIG_CHARS = 65_535


def _max_chars(limit: int):
    def check(value: str | None) -> str | None:
        if value is not None and len(value) > limit:
            raise ValueError(f"string should have at most {limit} characters")
        return value
    return AfterValidator(check)


def _dataset_name(value: str) -> str:
    """RAGFlow strips the name first, so a blank name is too short rather than invalid."""
    value = value.strip()
    if not value:
        raise ValueError("String should have at least 1 character")
    if len(value) > 128:
        raise ValueError("string should have at most 128 characters")
    return value


def _embedding_model(value: str | None) -> str | None:
    if value is None:
        return None
    if "@" not in value.strip():
        raise ValueError("Embedding model identifier must follow <model_name>@<provider> format")
    name, _, factory = value.rpartition("@")
    if not name.strip() or not factory.strip():
        raise ValueError("Both model_name and provider must be non-empty strings")
    return value.strip()


DatasetName = Annotated[str, AfterValidator(_dataset_name)]
LongText = Annotated[str | None, _max_chars(MAX_TEXT)]
EmbeddingModel = Annotated[str | None, Field(max_length=255), AfterValidator(_embedding_model)]
Prompt = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1)]


class RaptorConfig(BaseModel):
    model_config = ConfigDict(extra="allow")

    use_raptor: bool = False
    prompt: Prompt | None = None
    max_token: int | None = Field(None, ge=1, le=2048)
    threshold: float | None = Field(None, ge=0.0, le=1.0)
    max_cluster: int | None = Field(None, ge=1, le=1024)
    random_seed: int | None = Field(None, ge=0)
    clustering_method: Literal["gmm", "ahc"] = "gmm"
    tree_builder: Literal["raptor", "psi"] = "raptor"


class GraphragConfig(BaseModel):
    model_config = ConfigDict(extra="allow")

    use_graphrag: bool = False
    entity_types: list[str] | None = None
    method: Literal["light", "general", "ner"] = "light"
    community: bool = False
    resolution: bool = False


class ParentChildConfig(BaseModel):
    model_config = ConfigDict(extra="allow")

    use_parent_child: bool = False
    children_delimiter: Annotated[str, Field(min_length=1)] | None = None


class ParserConfig(BaseModel):
    """RAGFlow's parser settings with its bounds; keys Ragline does not know are kept as given."""

    model_config = ConfigDict(extra="allow")

    auto_keywords: int | None = Field(None, ge=0, le=32)
    auto_questions: int | None = Field(None, ge=0, le=10)
    chunk_token_num: int | None = Field(None, ge=1, le=2048)
    delimiter: Annotated[str, Field(min_length=1)] | None = None
    overlap: float | None = Field(None, ge=0, le=90)
    html4excel: bool | None = None
    layout_recognize: str | None = None
    tag_kb_ids: list[str] | None = None
    topn_tags: int | None = Field(None, ge=1, le=10)
    filename_embd_weight: float | None = Field(None, ge=0.0, le=1.0)
    task_page_size: int | None = Field(None, ge=1)
    pages: list[list[int]] | None = None
    image_context_size: int | None = Field(None, ge=0)
    table_context_size: int | None = Field(None, ge=0)
    raptor: RaptorConfig | None = None
    graphrag: GraphragConfig | None = None
    parent_child: ParentChildConfig | None = None

    @model_validator(mode="before")
    @classmethod
    def _size(cls, data: Any) -> Any:
        if isinstance(data, dict) and len(json.dumps(data, ensure_ascii=False)) > MAX_PARSER_CONFIG_CHARS:
            raise ValueError("Parser config exceeds size limit (max 65,535 characters)")
        return data

    def given(self) -> dict[str, Any]:
        """What the client sent (nested sections only with the keys it sent), for merging."""
        return self.model_dump(exclude_unset=True)


class DatasetFields(BaseModel):
    """What a client may set on a dataset. ``None`` is meaningful only where RAGFlow allows it
    (avatar, description, embedding model, parser config); updates change only the sent keys."""

    model_config = ConfigDict(extra="forbid")

    name: DatasetName = ""
    avatar: LongText = None
    description: LongText = None
    embedding_model: EmbeddingModel = None
    permission: Literal["me", "team"] = "me"
    chunk_method: ChunkMethod = "naive"
    pagerank: int = Field(0, ge=0, le=100)
    parser_config: ParserConfig | None = None
    auto_metadata_config: dict[str, Any] | None = None

    def changes(self) -> dict[str, Any]:
        """The fields the client sent, parser config as the keys it sent."""
        sent = {key: getattr(self, key) for key in self.model_fields_set}
        if isinstance(sent.get("parser_config"), ParserConfig):
            sent["parser_config"] = sent["parser_config"].given()
        return sent


class CreateDataset(DatasetFields):
    name: DatasetName


class UpdateDataset(DatasetFields):
    pass


class DeleteDatasets(BaseModel):
    model_config = ConfigDict(extra="forbid")

    ids: list[str] | None = None
    delete_all: bool | None = None

    @model_validator(mode="after")
    def _ids_required_without_delete_all(self) -> DeleteDatasets:
        if self.delete_all is None and "ids" not in self.model_fields_set:
            raise ValueError("ids: Field required")
        return self

    @field_validator("ids")
    @classmethod
    def _ids(cls, value: list[str] | None) -> list[str] | None:
        if value is None:
            return None
        bad = [item for item in value if not HEX_ID.match(item)]
        if bad:
            raise ValueError(f"Invalid UUID1 format: {bad[0]!r} is not a 32-hex-character id")
        duplicates = sorted({item for item in value if value.count(item) > 1})
        if duplicates:
            raise ValueError(f"Duplicate ids: {duplicates}")
        return value


def _query_bool(value: Any) -> Any:
    """RAGFlow reads ``desc`` as true/false, 1/0, yes/no, y/n in any case."""
    if isinstance(value, str):
        lowered = value.strip().lower()
        if lowered in ("true", "1", "yes", "y"):
            return True
        if lowered in ("false", "0", "no", "n"):
            return False
    return value


def _hex_id(value: str | None) -> str | None:
    if value is not None and not HEX_ID.match(value):
        raise ValueError("Invalid UUID format")
    return value


class DatasetQuery(BaseModel):
    """``GET /datasets`` parameters; ``ids`` repeats (``?ids=a&ids=b``), as requests sends a list."""

    model_config = ConfigDict(extra="forbid")

    page: int = Field(1, ge=1)
    page_size: int = Field(30, ge=1)
    orderby: Literal["create_time", "update_time"] = "create_time"
    desc: Annotated[bool, BeforeValidator(_query_bool)] = True
    id: Annotated[str | None, AfterValidator(_hex_id)] = None
    ids: list[Annotated[str, AfterValidator(_hex_id)]] | None = None
    name: str | None = None


def dataset_query() -> DatasetQuery:
    """The list query; an empty ``id`` is a bad id (as in RAGFlow), other empty values are absent."""
    args: dict[str, Any] = {}
    for key in request.args:
        values = request.args.getlist(key)
        if key == "ids":
            args["ids"] = [value for value in values if value != ""] or None
        elif values[-1] != "" or key == "id":
            args[key] = values[-1]
    return validate(DatasetQuery, args)


def not_supported(feature: str) -> ApiError:
    return ApiError(RetCode.NOT_FOUND, f"Not supported by Ragline: {feature}. Ragline does not build "
                    "knowledge graphs or RAPTOR trees; documents are retrieved by hybrid search over chunks.")


@bp.post("")
async def create_dataset() -> Response:
    body = await json_body(CreateDataset)
    fields = body.changes()
    if fields.get("embedding_model") is None:
        fields["embedding_model"] = components().settings.embedding_model
    else:
        components().check_embedding_model(fields["embedding_model"])
    dataset = await components().db.run(knowledgebase_service.create, g.tenant_id, fields)
    return ok(dataset)


@bp.get("")
async def list_datasets() -> Response:
    query = dataset_query()
    if query.id is not None and query.ids:
        raise argument_error("Cannot use both 'id' and 'ids' parameters at the same time.")
    datasets, total = await components().db.run(
        knowledgebase_service.list_page, g.tenant_id, page=query.page, page_size=query.page_size,
        orderby=query.orderby, desc=query.desc, kb_id=query.id, kb_ids=query.ids, name=query.name,
    )
    return ok(datasets, total_datasets=total, total=total)


@bp.get("/<dataset_id>")
async def get_dataset(dataset_id: str) -> Response:
    return ok(await components().db.run(knowledgebase_service.get, g.tenant_id, dataset_id))


@bp.put("/<dataset_id>")
async def update_dataset(dataset_id: str) -> Response:
    changes = (await json_body(UpdateDataset)).changes()
    if "embedding_model" in changes and changes["embedding_model"] is None:
        changes["embedding_model"] = components().settings.embedding_model
    elif "embedding_model" in changes:
        components().check_embedding_model(changes["embedding_model"])
    dataset = await components().db.run(knowledgebase_service.update, g.tenant_id, dataset_id, changes)
    components().chats.forget_datasets(g.tenant_id)
    return ok(dataset)


@bp.delete("")
async def delete_datasets() -> Response:
    body = await json_body(DeleteDatasets)
    ids = ids_to_delete(body.ids, body.delete_all)
    parts = components()
    deleted = await parts.db.run(knowledgebase_service.delete_many, g.tenant_id, ids, parts.doc_store,
                                 parts.storage)
    parts.chats.forget_datasets(g.tenant_id)
    return ok({"success_count": deleted})


@bp.get("/<dataset_id>/knowledge_graph")
@bp.get("/<dataset_id>/graph")
@bp.get("/<dataset_id>/graph/search")
async def knowledge_graph(dataset_id: str) -> Response:
    """Ragline builds no knowledge graph, so every dataset has RAGFlow's empty one (a search
    of it, the route newer RAGFlow clients read, finds the same empty graph)."""
    await components().db.run(knowledgebase_service.get, g.tenant_id, dataset_id)
    return ok({"graph": {}, "mind_map": {}})


@bp.delete("/<dataset_id>/knowledge_graph")
@bp.delete("/<dataset_id>/graph")
async def delete_knowledge_graph(dataset_id: str) -> Response:
    await components().db.run(knowledgebase_service.get, g.tenant_id, dataset_id)
    return ok(True)


@bp.post("/<dataset_id>/run_graphrag")
@bp.get("/<dataset_id>/trace_graphrag")
async def graphrag(dataset_id: str) -> Response:
    await components().db.run(knowledgebase_service.get, g.tenant_id, dataset_id)
    raise not_supported("knowledge graph construction (GraphRAG)")


@bp.post("/<dataset_id>/run_raptor")
@bp.get("/<dataset_id>/trace_raptor")
async def raptor(dataset_id: str) -> Response:
    await components().db.run(knowledgebase_service.get, g.tenant_id, dataset_id)
    raise not_supported("RAPTOR summaries")
