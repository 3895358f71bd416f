"""LLMBundle chat through the real LiteLLM path against the stub server: answers, usage, cost,
reasoning, retries, timeouts, fallbacks, broken streams, cancellation."""

from __future__ import annotations

import asyncio
import time

import pytest

from api.db.services.llm_service import LLMBundle
from api.db.services.usage_service import MemoryUsageSink, UsageService
from rag.llm.errors import APICallError, LLMTimeoutError, RateLimitError, ValidationError
from rag.llm.registry import ModelRegistry
from tests.fixtures.stub_llm import StubLLMServer
from tests.llm.conftest import INPUT_PRICE, OUTPUT_PRICE, STUB_CHAT

HISTORY = [{"role": "user", "content": "What is the capital of France?"}]


def bundle_for(registry: ModelRegistry, sink: object, tenant: str = "t1") -> LLMBundle:
    return LLMBundle(registry, tenant, STUB_CHAT, sink)


async def test_chat_answer_usage_and_cost_are_recorded(
    registry: ModelRegistry, stub_llm: StubLLMServer, usage_service: UsageService
) -> None:
    stub_llm.configure(reply="Paris is the capital.")
    bundle = bundle_for(registry, usage_service).bind(dialog_id="d1", conversation_id="c1", message_id="m1")
    result = await bundle.chat("Be brief.", HISTORY, {"temperature": 0.1})

    assert result.text == "Paris is the capital."
    assert (result.usage.prompt_tokens, result.usage.completion_tokens, result.usage.exact) == (8, 4, True)
    assert result.cost == pytest.approx(8 * INPUT_PRICE + 4 * OUTPUT_PRICE)
    sent = stub_llm.chat_requests[0].body
    assert sent["messages"][0] == {"role": "system", "content": "Be brief."}
    assert sent["temperature"] == 0.1

    rows = await usage_service.db.run(usage_service.rows, "t1")
    assert len(rows) == 1
    row = rows[0]
    assert (row.model, row.kind, row.prompt_tokens, row.completion_tokens) == (STUB_CHAT, "chat", 8, 4)
    assert (row.dialog_id, row.conversation_id, row.message_id) == ("d1", "c1", "m1")
    assert row.cost == pytest.approx(result.cost)
    assert row.outcome == "ok" and row.attempts == 1 and row.latency_ms > 0


async def test_stream_yields_deltas_and_exact_usage(registry: ModelRegistry, stub_llm: StubLLMServer) -> None:
    stub_llm.configure(reply="one two three four", first_token_delay=0.05)
    sink = MemoryUsageSink()
    stream = bundle_for(registry, sink).chat_streamly(None, HISTORY, {})
    deltas = [delta async for delta in stream]

    assert deltas == ["one ", "two ", "three ", "four"]
    assert stream.result.text == "one two three four"
    assert stream.result.usage.exact and stream.result.usage.completion_tokens == 4
    assert stream.result.ttft_ms >= 50
    assert stub_llm.chat_requests[0].body["stream_options"] == {"include_usage": True}
    assert sink.rows[0].completion_tokens == 4 and sink.rows[0].ttft_ms == stream.result.ttft_ms


@pytest.mark.parametrize("reasoning_format", ["think", "field"])
async def test_reasoning_never_reaches_the_answer(
    registry: ModelRegistry, stub_llm: StubLLMServer, reasoning_format: str
) -> None:
    stub_llm.configure(reply="Final answer.", reasoning="secret chain of thought", reasoning_format=reasoning_format)
    bundle = bundle_for(registry, MemoryUsageSink())

    whole = await bundle.chat(None, HISTORY)
    stream = bundle.chat_streamly(None, HISTORY)
    streamed = "".join([delta async for delta in stream])

    for text, reasoning in ((whole.text, whole.reasoning), (streamed, stream.result.reasoning)):
        assert text == "Final answer."
        assert "think" not in text and "secret" not in text
        assert reasoning.strip() == "secret chain of thought"


async def test_500_then_429_then_ok_is_retried_within_the_timeout(
    registry: ModelRegistry, stub_llm: StubLLMServer, usage_service: UsageService
) -> None:
    stub_llm.configure(fail_500=1, rate_limit_429=1, retry_after=1)
    started = time.monotonic()
    result = await bundle_for(registry, usage_service).chat(None, HISTORY)

    assert result.text.startswith("Stub answer")
    assert [r.status for r in stub_llm.chat_requests] == [500, 429, 200]
    gaps = [b.time - a.time for a, b in zip(stub_llm.chat_requests, stub_llm.chat_requests[1:], strict=False)]
    assert gaps[1] >= 1.0  # Retry-After: 1 was honoured
    assert time.monotonic() - started < registry.timeout
    rows = await usage_service.db.run(usage_service.rows, "t1")
    assert (rows[0].attempts, rows[0].outcome) == (3, "ok")


async def test_streamed_call_is_retried_before_the_first_chunk(
    registry: ModelRegistry, stub_llm: StubLLMServer
) -> None:
    stub_llm.configure(fail_500=2)
    stream = bundle_for(registry, MemoryUsageSink()).chat_streamly(None, HISTORY)
    text = "".join([delta async for delta in stream])
    assert text.startswith("Stub answer") and stream.result.attempts == 3


@pytest.mark.parametrize("retry_after", [30, 90])  # LiteLLM itself ignores values over 60 s
async def test_retry_after_beyond_the_budget_fails_fast_as_rate_limit(
    registry: ModelRegistry, stub_llm: StubLLMServer, retry_after: int
) -> None:
    stub_llm.configure(rate_limit_429=5, retry_after=retry_after)
    sink = MemoryUsageSink()
    started = time.monotonic()
    with pytest.raises(RateLimitError) as caught:
        await LLMBundle(registry, "t1", "plain@OpenAI-API-Compatible", sink).chat(None, HISTORY)
    assert time.monotonic() - started < 1.5
    assert caught.value.http_status == 429 and caught.value.retry_after == retry_after
    assert len(stub_llm.chat_requests) == 1 and sink.rows[0].outcome == "rate_limited"


async def test_slow_model_times_out_within_the_budget(
    make_registry, stub_llm: StubLLMServer
) -> None:
    registry = make_registry(timeout=0.6, max_retries=3)
    stub_llm.configure(first_token_delay=5)
    sink = MemoryUsageSink()
    started = time.monotonic()
    with pytest.raises(LLMTimeoutError) as caught:
        await LLMBundle(registry, "t1", "plain@OpenAI-API-Compatible", sink).chat(None, HISTORY)
    assert time.monotonic() - started < 1.5
    assert caught.value.http_status == 504
    assert sink.rows[0].outcome == "timeout"


async def test_fallback_model_answers_when_the_primary_keeps_failing(
    make_registry, stub_llm: StubLLMServer
) -> None:
    registry = make_registry(max_retries=1)
    stub_llm.configure(fail_500=2)
    sink = MemoryUsageSink()
    result = await bundle_for(registry, sink).chat(None, HISTORY)

    assert result.text.startswith("Stub answer")
    assert [(r.body["model"], r.status) for r in stub_llm.chat_requests] == [
        ("stub-chat", 500),
        ("stub-chat", 500),
        ("stub-backup", 200),
    ]
    assert sink.rows[0].attempts == 3


async def test_stream_cut_midway_raises_and_keeps_the_partial_answer(
    registry: ModelRegistry, stub_llm: StubLLMServer
) -> None:
    stub_llm.configure(reply="a b c d e f", cut_after=2)
    sink = MemoryUsageSink()
    stream = bundle_for(registry, sink).chat_streamly(None, HISTORY)
    received = []
    with pytest.raises(APICallError):
        async for delta in stream:
            received.append(delta)
    assert received == ["a ", "b "]
    assert stream.result.text == "a b " and stream.result.outcome == "error"
    assert sink.rows[0].outcome == "error" and sink.rows[0].completion_tokens > 0


async def test_stalled_stream_ends_within_the_timeout(make_registry, stub_llm: StubLLMServer) -> None:
    registry = make_registry(timeout=0.8)
    stub_llm.configure(reply="a b c d e f", stall_after=3)
    stream = bundle_for(registry, MemoryUsageSink()).chat_streamly(None, HISTORY)
    received = []
    started = time.monotonic()
    with pytest.raises(LLMTimeoutError):
        async for delta in stream:
            received.append(delta)
    assert time.monotonic() - started < 1.6
    assert received == ["a ", "b ", "c "] and stream.result.outcome == "timeout"


async def test_consumer_stopping_early_closes_the_stream(registry: ModelRegistry, stub_llm: StubLLMServer) -> None:
    stub_llm.configure(reply=" ".join(f"w{i}" for i in range(200)), tokens_per_second=100)
    sink = MemoryUsageSink()
    async with bundle_for(registry, sink).chat_streamly(None, HISTORY) as stream:
        async for delta in stream:
            if delta.startswith("w2"):
                break
    assert stream.result.outcome == "cancelled" and stream.result.text == "w0 w1 w2 "
    assert sink.rows[0].outcome == "cancelled" and not stream.result.usage.exact
    request = stub_llm.chat_requests[0]
    for _ in range(50):  # the connection was closed: the stub stopped writing long before the 2 s
        if request.ended is not None:
            break
        await asyncio.sleep(0.02)
    assert request.ended is not None and request.ended - request.time < 1.5 and not request.finished


async def test_cancelling_the_consumer_task_records_the_call(
    registry: ModelRegistry, stub_llm: StubLLMServer
) -> None:
    stub_llm.configure(reply="x y z", first_token_delay=5)
    sink = MemoryUsageSink()

    async def consume() -> None:
        async with bundle_for(registry, sink).chat_streamly(None, HISTORY) as stream:
            async for _ in stream:
                pass

    task = asyncio.create_task(consume())
    await asyncio.sleep(0.3)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert sink.rows[0].outcome == "cancelled"


async def test_invalid_parameters_are_refused_before_any_call(
    registry: ModelRegistry, stub_llm: StubLLMServer
) -> None:
    bundle = bundle_for(registry, MemoryUsageSink())
    with pytest.raises(ValidationError, match="temperature"):
        await bundle.chat(None, HISTORY, {"temperature": 7})
    with pytest.raises(ValidationError, match="reasoning_effort"):
        await bundle.chat(None, HISTORY, {"reasoning_effort": "high"})
    assert stub_llm.chat_requests == []

    stub_llm.configure(reply=" ".join(["word"] * 80))
    result = await bundle.chat(None, HISTORY, {"max_tokens": 1000, "ui_only_setting": True})
    sent = stub_llm.chat_requests[0].body
    assert sent["max_tokens"] == 50 and "ui_only_setting" not in sent  # clipped to the spec's max output
    assert result.usage.completion_tokens == 50 and result.finish_reason == "length"


async def test_rate_limit_per_tenant_and_per_model(make_registry, stub_llm: StubLLMServer) -> None:
    registry = make_registry(rate_limit_rpm=2)
    for _ in range(2):
        await bundle_for(registry, MemoryUsageSink(), tenant="a").chat(None, HISTORY)
    with pytest.raises(RateLimitError, match="2 requests per minute"):
        await bundle_for(registry, MemoryUsageSink(), tenant="a").chat(None, HISTORY)
    with pytest.raises(RateLimitError):  # the Router's per-model limit is spent as well
        await bundle_for(registry, MemoryUsageSink(), tenant="b").chat(None, HISTORY)
    assert len(stub_llm.chat_requests) == 2


async def test_unknown_price_gives_null_cost(registry: ModelRegistry, stub_llm: StubLLMServer) -> None:
    sink = MemoryUsageSink()
    result = await LLMBundle(registry, "t1", "unpriced@OpenAI-API-Compatible", sink).chat(None, HISTORY)
    assert result.cost is None and sink.rows[0].cost is None and sink.rows[0].prompt_tokens > 0


async def test_stream_falls_back_before_the_first_chunk(make_registry, stub_llm: StubLLMServer) -> None:
    registry = make_registry(max_retries=0)
    stub_llm.configure(fail_500=1, reply="from the backup")
    stream = bundle_for(registry, MemoryUsageSink()).chat_streamly(None, HISTORY)
    assert "".join([delta async for delta in stream]) == "from the backup"
    assert [r.body["model"] for r in stub_llm.chat_requests] == ["stub-chat", "stub-backup"]
    assert stream.result.attempts == 2


async def test_openai_factory_is_priced_from_litellm_map(registry: ModelRegistry, stub_llm: StubLLMServer) -> None:
    """gpt-4o-mini@OpenAI sent to LLM_API_BASE (the stub): LiteLLM's price map gives the cost."""
    sink = MemoryUsageSink()
    result = await LLMBundle(registry, "t1", "gpt-4o-mini@OpenAI", sink).chat(None, HISTORY)
    assert stub_llm.chat_requests[0].body["model"] == "gpt-4o-mini"
    assert result.usage.prompt_tokens == 6
    assert result.cost == pytest.approx(6 * 1.5e-7 + result.usage.completion_tokens * 6e-7)


def test_registry_closed_at_shutdown_leaves_the_next_app_working(make_registry) -> None:
    """Apps (and tests) start and stop in one process: closing LiteLLM's clients at one app's
    shutdown must not break the registry of the next one, on its own loop."""

    async def serve_once() -> str:
        registry = make_registry()
        answer = (await bundle_for(registry, None).chat(None, HISTORY)).text
        await registry.aclose()
        return answer

    assert asyncio.run(serve_once()).startswith("Stub answer")
    assert asyncio.run(serve_once()).startswith("Stub answer")
