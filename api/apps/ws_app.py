"""/ws: the WebSocket gateway. ``llm_request`` frames in; ``llm_delta``* then ``llm_response`` or
``llm_error`` out, under each request's ``conversation_id``.

Every request runs in a task of its own so several can be in flight on one socket; one lock
keeps their frames from interleaving mid-write. A malformed frame is answered with an
``llm_error`` and the socket stays open. A client may name its conversations itself
(``"conversation_id": "c1"``): the first request under an id the tenant does not have starts
that conversation, for that tenant only. When the socket closes, its unfinished answers are
cancelled (and stored as interrupted by the conversation service).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from quart import Blueprint, g, websocket

from api.components import Components, components
from api.db.services import gateway_service
from api.db.services.dialog_service import ChatEvent
from api.db.services.gateway_service import GenerateOptions
from api.errors import ApiError
from api.utils.api_utils import MAX_MESSAGE_CHARS, describe_validation_error

bp = Blueprint("ws", __name__)
log = logging.getLogger("ragline.ws")

class RequestMetadata(BaseModel):
    model_config = ConfigDict(extra="ignore")

    tone: str | None = None
    system_prompt: str | None = Field(None, max_length=100_000)
    model: str | None = Field(None, max_length=128)
    knowledge_base_ids: list[str] = Field(default_factory=list, max_length=256)
    max_tokens: int | None = Field(None, ge=1, le=1_000_000)
    temperature: float | None = Field(None, ge=0, le=2)
    cache: bool | None = None
    cache_sampled: bool = False
    route: bool = False


class LLMRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")

    conversation_id: str | None = Field(None, max_length=64)  # the client's own id, or one Ragline gave
    message: str = Field(..., min_length=1, max_length=MAX_MESSAGE_CHARS)
    metadata: RequestMetadata = Field(default_factory=RequestMetadata)


class Frame(BaseModel):
    event: str
    data: dict[str, Any]


class Socket:
    """One client connection: serialised sends and the in-flight answers."""

    def __init__(self, parts: Components, tenant_id: str) -> None:
        self.parts = parts
        self.tenant_id = tenant_id
        self.lock = asyncio.Lock()
        self.tasks: set[asyncio.Task[None]] = set()

    async def send(self, event: str, data: dict[str, Any]) -> None:
        async with self.lock:
            await websocket.send_json({"event": event, "data": data})

    async def error(self, message: str, conversation_id: str | None) -> None:
        timestamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        await self.send("llm_error", {"error": message, "conversation_id": conversation_id, "timestamp": timestamp})

    async def receive_forever(self) -> None:
        while True:
            raw = await websocket.receive()
            request, problem = parse_frame(raw)
            if request is None:
                await self.error(problem, None)
                continue
            task = asyncio.create_task(self.answer(request))
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)

    async def answer(self, request: LLMRequest) -> None:
        conversation_id = request.conversation_id or None
        options = GenerateOptions(**request.metadata.model_dump())
        try:
            conversation, events = await gateway_service.answer(self.parts, self.tenant_id, conversation_id,
                                                                request.message, options, stream=True,
                                                                adopt_client_ids=True)
            conversation_id = conversation_id or conversation.id  # frames carry the id the client knows
            await self.relay(conversation_id, events)
        except ApiError as failure:
            await self.error(failure.message, conversation_id)
        except Exception as failure:  # noqa: BLE001 - a request's failure never closes the socket
            log.exception("ws request failed", extra={"fields": {"tenant": self.tenant_id}})
            await self.error(f"{type(failure).__name__}: {failure}", conversation_id)

    async def relay(self, conversation_id: str, events: AsyncIterator[ChatEvent]) -> None:
        """Deltas as they come; the closing frame only once the pipeline has stored the answer,
        so a client that continues the conversation on ``llm_response`` finds it in the history.
        A routed answer starts with an ``llm_intent`` frame carrying the routing decision."""
        final, announced = None, False
        async with contextlib.aclosing(gateway_service.with_deltas(events)) as pieces:
            async for event, delta in pieces:
                if event.intent is not None and not announced:
                    announced = True
                    await self.send("llm_intent", {"conversation_id": conversation_id, **event.intent})
                if delta:
                    await self.send("llm_delta", {"conversation_id": conversation_id, "delta": delta})
                if event.final or event.error is not None:
                    final = event
                    break
        if final is None:
            await self.error("The answer ended without a result.", conversation_id)
        elif final.error is not None:
            await self.error(str(final.error), conversation_id)
        else:
            tokens_used, cost = gateway_service.usage_summary(self.parts, final)
            await self.send("llm_response", {"success": True, "conversation_id": conversation_id,
                                             "response": final.answer, "message_id": final.message_id,
                                             "tokens_used": tokens_used, "cost": cost,
                                             **gateway_service.answer_facts(final)})

    async def close(self) -> None:
        for task in list(self.tasks):
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)


def parse_frame(raw: str | bytes) -> tuple[LLMRequest | None, str]:
    """The request in a frame, or None and a sentence saying what is wrong with it."""
    try:
        frame = Frame.model_validate(json.loads(raw))
    except (ValueError, ValidationError, RecursionError):  # nested past the recursion limit: malformed too
        return None, 'Malformed frame: expected JSON {"event": "llm_request", "data": {...}}.'
    if frame.event != "llm_request":
        return None, f"Unknown event {frame.event!r}: the only event a client sends is llm_request."
    try:
        return LLMRequest.model_validate(frame.data), ""
    except ValidationError as error:
        return None, f"Invalid llm_request: {describe_validation_error(error)}"


@bp.websocket("/ws")
async def socket() -> None:
    await websocket.accept()
    connection = Socket(components(), g.tenant_id)
    try:
        await connection.receive_forever()
    finally:
        await connection.close()
