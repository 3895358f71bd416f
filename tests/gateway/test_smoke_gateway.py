"""Smoke: generate, stream, messages and the socket answer through the one pipeline."""

from __future__ import annotations

import json

import httpx


def test_generate_then_continue_the_conversation(live_server, stub_llm) -> None:
    stub_llm.configure(reply="Hello there friend")
    headers = {"Authorization": f"Bearer {live_server.key()}"}
    first = httpx.post(f"{live_server.url}/api/v1/llm/generate", headers=headers, timeout=30,
                       json={"user_message": "hi", "tone": "friendly", "max_tokens": 50}).json()
    assert first["response"] == "Hello there friend"
    assert first["tokens_used"]["completion"] > 0 and first["cost"]["currency"] == "USD"
    second = httpx.post(f"{live_server.url}/api/v1/llm/generate", headers=headers, timeout=30,
                        json={"user_message": "again", "conversation_id": first["conversation_id"]}).json()
    assert second["conversation_id"] == first["conversation_id"]
    sent = stub_llm.chat_requests[-1].body["messages"]
    assert [m["content"] for m in sent if m["role"] != "system"] == ["hi", "Hello there friend", "again"]


def test_stream_sends_deltas_then_done(live_server, stub_llm) -> None:
    stub_llm.configure(reply="one two three four")
    headers = {"Authorization": f"Bearer {live_server.key()}"}
    with httpx.stream("POST", f"{live_server.url}/api/v1/llm/stream", headers=headers, timeout=30,
                      json={"user_message": "count"}) as response:
        text = "".join(response.iter_text())
    blocks = [b for b in text.split("\n\n") if b.strip()]
    deltas = [json.loads(b.removeprefix("data: "))["delta"] for b in blocks if b.startswith("data: ")]
    assert "".join(deltas) == "one two three four"
    assert blocks[-1].startswith("event: done")


def test_unknown_tone_is_400_listing_the_known_ones(live_server) -> None:
    headers = {"Authorization": f"Bearer {live_server.key()}"}
    response = httpx.post(f"{live_server.url}/api/v1/llm/generate", headers=headers,
                          json={"user_message": "hi", "tone": "sarcastic"})
    assert response.status_code == 400
    assert "professional" in response.json()["message"]


def test_messages_keeps_the_conversation(live_server, stub_llm) -> None:
    stub_llm.configure(reply="pong")
    headers = {"Authorization": f"Bearer {live_server.key()}"}
    body = httpx.post(f"{live_server.url}/v1/messages", headers=headers, timeout=30,
                      json={"conversation_id": "", "messages": [{"role": "user", "content": "ping"}]}).json()
    assert body["reply"] == "pong" and len(body["conversation_id"]) == 32
