"""Intent routing: routes per tenant, embedding first, the LLM when unsure, the fallback for
nonsense; the decision on every door's answer, first in streams, on the message, in /metrics."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import aiohttp
import httpx
import pytest

from api.db.models import Message, Tenant
from api.local import LocalRagline
from tests.chat.helpers import create_chat, stream_completion
from tests.gateway.helpers import post, stream, system_sent

DATA = Path(__file__).resolve().parents[1] / "bench" / "data"
INTENTS = ("billing", "technical_support", "sales", "general")
EXAMPLES_PER_INTENT = 28  # the whole tune half of the labelled set
CLEAR = {"billing": "Can you send me a copy of my last invoice?",
         "technical_support": "I can't log in even though my password is correct",
         "sales": "Can I get a demo of the product for my team?"}
NONSENSE = "purple monkey dishwasher"


def api(server: Any, key: str, method: str, path: str, body: Any = None) -> dict[str, Any]:
    return httpx.request(method, server.url + path, json=body, headers={"Authorization": f"Bearer {key}"},
                         timeout=60).json()


def tune_examples() -> dict[str, list[str]]:
    rows = [json.loads(line) for line in (DATA / "intents.jsonl").read_text().splitlines() if line]
    return {intent: [r["question"] for r in rows if r["intent"] == intent and r["split"] == "tune"][:EXAMPLES_PER_INTENT]
            for intent in INTENTS}


def persona(intent: str) -> str:
    return f"You are the {intent} desk."


def set_up_router(server: Any, key: str) -> dict[str, str]:
    """One assistant per intent (its system prompt names it), a fallback one, and the routes."""
    chats = {}
    for intent in (*INTENTS, "fallback"):
        chats[intent] = create_chat(server, key, name=f"{intent} desk", dataset_ids=[],
                                    prompt_config={"system": persona(intent), "parameters": []})["id"]
    descriptions = json.loads((DATA / "intent_routes.json").read_text())
    for intent, examples in tune_examples().items():
        reply = api(server, key, "POST", "/api/v1/intents", {"name": intent, "description": descriptions[intent],
                                                              "examples": examples, "chat_id": chats[intent]})
        assert reply["code"] == 0, reply
    reply = api(server, key, "PUT", "/api/v1/intents/settings", {"fallback_chat_id": chats["fallback"]})
    assert reply["code"] == 0 and reply["data"]["fallback_chat_id"] == chats["fallback"], reply
    return chats


def metric(server: Any, intent: str, method: str) -> float:
    text = httpx.get(server.url + "/metrics", timeout=10).text
    prefix = f'ragline_intent_routes_total{{intent="{intent}",method="{method}"}} '
    return next((float(line[len(prefix):]) for line in text.splitlines() if line.startswith(prefix)), 0.0)


def stored_intent(server: Any, message_id: str) -> tuple[str | None, float | None]:
    message = server.parts.db.call(lambda: Message.get_by_id(message_id))
    return message.intent, message.intent_confidence


def test_clear_questions_reach_their_assistant_without_an_llm_call(live_server, stub_llm) -> None:
    set_up_router(live_server, live_server.key())
    for intent, question in CLEAR.items():
        stub_llm.reset()
        body = post(live_server, "/api/v1/llm/generate", {"user_message": question, "route": True}).json()
        decision = body["intent"]
        assert (decision["intent"], decision["method"]) == (intent, "embedding"), body
        assert 0 < decision["confidence"] <= 1
        assert len(stub_llm.chat_requests) == 1  # the answer only: no classification call
        assert system_sent(stub_llm.chat_requests[0]).startswith(persona(intent))
        assert stored_intent(live_server, body["message_id"]) == (intent, pytest.approx(decision["confidence"]))
        assert metric(live_server, intent, "embedding") == 1


def test_nonsense_falls_back_after_asking_the_llm(live_server, stub_llm) -> None:
    set_up_router(live_server, live_server.key())
    body = post(live_server, "/api/v1/llm/generate", {"user_message": NONSENSE, "route": True}).json()
    assert (body["intent"]["intent"], body["intent"]["method"]) == ("fallback", "fallback"), body
    classify, answer = stub_llm.chat_requests
    assert '"intent"' in system_sent(classify) and "billing" in system_sent(classify)
    assert system_sent(answer).startswith(persona("fallback"))
    assert metric(live_server, "fallback", "fallback") == 1


def test_the_llm_decides_when_the_embeddings_are_unsure(live_server, stub_llm) -> None:
    set_up_router(live_server, live_server.key())
    stub_llm.configure(reply='{"intent": "sales", "confidence": 0.9}')
    body = post(live_server, "/api/v1/llm/generate", {"user_message": NONSENSE, "route": True}).json()
    assert body["intent"] == {**body["intent"], "intent": "sales", "method": "llm", "confidence": 0.9}
    assert system_sent(stub_llm.chat_requests[-1]).startswith(persona("sales"))
    stub_llm.configure(reply='{"intent": "sales", "confidence": 0.2}')  # not sure enough: the fallback
    unsure = post(live_server, "/api/v1/llm/generate", {"user_message": NONSENSE, "route": True}).json()
    assert unsure["intent"]["intent"] == "fallback"


def test_streams_announce_the_intent_first(live_server, stub_llm) -> None:
    set_up_router(live_server, live_server.key())
    stub_llm.configure(tokens_per_second=200)
    _, events = stream(live_server, {"user_message": CLEAR["billing"], "route": True})
    (first_name, first), (last_name, last) = events[0], events[-1]
    assert first_name == "intent" and first["intent"] == "billing" and first["method"] == "embedding"
    assert all(name == "message" for name, _ in events[1:-1]) and last_name == "done"
    assert last["intent"]["intent"] == "billing"

    async def over_ws() -> list[dict]:
        async with aiohttp.ClientSession() as session, session.ws_connect(
                live_server.url.replace("http://", "ws://") + "/ws",
                headers={"Authorization": f"Bearer {live_server.key()}"}) as socket:
            await socket.send_json({"event": "llm_request",
                                    "data": {"message": CLEAR["sales"], "metadata": {"route": True}}})
            frames = []
            while not frames or frames[-1]["event"] not in ("llm_response", "llm_error"):
                frames.append(await socket.receive_json())
            return frames

    frames = asyncio.run(over_ws())
    assert frames[0]["event"] == "llm_intent" and frames[0]["data"]["intent"] == "sales"
    assert frames[-1]["event"] == "llm_response" and frames[-1]["data"]["intent"]["intent"] == "sales"
    reply = post(live_server, "/v1/messages", {"messages": [{"role": "user", "content": CLEAR["technical_support"]}],
                                               "route": True}).json()
    assert reply["intent"]["intent"] == "technical_support"


def test_a_router_chat_routes_ragflow_completions(live_server, stub_llm) -> None:
    key = live_server.key()
    set_up_router(live_server, key)
    router = create_chat(live_server, key, name="front desk", dataset_ids=[],
                         prompt_config={"system": "You are the front desk.", "parameters": [], "intent_router": True})
    session = api(live_server, key, "POST", f"/api/v1/chats/{router['id']}/sessions", {"name": "s"})["data"]
    events, _ = stream_completion(live_server, key, router["id"], {"question": CLEAR["billing"],
                                                                   "session_id": session["id"]})
    assert events[0].payload["data"]["intent"]["intent"] == "billing"
    assert system_sent(stub_llm.chat_requests[-1]).startswith(persona("billing"))
    stored = api(live_server, key, "GET", f"/api/v1/chats/{router['id']}/sessions/{session['id']}")["data"]
    answer = stored["messages"][-1]
    assert answer["role"] == "assistant" and answer["intent"]["intent"] == "billing"


def test_routes_are_per_tenant_and_checked(live_server, stub_llm) -> None:
    key, other = live_server.key(), live_server.key("globex")
    chats = set_up_router(live_server, key)
    listed = api(live_server, key, "GET", "/api/v1/intents")["data"]
    assert sorted(route["name"] for route in listed["routes"]) == sorted(INTENTS)
    assert api(live_server, other, "GET", "/api/v1/intents")["data"]["routes"] == []
    theirs = api(live_server, other, "POST", "/api/v1/intents/classify", {"question": CLEAR["billing"]})
    assert theirs["code"] == 102 and "No intent routes" in theirs["message"]
    foreign = api(live_server, other, "POST", "/api/v1/intents", {"name": "x", "chat_id": chats["billing"]})
    assert foreign["code"] == 102
    assert api(live_server, key, "POST", "/api/v1/intents", {"name": "fallback", "chat_id": chats["billing"]})[
        "code"] == 102
    assert api(live_server, key, "POST", "/api/v1/intents", {"name": "billing", "chat_id": chats["billing"]})[
        "code"] == 102
    assert api(live_server, key, "POST", "/api/v1/intents", {"name": "bad name!", "chat_id": chats["billing"]})[
        "code"] != 0
    billing = next(route for route in listed["routes"] if route["name"] == "billing")
    assert api(live_server, other, "DELETE", f"/api/v1/intents/{billing['id']}")["code"] == 102
    classified = api(live_server, key, "POST", "/api/v1/intents/classify", {"question": CLEAR["billing"]})["data"]
    assert classified["intent"] == "billing" and set(classified["scores"]) == set(INTENTS)

    moved = api(live_server, key, "PUT", f"/api/v1/intents/{billing['id']}",
                {"examples": ["I want to upgrade my plan"], "chat_id": chats["sales"]})["data"]
    assert moved["chat_id"] == chats["sales"] and moved["examples"] == ["I want to upgrade my plan"]
    deleted = api(live_server, key, "DELETE", "/api/v1/intents", {"ids": [billing["id"]]})["data"]
    assert deleted == {"deleted": 1}
    assert api(live_server, key, "DELETE", "/api/v1/intents", {"delete_all": True})["data"] == {"deleted": 3}
    assert api(live_server, key, "GET", "/api/v1/intents")["data"]["routes"] == []


def test_the_orchestration_endpoint_and_the_in_process_api(live_server, stub_llm) -> None:
    set_up_router(live_server, live_server.key())
    answer = api(live_server, live_server.key(), "POST", "/api/v1/intents/answer", {"user_message": CLEAR["sales"]})
    assert answer["code"] == 0 and answer["data"]["intent"]["intent"] == "sales"

    async def in_process() -> tuple[dict, Any]:
        tenant_id = await live_server.parts.db.run(lambda: Tenant.get(Tenant.name == "acme").id)
        ragline = LocalRagline(live_server.parts, tenant_id)
        return await ragline.classify_intent(CLEAR["billing"]), await ragline.generate(None, CLEAR["billing"],
                                                                                       route=True)

    decision, reply = asyncio.run_coroutine_threadsafe(in_process(), live_server.loop).result(60)
    assert decision["intent"] == "billing" and reply.intent["intent"] == "billing"


def test_the_llm_answer_is_read_strictly() -> None:
    from rag.nlp.intent import parse_llm_choice

    names = list(INTENTS)
    assert parse_llm_choice('Sure! {"intent": "Billing", "confidence": 0.8}', names) == ("billing", 0.8)
    assert parse_llm_choice('{"intent": "billing", "confidence": 7}', names) == ("billing", 1.0)
    assert parse_llm_choice('{"intent": "none", "confidence": 0.9}', names) == (None, 0.0)
    assert parse_llm_choice('{"intent": "refunds", "confidence": 0.9}', names) == (None, 0.0)
    assert parse_llm_choice("billing, definitely", names) == (None, 0.0)
    assert parse_llm_choice('{"intent": "sales", "confidence": "high"}', names) == ("sales", 0.0)
