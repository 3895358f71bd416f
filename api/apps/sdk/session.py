"""/api/v1/chats/<chat_id>/sessions and /completions: sessions and chatting in them."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field
from quart import Blueprint, Response, g

from api.apps.completions import completion_response
from api.apps.sdk.chat import owned_chat
from api.components import components
from api.db.services import chat_assistant_service, conversation_service
from api.utils.api_utils import ListQuery, json_body, ok, query_args

bp = Blueprint("sessions", __name__, url_prefix="/api/v1/chats")

MAX_QUESTION_CHARS = 100_000


class SessionQuery(ListQuery):
    user_id: str | None = None


class NewSession(BaseModel):
    model_config = ConfigDict(extra="ignore")
    name: str = Field("New session", min_length=1, max_length=255)
    user_id: str | None = Field(None, max_length=255)


class SessionChanges(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(..., min_length=1, max_length=255)


class SessionIds(BaseModel):
    model_config = ConfigDict(extra="forbid")
    ids: list[str] | None


class CompletionRequest(BaseModel):
    """Keys beyond these are values of the chat prompt's variables, as in RAGFlow
    (``Session.ask(question, city="Paris")`` fills ``{city}``)."""

    model_config = ConfigDict(extra="allow")
    question: str = Field("", max_length=MAX_QUESTION_CHARS)
    stream: bool = True
    session_id: str | None = None
    user_id: str | None = Field(None, max_length=255)


@bp.post("/<chat_id>/sessions")
async def create_session(chat_id: str) -> Response:
    body = await json_body(NewSession)
    chat = await owned_chat(chat_id)
    opener = chat_assistant_service.to_api(chat)["prompt"]["opener"] or ""
    session = await components().db.write(conversation_service.create_session, g.tenant_id, chat_id, body.name,
                                        body.user_id, opener)
    return ok(session)


@bp.get("/<chat_id>/sessions")
async def list_sessions(chat_id: str) -> Response:
    query = query_args(SessionQuery)
    await owned_chat(chat_id)
    sessions = await components().db.run(
        conversation_service.list_sessions, g.tenant_id, chat_id, page=query.page, page_size=query.page_size,
        orderby=query.orderby, desc=query.desc, session_id=query.id, name=query.name, user_id=query.user_id,
    )
    return ok(sessions)


@bp.put("/<chat_id>/sessions/<session_id>")
async def rename_session(chat_id: str, session_id: str) -> Response:
    body = await json_body(SessionChanges)
    await owned_chat(chat_id)
    session = await components().db.run(conversation_service.rename_session, g.tenant_id, chat_id, session_id,
                                        body.name)
    return ok(session)


@bp.delete("/<chat_id>/sessions")
async def delete_sessions(chat_id: str) -> Response:
    body = await json_body(SessionIds)
    await owned_chat(chat_id)
    parts = components()
    try:
        await parts.db.run(conversation_service.delete_sessions, g.tenant_id, chat_id, body.ids)
    finally:  # also when the client left: the write may have committed in its thread all the same
        parts.chats.forget_sessions(g.tenant_id, chat_id, body.ids)
    return ok(True)


@bp.post("/<chat_id>/completions")
async def completions(chat_id: str) -> Response:
    body = await json_body(CompletionRequest)
    return await completion_response(chat_id, body.question, body.session_id, body.user_id, body.stream,
                                     variables=dict(body.model_extra or {}))
