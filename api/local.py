"""Ragline in-process: the gateway services as a Python API, with no HTTP in between.

For scripts, notebooks and tests that want Ragline's pipeline (history, tones, knowledge,
usage accounting) inside their own event loop::

    async with await LocalRagline.open() as ragline:
        conversation_id = await ragline.create_conversation(system_prompt="You are terse.")
        reply = await ragline.generate(conversation_id, "Hello!", max_tokens=64, temperature=0.2)
        await ragline.process_message(conversation_id, "And again?", on_delta=print_delta)

The same database, index and settings as the server, so a conversation started here is
visible through the HTTP API of a server sharing the data dir, and the other way round.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from api.components import Components, build_components
from api.db.migrate import upgrade
from api.db.services import gateway_service, intent_service, tenant_service
from api.db.services.dialog_service import ChatEvent
from api.db.services.gateway_service import GenerateOptions
from api.settings import Settings, load_settings

DeltaCallback = Callable[[str], Awaitable[None]]


@dataclass
class Reply:
    """One answer: the text, where it was stored, what it cost and what it cited."""

    response: str
    conversation_id: str
    message_id: str | None
    tokens_used: dict[str, int]
    cost: dict[str, Any]
    references: list[dict[str, Any]] = field(default_factory=list)
    cached: bool = False  # answered from the response cache (``cache=True``), at no cost
    arm: str | None = None  # the A/B arm that served, when the conversation's assistant runs an A/B test
    intent: dict[str, Any] | None = None  # the routing decision (``route=True``): intent, confidence, method, chat


class LocalRagline:
    """The gateway services of one tenant, called directly. Build it with ``open()``."""

    def __init__(self, parts: Components, tenant_id: str) -> None:
        self.parts = parts
        self.tenant_id = tenant_id

    @classmethod
    async def open(cls, settings: Settings | None = None, tenant: str = tenant_service.DEFAULT_TENANT_NAME,
                   parts: Components | None = None) -> LocalRagline:
        """Open the data dir the settings name (migrating it) and act as ``tenant`` (created if new)."""
        parts = parts or build_components(settings or load_settings())
        await asyncio.to_thread(upgrade, parts.db)
        tenant_row = await parts.db.run(tenant_service.get_or_create_tenant, tenant)
        return cls(parts, tenant_row.id)

    async def close(self) -> None:
        await self.parts.aclose()

    async def __aenter__(self) -> LocalRagline:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def create_conversation(self, system_prompt: str | None = None, name: str | None = None) -> str:
        conversation = await self.parts.db.run(gateway_service.set_conversation, self.tenant_id, None, None, name,
                                               system_prompt)
        return conversation["id"]

    async def generate(self, conversation_id: str | None, message: str, *, max_tokens: int | None = None,
                       temperature: float | None = None, tone: str | None = None, model: str | None = None,
                       knowledge_base_ids: Sequence[str] = (), cache: bool | None = None,
                       cache_sampled: bool = False, route: bool = False) -> Reply:
        """The whole answer to ``message`` (``conversation_id`` None starts a new conversation;
        ``route``: the tenant's intent routes pick the assistant)."""
        return await self.process_message(conversation_id, message, None, max_tokens=max_tokens,
                                          temperature=temperature, tone=tone, model=model,
                                          knowledge_base_ids=knowledge_base_ids, cache=cache,
                                          cache_sampled=cache_sampled, route=route)

    async def classify_intent(self, message: str) -> dict[str, Any]:
        """Where intent routing would send ``message`` (intent, confidence, stage, chat), without answering."""
        return (await intent_service.classify(self.parts, self.tenant_id, message)).to_api()

    async def process_message(self, conversation_id: str | None, message: str, on_delta: DeltaCallback | None,
                              **options: Any) -> Reply:
        """Answer ``message``, awaiting ``on_delta(text)`` for each new piece as it streams."""
        request = GenerateOptions(**{**options, "knowledge_base_ids": list(options.get("knowledge_base_ids", ()))})
        conversation, events = await gateway_service.answer(self.parts, self.tenant_id, conversation_id, message,
                                                            request, stream=on_delta is not None,
                                                            adopt_client_ids=True)
        final = await gateway_service.final_event(self._relay(events, on_delta))
        tokens_used, cost = gateway_service.usage_summary(self.parts, final)
        return Reply(final.answer, conversation_id or conversation.id, final.message_id, tokens_used, cost,
                     gateway_service.references_of(final), **gateway_service.answer_facts(final))

    @staticmethod
    async def _relay(events: AsyncIterator[ChatEvent], on_delta: DeltaCallback | None) -> AsyncIterator[ChatEvent]:
        async with contextlib.aclosing(gateway_service.with_deltas(events)) as pieces:
            async for event, delta in pieces:
                if delta and on_delta is not None:
                    await on_delta(delta)
                yield event
