"""Closing a registry never trips over LiteLLM's logging worker left on another, closed loop."""

from __future__ import annotations

import asyncio

from litellm.litellm_core_utils.logging_worker import GLOBAL_LOGGING_WORKER

from rag.llm.registry import ModelRegistry


async def _noop() -> None:
    return None


def test_aclose_after_the_worker_started_on_a_loop_that_is_gone() -> None:
    other_loop = asyncio.new_event_loop()
    other_loop.run_until_complete(asyncio.sleep(0))
    other_loop.run_until_complete(_start_worker())
    other_loop.close()

    async def close_registry() -> None:
        await ModelRegistry.from_config().aclose()

    asyncio.run(close_registry())


async def _start_worker() -> None:
    GLOBAL_LOGGING_WORKER.ensure_initialized_and_enqueue(_noop())
    await asyncio.sleep(0.05)
