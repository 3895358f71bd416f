"""/api/v1/chats: chat assistants in RAGFlow's shapes, so both ragflow-sdk lines' Chat work unchanged.

Bodies of either line are accepted (v0.22's nested ``llm``/``prompt``/``avatar``, v0.27's
``llm_id``/``llm_setting``/``prompt_config``/``icon``/... or a mix) and every answer carries both.
Where the lines truly disagree (the shape of ``GET /chats``, its paging and a few asserted
messages) the request's API line (``g.dialect``, see ``api.utils.compat``) decides.
"""

from __future__ import annotations

import logging
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator
from quart import Blueprint, Response, g, request

from api.components import components
from api.db.models import Dialog
from api.db.services import chat_assistant_service
from api.db.services.chat_assistant_service import CHAT_LINES, ChatLine, ChatListing
from api.errors import ApiError, RetCode, data_error
from api.utils.api_utils import json_body, ok, parse_bool, query_args, validate
from api.utils.compat import ids_to_delete
from rag.llm.errors import LLMServiceError
from rag.prompts import UnknownToneError, tone_instruction

log = logging.getLogger("ragline.chats")

bp = Blueprint("chats", __name__, url_prefix="/api/v1/chats")

MAX_PROMPT_CHARS = 100_000
MAX_TEXT_CHARS = 10_000
MAX_TOP_N = 10_000  # RAGFlow sets no bound; 0 is accepted there too (no chunk reaches the prompt)


def _known_tone(value: str | None) -> str | None:
    if value:
        try:
            tone_instruction(value)
        except UnknownToneError as error:
            raise ValueError(str(error)) from None
    return value or None


class ABArm(BaseModel):
    """One arm of a chat's A/B test: a chat model and its share of the answers."""

    model_config = ConfigDict(extra="forbid")

    model: str = Field(..., min_length=3, max_length=128)
    weight: float = Field(1.0, gt=0, le=1_000_000)


class LLMSettings(BaseModel):
    """v0.22's ``llm`` (with ``model_name``) and v0.27's ``llm_setting`` (without).

    Keys beyond these are kept and read back as RAGFlow does (its own tests send ``max_token``);
    generation only ever takes the keys it knows (``GEN_CONF_KEYS``)."""

    model_config = ConfigDict(extra="allow")

    model_name: str | None = Field(None, max_length=128)
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, ge=0, le=1)
    presence_penalty: float | None = Field(None, ge=-2, le=2)
    frequency_penalty: float | None = Field(None, ge=-2, le=2)
    max_tokens: int | None = Field(None, ge=1, le=1_000_000)
    response_cache: bool | None = None  # Ragline: answer exact repeats from the response cache
    response_cache_sampled: bool | None = None  # ... also when sampling (temperature > 0)
    ab_models: list[ABArm] | None = Field(None, min_length=2, max_length=16)  # Ragline: A/B test of models


class Variable(BaseModel):
    """A prompt variable; RAGFlow stores an entry without ``key`` as it came (it names nothing)."""

    key: str | None = Field(None, min_length=1, max_length=64)
    optional: bool = True


class PromptSettings(BaseModel):
    """v0.22's nested ``prompt``."""

    model_config = ConfigDict(extra="ignore")

    similarity_threshold: float | None = Field(None, ge=0, le=1)
    keywords_similarity_weight: float | None = Field(None, ge=0, le=1)
    top_n: int | None = Field(None, ge=0, le=MAX_TOP_N)
    top_k: int | None = Field(None, ge=1, le=10_000)
    rerank_model: str | None = Field(None, max_length=128)
    variables: list[Variable] | None = None
    empty_response: str | None = Field(None, max_length=MAX_TEXT_CHARS)
    opener: str | None = Field(None, max_length=MAX_TEXT_CHARS)
    show_quote: bool | None = None
    prompt: str | None = Field(None, max_length=MAX_PROMPT_CHARS)
    refine_multiturn: bool | None = None
    keyword: bool | None = None
    tone: str | None = None

    @field_validator("tone")
    @classmethod
    def _tone(cls, value: str | None) -> str | None:
        return _known_tone(value)


class PromptConfig(BaseModel):
    """v0.27's ``prompt_config``, in the stored names; keys Ragline does not use (``tts``,
    ``reasoning``, ...) are kept so a client reads back what it wrote."""

    model_config = ConfigDict(extra="allow")

    system: str | None = Field(None, max_length=MAX_PROMPT_CHARS)
    prologue: str | None = Field(None, max_length=MAX_TEXT_CHARS)
    parameters: list[Variable] | None = None
    empty_response: str | None = Field(None, max_length=MAX_TEXT_CHARS)
    quote: bool | None = None
    refine_multiturn: bool | None = None
    keyword: bool | None = None
    tone: str | None = None
    meta_data_filter: dict[str, Any] | None = None
    intent_router: bool | None = None  # Ragline: a router chat hands each question to its intent's assistant

    @field_validator("tone")
    @classmethod
    def _tone(cls, value: str | None) -> str | None:
        return _known_tone(value)


class ChatFields(BaseModel):
    """A chat body of either line; ``given()`` is what it set."""

    model_config = ConfigDict(extra="ignore")

    name: str | None = Field(None, min_length=1, max_length=255)
    avatar: str | None = Field(None, max_length=65_535)
    icon: str | None = Field(None, max_length=65_535)
    description: str | None = Field(None, max_length=65_535)
    dataset_ids: list[str] | None = Field(None, max_length=256)
    llm: LLMSettings | None = None
    prompt: PromptSettings | None = None
    llm_id: str | None = Field(None, max_length=128)
    llm_setting: LLMSettings | None = None
    prompt_config: PromptConfig | None = None
    similarity_threshold: float | None = Field(None, ge=0, le=1)
    vector_similarity_weight: float | None = Field(None, ge=0, le=1)
    top_n: int | None = Field(None, ge=0, le=MAX_TOP_N)
    top_k: int | None = Field(None, ge=1, le=10_000)
    rerank_id: str | None = Field(None, max_length=128)
    meta_data_filter: dict[str, Any] | None = None

    def given(self) -> dict[str, Any]:
        fields = self.model_dump(exclude_none=True)
        fields.get("llm_setting", {}).pop("model_name", None)
        for name in ("prompt", "prompt_config"):  # an explicit null: no canned answer (ragflow-sdk 0.22's default)
            section = getattr(self, name)
            if section is not None and "empty_response" in section.model_fields_set and section.empty_response is None:
                fields.setdefault(name, {})["empty_response"] = ""
        return fields


class AnyBody(BaseModel):
    """A JSON object read as is (``model_extra``), for checks that need the raw values."""

    model_config = ConfigDict(extra="allow")


class DeleteBody(BaseModel):
    model_config = ConfigDict(extra="ignore")
    ids: list[str] | None = None
    delete_all: bool | None = None


class ChatListQuery(BaseModel):
    """``GET /chats`` parameters; absent page numbers mean v0.22's defaults or v0.27's "all"."""

    model_config = ConfigDict(extra="ignore")

    page: int | None = Field(None, ge=0)
    page_size: int | None = Field(None, ge=0, le=100_000)
    orderby: Literal["create_time", "update_time"] = "create_time"
    desc: Annotated[bool, BeforeValidator(parse_bool)] = True
    id: str | None = None
    name: str | None = None
    keywords: str | None = Field(None, max_length=255)


def chat_line() -> ChatLine:
    """The messages and rules of the request's API line."""
    return CHAT_LINES.get(g.get("dialect") or "0.22", CHAT_LINES["0.22"])


def speaks_027() -> bool:
    return g.get("dialect") == "0.27"


async def owned_chat(chat_id: str) -> Dialog:
    """The caller's chat assistant ``chat_id`` (102 when it is missing or another tenant's)."""
    return await components().chats.owned_chat(g.tenant_id, chat_id)


def _check_name(raw: dict[str, Any], creating: bool) -> None:
    """RAGFlow's name checks and messages (102), before the body is validated (101)."""
    if not creating and raw.get("name") is None:
        return
    name = raw.get("name")
    if name is not None and not isinstance(name, str):
        raise data_error("Chat name must be a string.")
    if not (name or "").strip():
        raise data_error(chat_line().name_required if creating else "`name` cannot be empty.")
    raw["name"] = name.strip()


def _check_types(raw: dict[str, Any]) -> None:
    if raw.get("tenant_id"):
        raise data_error("`tenant_id` must not be provided")
    dataset_ids = raw.get("dataset_ids")
    if dataset_ids is not None and not isinstance(dataset_ids, list):
        if isinstance(dataset_ids, str) and dataset_ids and not speaks_027():
            # v0.22 walks the string as a list of ids and refuses its first character
            raise data_error(f"You don't own the dataset {dataset_ids[0]}")
        raise data_error("`dataset_ids` should be a list.")
    if raw.get("prompt_config") is not None and not isinstance(raw["prompt_config"], dict):
        raise data_error("`prompt_config` should be an object.")


def _check_models(raw: dict[str, Any]) -> None:
    """A chat or rerank model the registry cannot route is refused before it is stored, in
    RAGFlow's words (its tests compare them whole) naming the field the client used
    (``llm_id``/``llm.model_name``, ``rerank_id``/``prompt.rerank_model``); the registry's reason
    goes to the log."""
    llm = raw.get("llm") if isinstance(raw.get("llm"), dict) else {}
    prompt = raw.get("prompt") if isinstance(raw.get("prompt"), dict) else {}
    checks = (("llm_id", raw.get("llm_id"), "chat"), ("model_name", llm.get("model_name"), "chat"),
              ("rerank_id", raw.get("rerank_id"), "rerank"), ("rerank_model", prompt.get("rerank_model"), "rerank"))
    for field, model, kind in checks:
        if model and isinstance(model, str):
            try:
                components().check_chat_model(model) if kind == "chat" else components().registry.spec(model)
            except (ApiError, LLMServiceError, ValueError) as error:
                log.info("chat body names an unknown %s model %r: %s", kind, model, error)
                raise data_error(f"`{field}` {model} doesn't exist") from None
    setting = raw.get("llm_setting") if isinstance(raw.get("llm_setting"), dict) else {}
    _check_ab_models(llm.get("ab_models") or setting.get("ab_models"))


def _check_ab_models(arms: Any) -> None:
    """Every arm of an A/B test must be a routable chat model (builtin ones cannot be split),
    each named once; refused before it is stored."""
    if not isinstance(arms, list) or not all(isinstance(arm, dict) for arm in arms):
        return  # the shape was checked with the fields
    try:
        for arm in arms:
            components().check_chat_model(str(arm.get("model")))
        components().registry.ab_group([(str(arm.get("model")), float(arm.get("weight", 1))) for arm in arms])
    except (ApiError, LLMServiceError, ValueError) as error:
        raise data_error(f"`ab_models` is not a valid A/B test: {getattr(error, 'message', error)}") from None


async def chat_body(creating: bool) -> dict[str, Any]:
    """The request's chat fields (either line's names), checked as RAGFlow checks them."""
    raw = dict((await json_body(AnyBody)).model_extra or {})
    _check_types(raw)
    _check_name(raw, creating)
    fields = validate(ChatFields, raw).given()
    _check_models(raw)
    return fields


@bp.post("")
async def create_chat() -> Response:
    fields = await chat_body(creating=True)
    parts = components()
    chat = await parts.db.run(chat_assistant_service.create, g.tenant_id, fields, parts.default_chat_model,
                              chat_line())
    return ok(chat)


def _listing(query: ChatListQuery) -> ChatListing:
    """v0.22 pages by default (page 1 of 30; ``page_size=0`` is an empty page); v0.27 returns
    every chat unless both ``page`` and ``page_size`` are given."""
    owners = [o for value in request.args.getlist("owner_ids") for o in value.split(",") if o.strip()]
    if speaks_027():
        paged = bool(query.page and query.page_size)
        page, page_size = (query.page or 1, query.page_size) if paged else (1, None)
    else:
        page, page_size = max(query.page or 1, 1), 30 if query.page_size is None else query.page_size
    return ChatListing(page=page, page_size=page_size, orderby=query.orderby, desc=query.desc, chat_id=query.id,
                       name=query.name, keywords=query.keywords, owner_ids=owners or None)


@bp.get("")
async def list_chats() -> Response:
    query = query_args(ChatListQuery)
    chats, total = await components().db.run(chat_assistant_service.list_page, g.tenant_id, _listing(query))
    if speaks_027():
        return ok({"chats": chats, "total": total})
    if total == 0 and (query.id or query.name):
        raise data_error(chat_line().no_such_chat)
    return ok(chats)


@bp.get("/<chat_id>")
async def get_chat(chat_id: str) -> Response:
    return ok(await components().db.run(chat_assistant_service.get_one, g.tenant_id, chat_id))


async def _check_owner(chat_id: str) -> None:
    """Before anything else, as RAGFlow: another tenant's (or no) chat is v0.22's 102 "You do not
    own the chat" and v0.27's 109 "No authorization."."""
    if await components().db.run(chat_assistant_service.is_owned, g.tenant_id, chat_id):
        return
    if speaks_027():
        raise ApiError(RetCode.AUTHENTICATION_ERROR, "No authorization.")
    raise data_error("You do not own the chat")


@bp.route("/<chat_id>", methods=["PUT", "PATCH"])
async def update_chat(chat_id: str) -> Response:
    """PUT (v0.22) and PATCH (v0.27) alike: the given settings merge into the stored ones."""
    await _check_owner(chat_id)
    changes = await chat_body(creating=False)
    parts = components()
    try:
        chat = await parts.db.run(chat_assistant_service.update, g.tenant_id, chat_id, changes,
                                  parts.default_chat_model, chat_line())
    finally:  # also when the client left: the write may have committed in its thread all the same
        parts.chats.forget_chats(g.tenant_id, [chat_id])
    return ok(chat)


async def _delete(chat_ids: list[str] | None) -> chat_assistant_service.Deletion:
    parts = components()
    try:
        return await parts.db.run(chat_assistant_service.delete_many, g.tenant_id, chat_ids, chat_line())
    finally:  # also when the client left: the write may have committed in its thread all the same
        parts.chats.forget_chats(g.tenant_id, chat_ids)


def deletion_reply(deletion: chat_assistant_service.Deletion, noun: str) -> Response:
    """RAGFlow's answer to a bulk delete: the count, and the ids it could not delete."""
    data: dict[str, Any] = {"success_count": len(deletion.deleted)}
    if not deletion.errors:
        return ok(data)
    data["errors"] = deletion.errors
    return ok(data, message=f"Partially deleted {len(deletion.deleted)} {noun} with {len(deletion.errors)} errors")


@bp.delete("")
async def delete_chats() -> Response:
    body = await json_body(DeleteBody)
    return deletion_reply(await _delete(ids_to_delete(body.ids, body.delete_all)), "chats")


@bp.delete("/<chat_id>")
async def delete_chat(chat_id: str) -> Response:
    """v0.27's single delete; a chat that is not the caller's is 109 "No authorization." as there."""
    try:
        await _delete([chat_id])
    except ApiError as error:
        if error.code != RetCode.DATA_ERROR:
            raise
        raise ApiError(RetCode.AUTHENTICATION_ERROR, "No authorization.") from None
    return ok(True)
