"""POST /api/v1/llm/stream: delta events then ``done``; failures end in ``error``, never a hang."""

from __future__ import annotations

import time

import httpx

from tests.gateway.helpers import FACTS, headers, seed_facts, sse_events, stored_messages, stream


def test_deltas_then_done_with_usage_and_references(live_server, stub_llm) -> None:
    key = live_server.key()
    dataset_id = seed_facts(live_server, key)
    stub_llm.configure(reply="The tower is in Paris and was finished in 1889.", tokens_per_second=200)
    response, events = stream(live_server, {"user_message": "Where is the Eiffel Tower?",
                                            "knowledge_base_ids": [dataset_id]}, key)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    names = [name for name, _ in events]
    assert names[-1] == "done" and set(names[:-1]) == {"message"} and len(names) > 2
    deltas = [data["delta"] for name, data in events if name == "message"]
    assert all(deltas) and "".join(deltas).startswith("The tower is in Paris")
    done = events[-1][1]
    assert set(done) >= {"conversation_id", "message_id", "tokens_used", "cost", "references"}
    assert done["tokens_used"]["completion"] > 0
    assert done["tokens_used"]["total"] == done["tokens_used"]["prompt"] + done["tokens_used"]["completion"]
    assert done["cost"]["currency"] == "USD"
    assert done["references"][0]["content"] == FACTS[0]
    stored = stored_messages(live_server, done["conversation_id"])
    assert [s[0] for s in stored] == ["user", "assistant"] and stored[1][2] == "complete"


def test_unknown_conversation_is_404_before_streaming(live_server, stub_llm) -> None:
    response, events = stream(live_server, {"user_message": "hi", "conversation_id": "f" * 32})
    assert response.status_code == 404 and events[0][1]["code"] == 102
    assert stub_llm.chat_requests == []


def test_unknown_tone_is_400(live_server) -> None:
    response, events = stream(live_server, {"user_message": "hi", "tone": "grumpy"})
    assert response.status_code == 400 and "concise" in events[0][1]["message"]


def test_provider_cut_mid_stream_is_an_error_event(live_server, stub_llm) -> None:
    stub_llm.configure(reply="one two three four five six seven eight", cut_after=3, tokens_per_second=100)
    response, events = stream(live_server, {"user_message": "count"})
    assert response.status_code == 200
    name, data = events[-1]
    assert name == "error", events
    assert data["error"] and len(data["conversation_id"]) == 32
    assert "done" not in [n for n, _ in events]
    assert stored_messages(live_server, data["conversation_id"])[-1][2] == "error", (events, stored_messages(live_server, data["conversation_id"]))


def test_provider_failure_before_the_first_token_is_an_error_event(live_server, stub_llm) -> None:
    stub_llm.configure(fail_500=10)
    response, events = stream(live_server, {"user_message": "hi"})
    assert [name for name, _ in events] == ["error"]
    assert events[0][1]["error"] and events[0][1]["conversation_id"]


def test_stalled_provider_ends_within_the_timeout(live_server, stub_llm) -> None:
    stub_llm.configure(reply="one two three four five", stall_after=2)
    started = time.monotonic()
    _, events = stream(live_server, {"user_message": "hi"}, timeout=30)
    elapsed = time.monotonic() - started
    assert events[-1][0] == "error", events
    assert elapsed < live_server.settings.llm_timeout + 3, elapsed
    assert "".join(d["delta"] for n, d in events if n == "message").startswith("one")


def test_answer_is_stored_when_done_arrives(live_server, stub_llm) -> None:
    """A client may continue the conversation as soon as it reads ``done``: the answer must be in
    the history by then, not stored later when the stream's generator is collected."""
    stub_llm.configure(reply="stored first")
    with httpx.stream("POST", live_server.url + "/api/v1/llm/stream", json={"user_message": "hi"},
                      headers=headers(live_server.key()), timeout=30) as response:
        buffer = ""
        for text in response.iter_text():
            buffer += text
            events = sse_events(buffer) if buffer.endswith("\n\n") else []
            if events and events[-1][0] == "done":
                stored = stored_messages(live_server, events[-1][1]["conversation_id"])
                break
    assert stored == [("user", "hi", "complete"), ("assistant", "stored first", "complete")]
