"""A/B tests between model deployments: the Router's weighted choice, the arm on every answer and
usage row, and /usage broken down per arm (tokens, cost, latency, errors)."""

from __future__ import annotations

import asyncio
import math
from collections import Counter

import httpx
import pytest

from api.db.models import Dialog
from api.db.services.llm_service import LLMBundle
from api.db.services.usage_service import MemoryUsageSink
from rag.llm.errors import LLMServiceError
from rag.llm.registry import ModelRegistry
from tests.chat.helpers import create_chat

ARM_A = "stub-a@OpenAI-API-Compatible"
ARM_B = "stub-b@OpenAI-API-Compatible"


def within_binomial(count: int, calls: int, share: float, sigmas: float = 4.5) -> bool:
    """``count`` of ``calls`` is what a weight share ``share`` gives, within ``sigmas`` standard deviations."""
    return abs(count - calls * share) <= sigmas * math.sqrt(calls * share * (1 - share))


@pytest.fixture
def registry(stub_llm) -> ModelRegistry:
    return ModelRegistry.from_config(api_base=stub_llm.api_base, timeout=5, max_retries=0)


async def test_the_split_follows_the_weights_and_each_answer_names_its_arm(registry, stub_llm) -> None:
    group = registry.ab_group([(ARM_A, 3), (ARM_B, 1)])
    assert registry.ab_group([(ARM_B, 1), (ARM_A, 3)]) == group  # the same arms, the same group
    sink = MemoryUsageSink()
    bundle = LLMBundle(registry, "t1", group, sink)
    calls = 400
    arms: Counter[str] = Counter()
    for index in range(calls):
        if index % 2:
            result = await bundle.chat(None, [{"role": "user", "content": "hi"}], {})
        else:
            stream = bundle.chat_streamly(None, [{"role": "user", "content": "hi"}], {})
            assert "".join([piece async for piece in stream])
            result = stream.result
        assert result.arm == result.model and result.arm in (ARM_A, ARM_B)
        arms[result.arm] += 1
    assert within_binomial(arms[ARM_A], calls, 0.75), arms
    sent = Counter(request.body["model"] for request in stub_llm.chat_requests)
    assert sent == {"stub-a": arms[ARM_A], "stub-b": arms[ARM_B]}  # the arm named is the one called
    assert all("weight" not in request.body for request in stub_llm.chat_requests)
    assert Counter(row.arm for row in sink.rows) == arms
    assert all(row.model == row.arm for row in sink.rows)


async def test_equal_weights_split_evenly_and_a_failure_is_charged_to_its_arm(registry, stub_llm) -> None:
    group = registry.ab_group([(ARM_A, 1), (ARM_B, 1)])
    sink = MemoryUsageSink()
    bundle = LLMBundle(registry, "t1", group, sink)
    arms = Counter()
    for _ in range(200):
        arms[(await bundle.chat(None, [{"role": "user", "content": "q"}], {})).arm] += 1
    assert within_binomial(arms[ARM_A], 200, 0.5), arms
    stub_llm.configure(fail_500=1)
    with pytest.raises(LLMServiceError) as failure:
        await bundle.chat(None, [{"role": "user", "content": "q"}], {})
    failed = sink.rows[-1]
    assert failed.outcome != "ok" and failed.arm == failure.value.arm in (ARM_A, ARM_B)
    assert failed.arm.split("@")[0] == stub_llm.requests[-1].body["model"]


def test_an_ab_group_needs_two_routable_non_builtin_models(registry) -> None:
    with pytest.raises(ValueError):
        registry.ab_group([(ARM_A, 1)])
    with pytest.raises(ValueError):
        registry.ab_group([(ARM_A, 1), (ARM_A, 2)])
    with pytest.raises(LLMServiceError):
        registry.ab_group([(ARM_A, 1), ("extractive@Builtin", 1)])
    with pytest.raises(LLMServiceError):
        registry.spec("ab:unknown")


def test_a_chat_assistant_with_ab_models_reports_arms_and_usage_per_arm(live_server, stub_llm) -> None:
    key = live_server.key()
    chat = create_chat(live_server, key, name="ab", dataset_ids=[],
                       llm={"ab_models": [{"model": ARM_A, "weight": 3}, {"model": ARM_B, "weight": 1}]})
    assert [arm["model"] for arm in chat["llm"]["ab_models"]] == [ARM_A, ARM_B]
    headers = {"Authorization": f"Bearer {key}"}
    served: Counter[str] = Counter()
    calls = 120
    with httpx.Client(base_url=live_server.url, headers=headers, timeout=30) as client:
        for index in range(calls):
            body = client.post(f"/api/v1/chats/{chat['id']}/completions",
                               json={"question": f"question {index}", "stream": False}).json()
            assert body["code"] == 0, body
            served[body["data"]["arm"]] += 1
        stub_llm.configure(fail_500=1)
        failed = client.post(f"/api/v1/chats/{chat['id']}/completions", json={"question": "boom", "stream": False})
        assert failed.json()["code"] != 0
        usage = client.get("/api/v1/usage", params={"group_by": "arm", "chat_id": chat["id"]}).json()["data"]
        other_chat = client.get("/api/v1/usage", params={"group_by": "arm", "chat_id": "0" * 32}).json()["data"]
    assert set(served) == {ARM_A, ARM_B} and within_binomial(served[ARM_A], calls, 0.75), served
    groups = {group["arm"]: group for group in usage["groups"]}
    assert set(groups) == {ARM_A, ARM_B}
    assert sum(group["calls"] for group in groups.values()) == calls + 1
    assert sum(group["errors"] for group in groups.values()) == 1
    for arm, group in groups.items():
        assert group["calls"] - group["errors"] == served[arm]
        assert group["prompt_tokens"] > 0 and group["completion_tokens"] > 0
        assert group["avg_latency_ms"] is not None and group["avg_latency_ms"] > 0
    assert usage["total"]["calls"] == calls + 1 and usage["total"]["errors"] == 1
    assert other_chat["groups"] == []


def test_invalid_ab_models_are_refused_before_they_are_stored(live_server) -> None:
    key = live_server.key()
    headers = {"Authorization": f"Bearer {key}"}
    bodies = [
        {"name": "one", "llm": {"ab_models": [{"model": ARM_A}]}},
        {"name": "unknown", "llm": {"ab_models": [{"model": ARM_A}, {"model": "nope-no-factory"}]}},
        {"name": "builtin", "llm_setting": {"ab_models": [{"model": ARM_A}, {"model": "extractive@Builtin"}]}},
        {"name": "weight", "llm": {"ab_models": [{"model": ARM_A, "weight": 0}, {"model": ARM_B}]}},
    ]
    for body in bodies:
        reply = httpx.post(live_server.url + "/api/v1/chats", json=body, headers=headers, timeout=30).json()
        assert reply["code"] != 0, (body, reply)
    assert live_server.parts.db.call(lambda: Dialog.select().count()) == 0


def test_ws_answers_name_the_arm(live_server, stub_llm) -> None:
    import aiohttp

    key = live_server.key()
    chat = create_chat(live_server, key, name="ab-ws", dataset_ids=[],
                       llm={"ab_models": [{"model": ARM_A, "weight": 1}, {"model": ARM_B, "weight": 1}]})
    conversation = httpx.post(live_server.url + "/v1/conversation/set", json={"dialog_id": chat["id"]},
                              headers={"Authorization": f"Bearer {key}"}, timeout=30).json()
    conversation_id = conversation["data"]["id"] if "data" in conversation else conversation["id"]

    async def ask() -> dict:
        async with aiohttp.ClientSession() as session, session.ws_connect(
                live_server.url.replace("http://", "ws://") + "/ws",
                headers={"Authorization": f"Bearer {key}"}) as socket:
            await socket.send_json({"event": "llm_request", "data": {"message": "hi",
                                                                     "conversation_id": conversation_id}})
            while True:
                frame = await socket.receive_json()
                if frame["event"] != "llm_delta":
                    return frame

    frame = asyncio.run(ask())
    assert frame["event"] == "llm_response", frame
    assert frame["data"]["arm"] in (ARM_A, ARM_B)
    assert stub_llm.chat_requests[-1].body["model"] == frame["data"]["arm"].split("@")[0]
