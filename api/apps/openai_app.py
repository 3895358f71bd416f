"""OpenAI Chat Completions answered by a chat assistant, so the official ``openai`` client works.

``base_url = <server>/api/v1/chats_openai/<chat_id>``: the chat's datasets, prompt and model
answer; the request's ``model`` is accepted and ignored (the chat's model answers and is the
``model`` reported). The request's ``messages`` are the whole conversation: nothing is stored
as a session, the client owns the history (as with OpenAI). ``system`` messages are ignored
because the assistant's own prompt (with the retrieved knowledge) is the system prompt.

Streaming: each chunk's ``delta.content`` is the difference between successive whole answers,
so the deltas only ever append. The final answer may differ from the streamed text where the
server repaired or inserted citation markers in text already sent; the last content chunk then
carries the rest of the final answer (aligned on the text without markers), and, when
``reference`` was asked, ``final_content``: the whole cited answer, equal to the non-streamed
``message.content``. ``usage`` comes in its own chunk (``choices: []``) when
``stream_options.include_usage`` is set, as OpenAI does. A failure before the first token is
an HTTP error with OpenAI's error object; a failure after it is an SSE event ``{"error": ...}``
(the ``openai`` client raises ``APIError``), and every stream ends with ``data: [DONE]``.
"""

from __future__ import annotations

import contextlib
import logging
import re
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from quart import Blueprint, Response, g, jsonify
from werkzeug.exceptions import HTTPException

from api.apps.completions import SSE_HEADERS
from api.apps.sdk.chat import owned_chat
from api.components import components
from api.db.services import gateway_service
from api.db.services.dialog_service import ChatEvent, ChatRequest, ChatState, DialogService
from api.errors import ApiError, RetCode, argument_error
from api.utils.api_utils import json_body, sse_event
from rag.llm.errors import LLMServiceError
from rag.llm.types import ChatResult

log = logging.getLogger("ragline.openai")

bp = Blueprint("openai", __name__, url_prefix="/api/v1/chats_openai")

MAX_MESSAGES = 1000
MAX_CONTENT_CHARS = 100_000
CITATION_MARK = re.compile(r"[ \t]*\[ID:\d+\]")
ENDS_WITH_MARK = re.compile(r"\[ID:\d+\]$")

# RAGFlow return code → (HTTP status, OpenAI error type, OpenAI error code).
ERROR_KINDS: dict[int, tuple[int, str, str]] = {
    RetCode.AUTHENTICATION_ERROR: (401, "invalid_request_error", "invalid_api_key"),
    RetCode.ARGUMENT_ERROR: (400, "invalid_request_error", "invalid_request"),
    RetCode.DATA_ERROR: (404, "invalid_request_error", "not_found"),
    RetCode.PERMISSION_ERROR: (403, "invalid_request_error", "permission_denied"),
    RetCode.OPERATING_ERROR: (409, "invalid_request_error", "conflict"),
}
TYPE_FOR_STATUS = {413: "invalid_request_error", 429: "rate_limit_error", 504: "timeout_error"}


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="ignore")
    role: Literal["system", "developer", "user", "assistant", "tool", "function"]
    content: str | list[dict[str, Any]] | None = None

    def text(self) -> str:
        """The message's text; content parts other than text (images, audio) are skipped."""
        if isinstance(self.content, list):
            return "".join(str(part.get("text") or "") for part in self.content if part.get("type") == "text")
        return self.content or ""


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="ignore")
    include_usage: bool = False


class CompletionRequest(BaseModel):
    """OpenAI's request; ``reference`` arrives top-level when the client sends ``extra_body``."""

    model_config = ConfigDict(extra="ignore")
    model: str | None = Field(None, max_length=256)
    messages: list[ChatMessage] = Field(..., min_length=1, max_length=MAX_MESSAGES)
    stream: bool = False
    stream_options: StreamOptions | None = None
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, ge=0, le=1)
    presence_penalty: float | None = Field(None, ge=-2, le=2)
    frequency_penalty: float | None = Field(None, ge=-2, le=2)
    max_tokens: int | None = Field(None, ge=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    reference: bool = False

    def turns(self) -> list[dict[str, str]]:
        """User and assistant turns; the last one must be the user's question."""
        turns = [{"role": m.role, "content": m.text()} for m in self.messages if m.role in ("user", "assistant")]
        if not turns or turns[-1]["role"] != "user" or not turns[-1]["content"].strip():
            raise argument_error("messages: the last user or assistant message must be a non-empty user message.")
        if any(len(turn["content"]) > MAX_CONTENT_CHARS for turn in turns):
            raise argument_error(f"messages: a message is longer than {MAX_CONTENT_CHARS} characters.")
        return turns

    def gen_conf(self) -> dict[str, Any]:
        conf = self.model_dump(include={"temperature", "top_p", "presence_penalty", "frequency_penalty"},
                               exclude_none=True)
        max_tokens = self.max_completion_tokens or self.max_tokens
        if max_tokens is not None:
            conf["max_tokens"] = max_tokens
        return conf


# -- errors --------------------------------------------------------------------------------------


def error_object(message: str, error_type: str, code: str | None) -> dict[str, Any]:
    return {"error": {"message": message, "type": error_type, "param": None, "code": code}}


def llm_error_object(error: LLMServiceError) -> dict[str, Any]:
    status = error.http_status
    return error_object(error.message, TYPE_FOR_STATUS.get(status, "invalid_request_error" if status < 500
                                                           else "api_error"), error.outcome)


def llm_error_response(error: LLMServiceError) -> Response:
    response = jsonify(llm_error_object(error))
    response.status_code = error.http_status
    if error.retry_after is not None:
        response.headers["Retry-After"] = f"{error.retry_after:g}"
    return response


@bp.errorhandler(ApiError)
async def api_error(error: ApiError) -> tuple[Response, int]:
    """Every envelope error of these routes, the auth hook's 401 included, as OpenAI's object."""
    status, error_type, code = ERROR_KINDS.get(error.code, (500, "api_error", "internal_error"))
    status = error.http_status or status
    return jsonify(error_object(error.message, TYPE_FOR_STATUS.get(status, error_type), code)), status


@bp.errorhandler(LLMServiceError)
async def model_error(error: LLMServiceError) -> Response:
    return llm_error_response(error)


@bp.errorhandler(HTTPException)
async def http_error(error: HTTPException) -> tuple[Response, int]:
    status = error.code or 500
    return jsonify(error_object(error.description or error.name, TYPE_FOR_STATUS.get(status, "invalid_request_error"),
                                None)), status


# -- response shapes ------------------------------------------------------------------------------


def usage_of(result: ChatResult | None) -> dict[str, int]:
    """The answering call's real token counts (zero when no model was called: empty_response)."""
    usage = result.usage if result is not None else None
    prompt, completion = (usage.prompt_tokens, usage.completion_tokens) if usage else (0, 0)
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def finish_reason_of(result: ChatResult | None) -> str:
    return (result.finish_reason if result is not None else None) or "stop"


class Envelope:
    """What every object of one completion shares: id, creation time, model."""

    def __init__(self, model: str, message_id: str) -> None:
        self.id = "chatcmpl-" + message_id
        self.created = int(time.time())
        self.model = model

    def completion(self, event: ChatEvent, with_reference: bool) -> dict[str, Any]:
        message: dict[str, Any] = {"role": "assistant", "content": event.answer}
        if with_reference:
            message["reference"] = gateway_service.references_of(event)
        return {
            "id": self.id, "object": "chat.completion", "created": self.created, "model": self.model,
            "choices": [{"index": 0, "message": message, "logprobs": None,
                         "finish_reason": finish_reason_of(event.result)}],
            "usage": usage_of(event.result),
        }

    def chunk(self, delta: dict[str, Any] | None, finish_reason: str | None = None,
              usage: dict[str, int] | None = None) -> str:
        choices = [] if delta is None else [{"index": 0, "delta": delta, "logprobs": None,
                                             "finish_reason": finish_reason}]
        payload = {"id": self.id, "object": "chat.completion.chunk", "created": self.created,
                   "model": self.model, "choices": choices, "usage": usage}
        return sse_event(payload)


def unsent_tail(sent: str, final: str) -> str:
    """The part of ``final`` after the text already streamed.

    ``final`` may carry citation markers the streamed text lacks (inserted) or lacks ones it had
    (invalid, removed); the texts agree once markers are removed, so align on that.
    """
    if final.startswith(sent):
        return final[len(sent):]
    target = len(CITATION_MARK.sub("", sent))
    plain, position = 0, 0
    while position < len(final) and plain < target:
        mark = CITATION_MARK.match(final, position)
        if mark:
            position = mark.end()
            continue
        plain += 1
        position += 1
    if ENDS_WITH_MARK.search(sent):  # the streamed text already ends with its marker(s)
        while mark := CITATION_MARK.match(final, position):
            position = mark.end()
    return final[position:]


# -- routes ---------------------------------------------------------------------------------------


@bp.post("/<chat_id>/chat/completions")
async def chat_completions(chat_id: str) -> Response:
    body = await json_body(CompletionRequest)
    turns = body.turns()
    dialog = await owned_chat(chat_id)
    parts = components()
    message_id = uuid.uuid4().hex  # on the usage rows too, so an answer's accounting can be found by its id
    chat = ChatRequest(dialog=dialog, messages=turns, stream=body.stream, gen_conf=body.gen_conf(),
                       message_id=message_id)
    events = DialogService(parts).chat(chat, ChatState())
    first = await anext(events, None)
    if first is None:
        raise ApiError(RetCode.EXCEPTION_ERROR, "The answer ended without a result.")
    if first.final and first.error is not None:
        await events.aclose()
        return llm_error_response(first.error)
    envelope = Envelope(dialog.llm_id or parts.default_chat_model, message_id)
    if not body.stream:
        await events.aclose()
        return jsonify(envelope.completion(first, body.reference))
    include_usage = bool(body.stream_options and body.stream_options.include_usage)
    stream = stream_chunks(envelope, first, events, body.reference, include_usage, g.get("request_id"))
    return Response(stream, content_type="text/event-stream", headers=SSE_HEADERS)


async def stream_chunks(envelope: Envelope, first: ChatEvent, events: AsyncIterator[ChatEvent],
                        with_reference: bool, include_usage: bool, request_id: str | None) -> AsyncIterator[str]:
    """The SSE body; closing it (client gone) closes the dialog's generator, cancelling the LLM.

    It runs after the view returned, outside the request context: nothing here may touch ``g``.
    """
    sent = ""
    yield envelope.chunk({"role": "assistant", "content": ""})
    try:
        async with contextlib.aclosing(events):
            event: ChatEvent | None = first
            while event is not None:
                if event.final:
                    async for line in final_chunks(envelope, event, sent, with_reference, include_usage):
                        yield line
                    break
                if event.answer.startswith(sent) and len(event.answer) > len(sent):
                    yield envelope.chunk({"content": event.answer[len(sent):]})
                    sent = event.answer
                event = await anext(events, None)
    except Exception as error:  # noqa: BLE001 - any failure becomes an error event, never a hung stream
        log.exception("openai completion failed", extra={"fields": {"request_id": request_id}})
        yield sse_event(error_object(f"{type(error).__name__}: {error}", "api_error", "internal_error"))
    yield "data: [DONE]\n\n"


async def final_chunks(envelope: Envelope, event: ChatEvent, sent: str, with_reference: bool,
                       include_usage: bool) -> AsyncIterator[str]:
    if event.error is not None:
        yield sse_event(llm_error_object(event.error))
        return
    delta: dict[str, Any] = {"content": unsent_tail(sent, event.answer)}
    if with_reference:
        delta["reference"] = gateway_service.references_of(event)
        if not event.answer.startswith(sent):
            delta["final_content"] = event.answer
    yield envelope.chunk(delta, finish_reason_of(event.result))
    if include_usage:
        yield envelope.chunk(None, usage=usage_of(event.result))


@bp.get("/<chat_id>/models")
async def list_models(chat_id: str) -> Response:
    """The one model that answers this chat, in OpenAI's list shape."""
    dialog = await owned_chat(chat_id)
    model = dialog.llm_id or components().default_chat_model
    owner = model.rsplit("@", 1)[1] if "@" in model else "ragline"
    return jsonify({"object": "list", "data": [
        {"id": model, "object": "model", "created": dialog.create_time // 1000, "owned_by": owner},
    ]})
