"""/api/v1/chats: chat assistants (RAGFlow's shapes, so ragflow-sdk's Chat works unchanged)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator
from quart import Blueprint, Response, g

from api.components import components
from api.db.models import Dialog
from api.db.services import chat_assistant_service
from api.utils.api_utils import ListQuery, json_body, ok, query_args
from rag.prompts import UnknownToneError, tone_instruction

bp = Blueprint("chats", __name__, url_prefix="/api/v1/chats")


class LLMSettings(BaseModel):
    model_config = ConfigDict(extra="ignore")

    model_name: str | None = Field(None, max_length=128)
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, ge=0, le=1)
    presence_penalty: float | None = Field(None, ge=-2, le=2)
    frequency_penalty: float | None = Field(None, ge=-2, le=2)
    max_tokens: int | None = Field(None, ge=1, le=1_000_000)


class Variable(BaseModel):
    key: str = Field(..., min_length=1, max_length=64)
    optional: bool = True


class PromptSettings(BaseModel):
    model_config = ConfigDict(extra="ignore")

    similarity_threshold: float | None = Field(None, ge=0, le=1)
    keywords_similarity_weight: float | None = Field(None, ge=0, le=1)
    top_n: int | None = Field(None, ge=1, le=256)
    top_k: int | None = Field(None, ge=1, le=10_000)
    rerank_model: str | None = Field(None, max_length=128)
    variables: list[Variable] | None = None
    empty_response: str | None = Field(None, max_length=10_000)
    opener: str | None = Field(None, max_length=10_000)
    show_quote: bool | None = None
    prompt: str | None = Field(None, max_length=100_000)
    refine_multiturn: bool | None = None
    keyword: bool | None = None
    tone: str | None = None

    @field_validator("tone")
    @classmethod
    def _known_tone(cls, value: str | None) -> str | None:
        if value:
            try:
                tone_instruction(value)
            except UnknownToneError as error:
                raise ValueError(str(error)) from None
        return value or None


class ChatFields(BaseModel):
    model_config = ConfigDict(extra="ignore")

    name: str | None = Field(None, min_length=1, max_length=255)
    avatar: str | None = Field(None, max_length=65_535)
    description: str | None = Field(None, max_length=65_535)
    dataset_ids: list[str] | None = Field(None, max_length=256)
    llm: LLMSettings | None = None
    prompt: PromptSettings | None = None

    def given(self) -> dict[str, Any]:
        return self.model_dump(exclude_none=True)


class CreateChat(ChatFields):
    name: str = Field(..., min_length=1, max_length=255)


class ChatIds(BaseModel):
    model_config = ConfigDict(extra="forbid")
    ids: list[str] | None


def _check_model(model_name: str | None) -> None:
    if model_name:
        components().check_chat_model(model_name)


async def owned_chat(chat_id: str) -> Dialog:
    """The caller's chat assistant ``chat_id`` (102 when it is missing or another tenant's)."""
    return await components().chats.owned_chat(g.tenant_id, chat_id)


@bp.post("")
async def create_chat() -> Response:
    fields = (await json_body(CreateChat)).given()
    _check_model((fields.get("llm") or {}).get("model_name"))
    parts = components()
    chat = await parts.db.run(chat_assistant_service.create, g.tenant_id, fields, parts.default_chat_model)
    return ok(chat)


@bp.get("")
async def list_chats() -> Response:
    query = query_args(ListQuery)
    chats = await components().db.run(
        chat_assistant_service.list_page, g.tenant_id, page=query.page, page_size=query.page_size,
        orderby=query.orderby, desc=query.desc, chat_id=query.id, name=query.name,
    )
    return ok(chats)


@bp.put("/<chat_id>")
async def update_chat(chat_id: str) -> Response:
    changes = (await json_body(ChatFields)).given()
    _check_model((changes.get("llm") or {}).get("model_name"))
    parts = components()
    try:
        chat = await parts.db.run(chat_assistant_service.update, g.tenant_id, chat_id, changes,
                                  parts.default_chat_model)
    finally:  # also when the client left: the write may have committed in its thread all the same
        parts.chats.forget_chats(g.tenant_id, [chat_id])
    return ok(chat)


@bp.delete("")
async def delete_chats() -> Response:
    body = await json_body(ChatIds)
    parts = components()
    try:
        await parts.db.run(chat_assistant_service.delete_many, g.tenant_id, body.ids)
    finally:  # also when the client left: the write may have committed in its thread all the same
        parts.chats.forget_chats(g.tenant_id, body.ids)
    return ok(True)
