"""/v1/conversation/*: conversations and their completions, in RAGFlow's completion format.

A conversation may belong to a chat assistant (``dialog_id``) or stand alone with its own
``system_prompt``; either way completions run through the same pipeline as session chat.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator
from quart import Blueprint, Response, g, request

from api.apps.completions import events_response
from api.components import components
from api.db.services import gateway_service
from api.db.services.gateway_service import GenerateOptions
from api.errors import argument_error
from api.utils.api_utils import MAX_MESSAGE_CHARS, json_body, ok, require_user_question

bp = Blueprint("conversation", __name__, url_prefix="/v1/conversation")

class SetConversation(BaseModel):
    model_config = ConfigDict(extra="ignore")

    conversation_id: str | None = Field(None, max_length=32)
    dialog_id: str | None = Field(None, max_length=32)
    name: str | None = Field(None, max_length=255)
    system_prompt: str | None = Field(None, max_length=100_000)


class RemoveConversations(BaseModel):
    model_config = ConfigDict(extra="forbid")
    conversation_ids: list[str] = Field(..., min_length=1, max_length=1000)


class Turn(BaseModel):
    role: Literal["system", "user", "assistant"]
    content: str = Field(..., max_length=MAX_MESSAGE_CHARS)


class CompletionRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")

    conversation_id: str = Field(..., min_length=1, max_length=32)
    messages: list[Turn] = Field(..., min_length=1, max_length=1000)
    stream: bool = True

    @model_validator(mode="after")
    def _ends_with_a_question(self) -> CompletionRequest:
        require_user_question(self.messages)
        return self


def _required_arg(name: str) -> str:
    value = request.args.get(name, "").strip()
    if not value:
        raise argument_error(f"`{name}` is required.")
    return value


@bp.post("/set")
async def set_conversation() -> Response:
    body = await json_body(SetConversation)
    conversation = await components().db.run(gateway_service.set_conversation, g.tenant_id, body.conversation_id,
                                             body.dialog_id, body.name, body.system_prompt)
    return ok(conversation)


@bp.get("/get")
async def get_conversation() -> Response:
    conversation_id = _required_arg("conversation_id")
    return ok(await components().db.run(gateway_service.read_conversation, g.tenant_id, conversation_id))


@bp.get("/list")
async def list_conversations() -> Response:
    dialog_id = request.args.get("dialog_id") or None
    return ok(await components().db.run(gateway_service.list_conversations, g.tenant_id, dialog_id))


@bp.post("/rm")
async def remove_conversations() -> Response:
    body = await json_body(RemoveConversations)
    parts = components()
    try:
        await parts.db.run(gateway_service.remove_conversations, g.tenant_id, body.conversation_ids)
    finally:  # chat sessions are conversations too: their remembered ownership goes with them
        parts.chats.forget_sessions(g.tenant_id, None, body.conversation_ids)
    return ok(True)


@bp.post("/completion")
async def completion() -> Response:
    """Answer the last user message; the conversation's stored history is the context (earlier
    messages in the request are the client's copy of it and are not stored twice)."""
    body = await json_body(CompletionRequest)
    conversation, events = await gateway_service.answer(components(), g.tenant_id, body.conversation_id,
                                                        body.messages[-1].content, GenerateOptions(),
                                                        stream=body.stream)
    return await events_response(events, conversation.id, body.stream)
