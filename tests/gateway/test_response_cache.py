"""The opt-in response cache: exact repeats answered from the database at no cost, per tenant only."""

from __future__ import annotations

import asyncio
import time

import aiohttp
import httpx

from api.db.models import ResponseCache, Tenant, Usage
from api.local import LocalRagline
from tests.chat.helpers import create_chat, stream_completion
from tests.gateway.helpers import post, stream

GENERATE = "/api/v1/llm/generate"


def metric(server, outcome: str) -> float:
    """The value of ``ragline_response_cache_total{outcome=...}`` on /metrics (0 when absent)."""
    text = httpx.get(server.url + "/metrics", timeout=10).text
    prefix = f'ragline_response_cache_total{{outcome="{outcome}"}} '
    return next((float(line[len(prefix):]) for line in text.splitlines() if line.startswith(prefix)), 0.0)


def usage_outcomes(server, tenant: str = "acme") -> list[tuple[str, int, int, float | None]]:
    def read() -> list[tuple[str, int, int, float | None]]:
        tenant_id = Tenant.get(Tenant.name == tenant).id
        rows = Usage.select().where((Usage.tenant_id == tenant_id) & (Usage.kind == "chat")).order_by(Usage.create_time)
        return [(row.outcome, row.prompt_tokens, row.completion_tokens, row.cost) for row in rows]

    return server.parts.db.call(read)


def test_a_repeated_question_is_answered_from_the_cache_at_no_cost(live_server, stub_llm) -> None:
    stub_llm.configure(reply="Cached words here")
    first = post(live_server, GENERATE, {"user_message": "What is our refund policy?", "cache": True}).json()
    second = post(live_server, GENERATE, {"user_message": "What is our refund policy?", "cache": True}).json()
    assert len(stub_llm.chat_requests) == 1
    assert first["cached"] is False and second["cached"] is True
    assert second["response"] == first["response"] == "Cached words here"
    assert second["tokens_used"] == first["tokens_used"] and second["tokens_used"]["completion"] > 0
    assert second["cost"]["total"] == 0 and second["cost"]["prompt"] == 0 and second["cost"]["completion"] == 0
    assert second["conversation_id"] != first["conversation_id"]
    assert (metric(live_server, "miss"), metric(live_server, "hit")) == (1, 1)
    outcomes = usage_outcomes(live_server)
    assert [row[0] for row in outcomes] == ["ok", "cached"]
    assert outcomes[1][1:] == (0, 0, 0.0)


def test_without_the_flag_every_call_reaches_the_model(live_server, stub_llm) -> None:
    for _ in range(2):
        body = post(live_server, GENERATE, {"user_message": "same question"}).json()
        assert body["cached"] is False
    assert len(stub_llm.chat_requests) == 2
    assert metric(live_server, "miss") == metric(live_server, "hit") == 0


def test_the_cache_is_never_shared_across_tenants(live_server, stub_llm) -> None:
    stub_llm.configure(reply="acme's answer")
    post(live_server, GENERATE, {"user_message": "shared question", "cache": True})
    stub_llm.configure(reply="globex's answer")
    theirs = post(live_server, GENERATE, {"user_message": "shared question", "cache": True},
                  key=live_server.key("globex")).json()
    assert theirs["cached"] is False and theirs["response"] == "globex's answer"
    assert len(stub_llm.chat_requests) == 2
    again = post(live_server, GENERATE, {"user_message": "shared question", "cache": True}).json()
    assert again["cached"] is True and again["response"] == "acme's answer"
    tenants = live_server.parts.db.call(lambda: sorted(row.tenant_id for row in ResponseCache.select()))
    assert len(set(tenants)) == 2


def test_parameters_are_part_of_the_key(live_server, stub_llm) -> None:
    post(live_server, GENERATE, {"user_message": "q", "cache": True, "max_tokens": 50})
    other = post(live_server, GENERATE, {"user_message": "q", "cache": True, "max_tokens": 51}).json()
    other_prompt = post(live_server, GENERATE, {"user_message": "q", "cache": True, "max_tokens": 50,
                                                "system_prompt": "Be brief."}).json()
    assert other["cached"] is False and other_prompt["cached"] is False
    assert len(stub_llm.chat_requests) == 3


def test_sampled_calls_bypass_the_cache_unless_asked(live_server, stub_llm) -> None:
    for _ in range(2):
        body = post(live_server, GENERATE, {"user_message": "warm", "cache": True, "temperature": 0.7}).json()
        assert body["cached"] is False
    assert len(stub_llm.chat_requests) == 2 and metric(live_server, "bypass") == 2
    answers = [post(live_server, GENERATE, {"user_message": "warm", "cache_sampled": True,
                                            "temperature": 0.7}).json() for _ in range(2)]
    assert [a["cached"] for a in answers] == [False, True] and len(stub_llm.chat_requests) == 3


def test_an_expired_answer_is_asked_again(live_server, stub_llm) -> None:
    post(live_server, GENERATE, {"user_message": "ttl", "cache": True})
    live_server.parts.db.call(lambda: ResponseCache.update(expires_time=int(time.time() * 1000) - 1).execute())
    again = post(live_server, GENERATE, {"user_message": "ttl", "cache": True}).json()
    assert again["cached"] is False and len(stub_llm.chat_requests) == 2


def test_a_failed_answer_is_not_cached(live_server, stub_llm) -> None:
    stub_llm.configure(fail_500=1)
    assert post(live_server, GENERATE, {"user_message": "flaky", "cache": True}).status_code == 502
    body = post(live_server, GENERATE, {"user_message": "flaky", "cache": True}).json()
    assert body["cached"] is False and body["response"]


def test_stream_ws_and_messages_doors(live_server, stub_llm) -> None:
    stub_llm.configure(reply="one two three four", tokens_per_second=200)
    stream(live_server, {"user_message": "door", "cache": True})
    _, events = stream(live_server, {"user_message": "door", "cache": True})
    name, done = events[-1]
    assert name == "done" and done["cached"] is True and done["cost"]["total"] == 0
    assert "".join(data["delta"] for kind, data in events if kind == "message") == "one two three four"

    async def over_ws() -> dict:
        url = live_server.url.replace("http://", "ws://") + "/ws"
        async with aiohttp.ClientSession() as session, session.ws_connect(
                url, headers={"Authorization": f"Bearer {live_server.key()}"}) as socket:
            await socket.send_json({"event": "llm_request", "data": {"message": "door", "metadata": {"cache": True}}})
            while True:
                frame = await socket.receive_json()
                if frame["event"] != "llm_delta":
                    return frame

    frame = asyncio.run(over_ws())
    assert frame["event"] == "llm_response" and frame["data"]["cached"] is True
    assert frame["data"]["cost"]["total"] == 0
    reply = post(live_server, "/v1/messages", {"messages": [{"role": "user", "content": "door"}], "cache": True})
    assert reply.json()["cached"] is True
    assert len(stub_llm.chat_requests) == 1


def test_a_chat_assistant_opts_in_through_its_llm_setting(live_server, stub_llm) -> None:
    key = live_server.key()
    chat = create_chat(live_server, key, name="cached", dataset_ids=[],
                       llm={"temperature": 0, "response_cache": True})
    assert chat["llm"]["response_cache"] is True
    answers = []
    for _ in range(2):
        session = httpx.post(f"{live_server.url}/api/v1/chats/{chat['id']}/sessions", json={"name": "s"},
                             headers={"Authorization": f"Bearer {key}"}, timeout=30).json()["data"]
        events, _ = stream_completion(live_server, key, chat["id"], {"question": "hours?", "session_id": session["id"]})
        answers.append(events[-2].payload["data"])
    assert answers[0]["answer"] == answers[1]["answer"] and len(stub_llm.chat_requests) == 1
    assert "cached" not in answers[0] and answers[1]["cached"] is True


async def test_in_process_api(settings, stub_llm) -> None:
    async with await LocalRagline.open(settings) as ragline:
        first = await ragline.generate(None, "local question", cache=True)
        second = await ragline.generate(None, "local question", cache=True)
    assert (first.cached, second.cached) == (False, True)
    assert second.cost["total"] == 0 and second.tokens_used == first.tokens_used
    assert len(stub_llm.chat_requests) == 1
