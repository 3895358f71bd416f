"""LLM gateway routes: /api/v1/llm/generate, /api/v1/llm/stream, /api/v1/llm/jobs.

Plain-HTTP clients: errors use real HTTP statuses (400 bad input or unknown tone, 404 unknown
conversation, 429/502/504 from the model layer) with the usual ``{code, message}`` body.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from quart import Blueprint, Response, g, jsonify

from api.apps.completions import SSE_HEADERS
from api.components import Components, components
from api.db.models import Task
from api.db.services import gateway_service, job_service
from api.db.services.dialog_service import ChatEvent
from api.db.services.gateway_service import GenerateOptions
from api.errors import ApiError
from api.utils.api_utils import MAX_MESSAGE_CHARS, json_body, sse_event

bp = Blueprint("llm", __name__, url_prefix="/api/v1/llm")
log = logging.getLogger("ragline.gateway")

class GenerateRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")

    conversation_id: str | None = Field(None, max_length=32)
    user_message: str = Field(..., min_length=1, max_length=MAX_MESSAGE_CHARS)
    knowledge_base_ids: list[str] = Field(default_factory=list, max_length=256)
    tone: str | None = None
    system_prompt: str | None = Field(None, max_length=100_000)
    model: str | None = Field(None, max_length=128)
    max_tokens: int | None = Field(None, ge=1, le=1_000_000)
    temperature: float | None = Field(None, ge=0, le=2)
    stream: bool = False
    cache: bool | None = None
    cache_sampled: bool = False
    route: bool = False

    def options(self) -> GenerateOptions:
        return GenerateOptions(knowledge_base_ids=self.knowledge_base_ids, tone=self.tone,
                               system_prompt=self.system_prompt, model=self.model, max_tokens=self.max_tokens,
                               temperature=self.temperature, cache=self.cache, cache_sampled=self.cache_sampled,
                               route=self.route)


def done_payload(parts: Components, conversation_id: str, event: ChatEvent) -> dict[str, Any]:
    tokens_used, cost = gateway_service.usage_summary(parts, event)
    return {"conversation_id": conversation_id, "message_id": event.message_id, "tokens_used": tokens_used,
            "cost": cost, "references": gateway_service.references_of(event), **gateway_service.answer_facts(event)}


async def generate_result(parts: Components, tenant_id: str, body: GenerateRequest) -> dict[str, Any]:
    """The whole answer of one generate request (also what a background job stores)."""
    conversation, events = await gateway_service.answer(parts, tenant_id, body.conversation_id,
                                                        body.user_message, body.options(), stream=False)
    final = await gateway_service.final_event(events)
    return {"response": final.answer, **done_payload(parts, conversation.id, final)}


async def run_job(parts: Components, task: Task, worker_id: str) -> None:
    """Run one queued generate request (task kind ``llm_job``) and store its outcome on the task."""
    result, error = None, None
    try:
        result = await generate_result(parts, task.tenant_id, GenerateRequest.model_validate(task.payload))
    except ApiError as failure:
        error = failure.message
    except Exception as failure:  # noqa: BLE001 - a job records every failure instead of dying
        log.exception("llm job failed", extra={"fields": {"job": task.id}})
        error = f"{type(failure).__name__}: {failure}"
    await parts.db.run(job_service.settle, task.id, worker_id, result, error)


@bp.post("/generate")
async def generate() -> Response:
    body = await json_body(GenerateRequest)
    return jsonify(await generate_result(components(), g.tenant_id, body))


async def _delta_stream(parts: Components, conversation_id: str, events: AsyncIterator[ChatEvent],
                        request_id: str | None) -> AsyncIterator[str]:
    """``data: {"delta"}`` events, then ``event: done`` (its ``response`` is the final text, with
    any citations the last step added) or ``event: error``. A routed answer (``route: true``)
    starts with ``event: intent`` carrying the routing decision.

    The closing event goes out only once the pipeline is closed and the answer stored, so a
    client that continues the conversation on ``done`` finds the answer in the history. This
    runs after the request context is gone (Quart sends a streamed body later), so what it
    needs from the request (``request_id``) is handed in rather than read from ``g``.
    """
    final, announced = None, False
    try:
        async with contextlib.aclosing(gateway_service.with_deltas(events)) as pieces:
            async for event, delta in pieces:
                if event.intent is not None and not announced:
                    announced = True
                    yield sse_event({**event.intent, "conversation_id": conversation_id}, "intent")
                if delta:
                    yield sse_event({"delta": delta})
                if event.final or event.error is not None:
                    final = event
                    break
    except Exception as error:  # noqa: BLE001 - every failure ends the stream with an error event
        log.exception("gateway stream failed", extra={"fields": {"request_id": request_id}})
        yield sse_event({"error": f"{type(error).__name__}: {error}", "conversation_id": conversation_id}, "error")
        return
    if final is None:
        yield sse_event({"error": "The answer ended without a result.", "conversation_id": conversation_id}, "error")
    elif final.error is not None:
        yield sse_event({"error": str(final.error), "conversation_id": conversation_id}, "error")
    else:
        yield sse_event({**done_payload(parts, conversation_id, final), "response": final.answer}, "done")


@bp.post("/stream")
async def stream() -> Response:
    body = await json_body(GenerateRequest)
    parts = components()
    conversation, events = await gateway_service.answer(parts, g.tenant_id, body.conversation_id,
                                                        body.user_message, body.options(), stream=True)
    return Response(_delta_stream(parts, conversation.id, events, g.get("request_id")),
                    content_type="text/event-stream", headers=SSE_HEADERS)


@bp.post("/jobs")
async def submit_job() -> Response:
    body = await json_body(GenerateRequest)
    parts = components()
    gateway_service.check_tone(body.tone)
    if body.model:
        gateway_service.check_model(parts, body.model)
    await parts.db.run(gateway_service.check_references, g.tenant_id, body.conversation_id or None,
                       body.knowledge_base_ids)
    job_id = await parts.db.run(job_service.submit, g.tenant_id, body.model_dump(mode="json"))
    return jsonify({"job_id": job_id, "status": "queued"}), 202


@bp.get("/jobs/<job_id>")
async def job_status(job_id: str) -> Response:
    return jsonify(await components().db.run(job_service.status, g.tenant_id, job_id))
