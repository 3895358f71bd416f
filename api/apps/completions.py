"""RAGFlow's completion wire format, shared by session and conversation completions.

Streaming: ``data:<json>\\n\\n`` lines, each ``{"code": 0, "message": "", "data": {answer, reference,
audio_binary, id, session_id}}``; a failure is one ``{"code": 500, ...}`` event carrying the
partial answer; every stream, however it ends, closes with ``data:{"code":0,...,"data":true}``.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import AsyncIterator
from typing import Any

from quart import Response, g

from api.components import Components, components
from api.db.models import Dialog
from api.db.services import chat_assistant_service, conversation_service, intent_service
from api.db.services.dialog_service import ChatEvent, DialogService
from api.errors import ApiError, RetCode, argument_error
from api.utils.api_utils import ok

log = logging.getLogger("ragline.completions")

SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no", "Connection": "keep-alive"}


def sse(payload: dict[str, Any]) -> str:
    return "data:" + json.dumps(payload, ensure_ascii=False) + "\n\n"


def answer_data(event: ChatEvent, session_id: str) -> dict[str, Any]:
    """RAGFlow's answer shape; a final answer from the response cache also says ``cached: true``,
    one of an A/B test the ``arm`` that served it; a routed answer's events carry its ``intent``."""
    data = {"answer": event.answer, "reference": event.reference if event.final else {}, "audio_binary": None,
            "id": event.message_id, "session_id": session_id}
    if event.final and event.result is not None and event.result.cached:
        data["cached"] = True
    if event.final and event.result is not None and event.result.arm:
        data["arm"] = event.result.arm
    if event.intent is not None:
        data["intent"] = event.intent
    return data


async def _session_for(dialog: Dialog, session_id: str | None, user_id: str | None,
                       question: str) -> tuple[str, str | None]:
    """The session to answer in (already checked when given), creating one (with the chat's
    opener) when none is given; the opener is returned only for a session made here."""
    parts = components()
    if session_id:
        return session_id, None
    opener = chat_assistant_service.opener(dialog)
    session = await parts.db.write(conversation_service.create_session, g.tenant_id, dialog.id,
                                 (question or "New session")[:255], user_id, opener)
    return session["id"], opener


async def completion_response(chat_id: str, question: str, session_id: str | None, user_id: str | None,
                              stream: bool, variables: dict[str, Any] | None = None,
                              metadata_condition: dict[str, Any] | None = None) -> Response:
    """Answer ``question`` in a session; ``variables`` fill the chat prompt's ``{names}``;
    ``metadata_condition`` restricts retrieval to the documents whose metadata match it.

    A required variable without a value is refused (101) before anything is stored.
    """
    variables = variables or {}
    dialog = await components().chats.owned_chat_and_session(g.tenant_id, chat_id, session_id)
    missing = chat_assistant_service.missing_variables(dialog, variables)
    if missing and question.strip():
        raise argument_error(f"Missing value for the prompt variable(s): {', '.join(missing)}.")
    session_id, opener = await _session_for(dialog, session_id, user_id, question)
    if not question.strip():
        if opener is None:
            raise argument_error("`question` is required.")
        return _opener_response(opener, session_id, stream)
    events = answer_events(dialog, session_id, question, stream=stream, variables=variables,
                           metadata_condition=metadata_condition)
    return await events_response(events, session_id, stream)


def answer_events(dialog: Dialog, conversation_id: str, question: str, *, stream: bool, **options: Any
                  ) -> AsyncIterator[ChatEvent]:
    """The dialog's events for one question in a stored conversation. A router chat
    (``prompt_config.intent_router``) hands each question to the assistant of its intent."""
    parts = components()
    if (dialog.prompt_config or {}).get("intent_router"):
        return _routed_events(parts, dialog, conversation_id, question, stream=stream, **options)
    return conversation_service.completion(parts, DialogService(parts), dialog, conversation_id, question,
                                           stream=stream, **options)


async def _routed_events(parts: Components, router: Dialog, conversation_id: str, question: str, *, stream: bool,
                         **options: Any) -> AsyncIterator[ChatEvent]:
    """The routed assistant's events, stored in the router chat's session; when no intent fits
    and no fallback assistant is set, the router chat answers itself."""
    decision = await intent_service.classify(parts, router.tenant_id, question)
    target = await parts.db.run(intent_service.routed_dialog, router.tenant_id, decision) or router
    events = conversation_service.completion(parts, DialogService(parts), target, conversation_id, question,
                                             stream=stream, intent=decision.to_api(), **options)
    async with contextlib.aclosing(events):
        async for event in events:
            yield event


async def _sse_stream(events: AsyncIterator[ChatEvent], session_id: str, request_id: str | None
                      ) -> AsyncIterator[str]:
    """The events as SSE lines. It runs after the request context is gone (Quart sends a streamed
    body outside it), so it must not touch ``g``: the request id is handed in."""
    answer, final = "", ""  # the final event goes out with the closing one: one socket write, not two
    try:
        async with contextlib.aclosing(events):
            async for event in events:
                answer = event.answer
                if event.error is not None:
                    line = sse({"code": 500, "message": str(event.error),
                                "data": {"answer": event.answer, "reference": []}})
                else:
                    line = sse({"code": 0, "message": "", "data": answer_data(event, session_id)})
                if event.final:
                    final += line
                else:
                    yield final + line
                    final = ""
    except ApiError as error:  # refused before anything was asked (the session is gone): its own code
        final += sse({"code": error.code, "message": error.message, "data": {"answer": answer, "reference": []}})
    except Exception as error:  # noqa: BLE001 - any failure becomes the error event, never a hung stream
        log.exception("completion failed", extra={"fields": {"request_id": request_id}})
        final += sse({"code": 500, "message": f"{type(error).__name__}: {error}",
                      "data": {"answer": answer, "reference": []}})
    yield final + sse({"code": 0, "message": "", "data": True})


async def _whole_answer(events: AsyncIterator[ChatEvent], session_id: str) -> Response:
    final = None
    async with contextlib.aclosing(events):
        async for event in events:
            final = event
    if final is None:
        raise ApiError(RetCode.EXCEPTION_ERROR, "The answer ended without a result.")
    if final.error is not None:
        raise ApiError(RetCode.EXCEPTION_ERROR, str(final.error))
    return ok({**answer_data(final, session_id), "prompt": ""})


def _opener_response(opener: str, session_id: str, stream: bool) -> Response:
    event = ChatEvent(opener, final=True, reference={})
    data = answer_data(event, session_id)
    if not stream:
        return ok(data)

    async def once() -> AsyncIterator[str]:
        yield sse({"code": 0, "message": "", "data": data})
        yield sse({"code": 0, "message": "", "data": True})

    return Response(once(), content_type="text/event-stream", headers=SSE_HEADERS)


async def events_response(events: AsyncIterator[ChatEvent], session_id: str, stream: bool) -> Response:
    """A conversation's events in RAGFlow's completion format, streamed or whole."""
    if stream:
        return Response(_sse_stream(events, session_id, g.get("request_id")), content_type="text/event-stream",
                        headers=SSE_HEADERS)
    return await _whole_answer(events, session_id)
