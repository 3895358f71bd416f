"""/api/v1/chats/<chat_id>/sessions and /completions: sessions and chatting in them.

Both ragflow-sdk lines read a session list as a bare list, so the shapes here are one; only
a few messages differ by API line.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from quart import Blueprint, Response, g

from api.apps.completions import completion_response
from api.apps.sdk import related_questions
from api.apps.sdk.chat import AnyBody, DeleteBody, deletion_reply, owned_chat, speaks_027
from api.components import components
from api.db.services import chat_assistant_service, conversation_service
from api.db.services.metadata_service import parse_condition
from api.errors import data_error
from api.utils.api_utils import ListQuery, json_body, ok, query_args, validate
from api.utils.compat import ids_to_delete

bp = Blueprint("sessions", __name__, url_prefix="/api/v1/chats")
# RAGFlow's session routes outside /chats: related questions, and the later /chat/completions that
# names its chat in the body. ``related_questions_bp`` is the name the app registers it under.
v1_bp = Blueprint("sessions_v1", __name__, url_prefix="/api/v1")
v1_bp.register_blueprint(related_questions.bp)
related_questions_bp = v1_bp
__all__ = ["bp", "related_questions_bp", "v1_bp"]

MAX_QUESTION_CHARS = 100_000
MAX_NAME_CHARS = 255


class SessionQuery(ListQuery):
    page: int = Field(1, ge=0)
    page_size: int = Field(30, ge=0, le=100_000)
    orderby: Literal["create_time", "update_time", "name"] = "create_time"
    user_id: str | None = None


class NewSession(BaseModel):
    model_config = ConfigDict(extra="ignore")
    name: str = Field("New session", min_length=1, max_length=MAX_NAME_CHARS)
    user_id: str | None = Field(None, max_length=255)


class SessionChanges(BaseModel):
    model_config = ConfigDict(extra="ignore")
    name: str | None = Field(None, min_length=1, max_length=MAX_NAME_CHARS)


class Message(BaseModel):
    model_config = ConfigDict(extra="ignore")
    role: str = Field(..., max_length=32)
    content: Any = ""


class CompletionRequest(BaseModel):
    """Keys beyond these are values of the chat prompt's variables, as in RAGFlow
    (``Session.ask(question, city="Paris")`` fills ``{city}``). ``metadata_condition`` (v0.27)
    restricts retrieval to the documents whose metadata match it."""

    model_config = ConfigDict(extra="allow")
    question: str = Field("", max_length=MAX_QUESTION_CHARS)
    stream: bool = True
    session_id: str | None = None
    user_id: str | None = Field(None, max_length=255)
    metadata_condition: Any = None


def _session_name(raw: dict[str, Any], default: str | None) -> dict[str, Any]:
    """RAGFlow's 102 for an empty name, in the words of the request's API line."""
    if "name" not in raw or raw["name"] is None:
        return raw if default is None else {**raw, "name": default}
    if isinstance(raw["name"], str) and not raw["name"].strip():
        raise data_error("`name` can not be empty" if speaks_027() else "`name` can not be empty.")
    return raw


@bp.post("/<chat_id>/sessions")
async def create_session(chat_id: str) -> Response:
    raw = _session_name(dict((await json_body(AnyBody)).model_extra or {}), "New session")
    body = validate(NewSession, raw)
    chat = await owned_chat(chat_id)
    session = await components().db.write(conversation_service.create_session, g.tenant_id, chat_id, body.name,
                                          body.user_id, chat_assistant_service.opener(chat))
    return ok(session)


@bp.get("/<chat_id>/sessions")
async def list_sessions(chat_id: str) -> Response:
    query = query_args(SessionQuery)
    await owned_chat(chat_id)
    sessions = await components().db.run(
        conversation_service.list_sessions, g.tenant_id, chat_id, page=max(query.page, 1),
        page_size=query.page_size, orderby=query.orderby, desc=query.desc, session_id=query.id, name=query.name,
        user_id=query.user_id,
    )
    return ok(sessions)


@bp.get("/<chat_id>/sessions/<session_id>")
async def get_session(chat_id: str, session_id: str) -> Response:
    await owned_chat(chat_id)
    return ok(await components().db.run(conversation_service.get_one_session, g.tenant_id, chat_id, session_id))


@bp.route("/<chat_id>/sessions/<session_id>", methods=["PUT", "PATCH"])
async def update_session(chat_id: str, session_id: str) -> Response:
    """PUT (v0.22) and PATCH (v0.27): the name is the one thing a client may change."""
    body = validate(SessionChanges, _session_name(dict((await json_body(AnyBody)).model_extra or {}), None))
    await owned_chat(chat_id)
    session = await components().db.run(conversation_service.rename_session, g.tenant_id, chat_id, session_id,
                                        body.name)
    return ok(session)


@bp.delete("/<chat_id>/sessions")
async def delete_sessions(chat_id: str) -> Response:
    body = await json_body(DeleteBody)
    session_ids = ids_to_delete(body.ids, body.delete_all)
    await owned_chat(chat_id)
    parts = components()
    try:
        deletion = await parts.db.run(conversation_service.delete_sessions, g.tenant_id, chat_id, session_ids)
    finally:  # also when the client left: the write may have committed in its thread all the same
        parts.chats.forget_sessions(g.tenant_id, chat_id, session_ids)
    return deletion_reply(deletion, "sessions")


@bp.post("/<chat_id>/completions")
async def completions(chat_id: str) -> Response:
    body = await json_body(CompletionRequest)
    return await _complete(chat_id, body, body.question, dict(body.model_extra or {}))


class BodyChatCompletionRequest(CompletionRequest):
    """``POST /api/v1/chat/completions`` (RAGFlow after v0.27): the chat is named in the body and
    the question is the last user message of ``messages``, unless ``question`` is given."""

    chat_id: str | None = Field(None, max_length=64)
    messages: list[Message] | None = Field(None, max_length=10_000)

    def asked(self) -> str:
        if self.question or not self.messages:
            return self.question
        users = [m.content for m in self.messages if m.role == "user"]
        return users[-1] if users and isinstance(users[-1], str) else ""


@v1_bp.post("/chat/completions")
async def body_chat_completions() -> Response:
    body = await json_body(BodyChatCompletionRequest)
    if not body.chat_id:
        raise data_error("`chat_id` is required.")
    extra = {k: v for k, v in (body.model_extra or {}).items() if k not in ("model", "chat_id")}
    return await _complete(body.chat_id, body, body.asked(), extra)


async def _complete(chat_id: str, body: CompletionRequest, question: str, variables: dict[str, Any]) -> Response:
    if body.metadata_condition is not None and not isinstance(body.metadata_condition, dict):
        raise data_error("`metadata_condition` must be an object.")
    parse_condition(body.metadata_condition)  # a bad rule is 101 before the question is stored
    return await completion_response(chat_id, question, body.session_id, body.user_id, body.stream,
                                     variables=variables, metadata_condition=body.metadata_condition or None)
