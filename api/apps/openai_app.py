"""OpenAI Chat Completions answered by a chat assistant, so the official ``openai`` client works.

``base_url = <server>/api/v1/chats_openai/<chat_id>`` (or RAGFlow v0.27's alias
``/api/v1/openai/<chat_id>``, the same in every respect): the chat's datasets, prompt and model
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
from api.apps.sdk.chat import AnyBody, owned_chat
from api.components import components
from api.db.services import gateway_service
from api.db.services.dialog_service import ChatEvent, ChatRequest, ChatState, DialogService, document_metadata
from api.db.services.metadata_service import parse_condition
from api.errors import ApiError, RetCode, argument_error
from api.utils.api_utils import json_body, sse_event, validate
from rag.llm.errors import LLMServiceError
from rag.llm.types import ChatResult
from rag.utils.token_utils import num_tokens

log = logging.getLogger("ragline.openai")

bp = Blueprint("openai", __name__, url_prefix="/api/v1")
# RAGFlow's path and v0.27's alias of it; both answer the same.
PREFIXES = ("/chats_openai", "/openai")

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


class ReferenceMetadata(BaseModel):
    """``extra_body.reference_metadata``: add each cited document's metadata to its chunks
    (``fields``: only those keys; absent: all of them)."""

    model_config = ConfigDict(extra="ignore")
    include: bool = False
    fields: list[str] | None = None


class CompletionRequest(BaseModel):
    """OpenAI's request. RAGFlow's extras (``reference``, ``reference_metadata``,
    ``metadata_condition``) arrive top-level from the ``openai`` client (it merges ``extra_body``
    into the body) and inside a literal ``extra_body`` object from ``curl``; both are read."""

    model_config = ConfigDict(extra="ignore")
    model: str | None = Field(None, max_length=256)
    messages: list[ChatMessage] = Field(..., max_length=MAX_MESSAGES)
    stream: bool = False
    stream_options: StreamOptions | None = None
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, ge=0, le=1)
    presence_penalty: float | None = Field(None, ge=-2, le=2)
    frequency_penalty: float | None = Field(None, ge=-2, le=2)
    max_tokens: int | None = Field(None, ge=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    reference: bool = False
    reference_metadata: ReferenceMetadata | None = None
    metadata_condition: dict[str, Any] | None = None

    def turns(self) -> list[dict[str, str]]:
        """User and assistant turns; the last one must be the user's question."""
        if not self.messages:
            raise argument_error("You have to provide messages.")
        turns = [{"role": m.role, "content": m.text()} for m in self.messages if m.role in ("user", "assistant")]
        if not turns or turns[-1]["role"] != "user" or not turns[-1]["content"].strip():
            raise argument_error("The last content of this conversation is not from user: messages must end with "
                                 "a non-empty user message.")
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


EXTRA_OBJECTS = ("reference_metadata", "metadata_condition")


def with_extra_body(raw: dict[str, Any]) -> dict[str, Any]:
    """The body with a literal ``extra_body`` object's keys lifted to the top level (where the
    ``openai`` client puts them), after RAGFlow's type checks (400 naming the field)."""
    extra = raw.get("extra_body")
    if extra is not None and not isinstance(extra, dict):
        raise argument_error("extra_body must be an object.")
    merged = {**raw, **(extra or {})}
    for key in EXTRA_OBJECTS:
        if merged.get(key) is not None and not isinstance(merged[key], dict):
            raise argument_error(f"{key} must be an object.")
    fields = (merged.get("reference_metadata") or {}).get("fields")
    if fields is not None and not isinstance(fields, list):
        raise argument_error("reference_metadata.fields must be an array.")
    return merged


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
    body = error_object(error.message, TYPE_FOR_STATUS.get(status, error_type), code)
    body.update(code=error.code, message=error.message)  # RAGFlow's envelope keys, for its own clients
    return jsonify(body), status


@bp.errorhandler(LLMServiceError)
async def model_error(error: LLMServiceError) -> Response:
    return llm_error_response(error)


@bp.errorhandler(HTTPException)
async def http_error(error: HTTPException) -> tuple[Response, int]:
    status = error.code or 500
    return jsonify(error_object(error.description or error.name, TYPE_FOR_STATUS.get(status, "invalid_request_error"),
                                None)), status


# -- response shapes ------------------------------------------------------------------------------


def usage_of(result: ChatResult | None, asked: str = "", answer: str = "") -> dict[str, int]:
    """The answering call's real token counts. When no model was called (the chat's
    ``empty_response`` answered) they are counted from the messages and the answer, as RAGFlow
    counts them, so a client never reads an answer that cost zero tokens."""
    usage = result.usage if result is not None else None
    if usage:
        prompt, completion = usage.prompt_tokens, usage.completion_tokens
    else:
        prompt, completion = num_tokens(asked), num_tokens(answer)
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def finish_reason_of(result: ChatResult | None) -> str:
    return (result.finish_reason if result is not None else None) or "stop"


class Envelope:
    """What every object of one completion shares: id, creation time, model."""

    def __init__(self, model: str, message_id: str, asked: str = "") -> None:
        self.id = "chatcmpl-" + message_id
        self.created = int(time.time())
        self.model = model
        self.asked = asked  # the messages' text, to count when no model was called

    def usage(self, event: ChatEvent) -> dict[str, int]:
        return usage_of(event.result, self.asked, event.answer)

    def completion(self, event: ChatEvent, references: list[dict[str, Any]] | None) -> dict[str, Any]:
        message: dict[str, Any] = {"role": "assistant", "content": event.answer}
        if references is not None:
            message["reference"] = references
        return {
            "id": self.id, "object": "chat.completion", "created": self.created, "model": self.model,
            "choices": [{"index": 0, "message": message, "logprobs": None,
                         "finish_reason": finish_reason_of(event.result)}],
            "usage": self.usage(event),
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


class References:
    """What ``reference`` answers for one request: the cited chunks, and each one's document
    metadata when ``reference_metadata.include`` asked for it."""

    def __init__(self, tenant_id: str, wanted: bool, metadata: ReferenceMetadata | None) -> None:
        self.tenant_id = tenant_id
        self.wanted = wanted
        self.metadata = metadata if metadata is not None and metadata.include else None

    async def of(self, event: ChatEvent) -> list[dict[str, Any]] | None:
        if not self.wanted:
            return None
        chunks = gateway_service.references_of(event)
        if self.metadata is None or not chunks:
            return chunks
        doc_ids = sorted({str(chunk.get("document_id")) for chunk in chunks})
        metas = await components().db.run(document_metadata, self.tenant_id, doc_ids)
        keep = self.metadata.fields
        return [{**chunk, "document_metadata": {key: value for key, value in metas.get(chunk.get("document_id"), {})
                                                .items() if keep is None or key in keep}} for chunk in chunks]


def _routes(suffix: str, **options: Any) -> Any:
    """Register a view under both prefixes (``/chats_openai`` and its alias ``/openai``)."""
    def register(view: Any) -> Any:
        for prefix in PREFIXES:
            bp.add_url_rule(f"{prefix}{suffix}", endpoint=f"{view.__name__}{prefix.replace('/', '_')}",
                            view_func=view, **options)
        return view
    return register


@_routes("/<chat_id>/chat/completions", methods=["POST"])
async def chat_completions(chat_id: str) -> Response:
    raw = dict((await json_body(AnyBody)).model_extra or {})
    body = validate(CompletionRequest, with_extra_body(raw))
    turns = body.turns()
    parse_condition(body.metadata_condition)  # a bad condition is 400 before anything runs
    dialog = await owned_chat(chat_id)
    parts = components()
    message_id = uuid.uuid4().hex  # on the usage rows too, so an answer's accounting can be found by its id
    chat = ChatRequest(dialog=dialog, messages=turns, stream=body.stream, gen_conf=body.gen_conf(),
                       message_id=message_id, metadata_condition=body.metadata_condition or None)
    references = References(g.tenant_id, body.reference, body.reference_metadata)
    events = DialogService(parts).chat(chat, ChatState())
    first = await anext(events, None)
    if first is None:
        raise ApiError(RetCode.EXCEPTION_ERROR, "The answer ended without a result.")
    if first.final and first.error is not None:
        await events.aclose()
        return llm_error_response(first.error)
    envelope = Envelope(dialog.llm_id or parts.default_chat_model, message_id,
                        "\n".join(turn["content"] for turn in turns))
    if not body.stream:
        await events.aclose()
        return jsonify(envelope.completion(first, await references.of(first)))
    include_usage = bool(body.stream_options and body.stream_options.include_usage)
    stream = stream_chunks(envelope, first, events, references, include_usage, g.get("request_id"))
    return Response(stream, content_type="text/event-stream", headers=SSE_HEADERS)


async def stream_chunks(envelope: Envelope, first: ChatEvent, events: AsyncIterator[ChatEvent],
                        references: References, include_usage: bool, request_id: str | None) -> AsyncIterator[str]:
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
                    async for line in final_chunks(envelope, event, sent, references, include_usage):
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


async def final_chunks(envelope: Envelope, event: ChatEvent, sent: str, references: References,
                       include_usage: bool) -> AsyncIterator[str]:
    if event.error is not None:
        yield sse_event(llm_error_object(event.error))
        return
    delta: dict[str, Any] = {"content": unsent_tail(sent, event.answer)}
    if references.wanted:
        delta["reference"] = await references.of(event)
        if not event.answer.startswith(sent):
            delta["final_content"] = event.answer
    yield envelope.chunk(delta, finish_reason_of(event.result))
    if include_usage:
        yield envelope.chunk(None, usage=envelope.usage(event))


@_routes("/<chat_id>/models", methods=["GET"])
async def list_models(chat_id: str) -> Response:
    """The one model that answers this chat, in OpenAI's list shape."""
    dialog = await owned_chat(chat_id)
    model = dialog.llm_id or components().default_chat_model
    owner = model.rsplit("@", 1)[1] if "@" in model else "ragline"
    return jsonify({"object": "list", "data": [
        {"id": model, "object": "model", "created": dialog.create_time // 1000, "owned_by": owner},
    ]})
