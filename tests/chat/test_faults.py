"""Faults through the real code path (stub LLM over HTTP, LiteLLM, hypercorn): every stream ends
with the closing event, and the partial answer is stored with the reason it stopped."""

from __future__ import annotations

import time

import pytest

from api.db.services.dialog_service import DialogService
from tests.chat.conftest import STUB_MODEL
from tests.chat.helpers import (
    answers,
    api,
    create_chat,
    session_messages,
    stream_completion,
    usage_rows,
    wait_for,
)

LLM_TIMEOUT = 2.0
REPLY = " ".join(f"word{i}" for i in range(60))


@pytest.fixture
def settings(make_settings, stub_llm):
    return make_settings(llm_model=STUB_MODEL, llm_api_base=stub_llm.api_base, llm_timeout=LLM_TIMEOUT,
                         llm_max_retries=1)


def _session(server, key: str) -> tuple[str, str]:
    chat = create_chat(server, key, name="solo")
    session = api(server, key, "POST", f"/api/v1/chats/{chat['id']}/sessions", {"name": "s"})["data"]
    return chat["id"], session["id"]


def _error_then_close(events) -> dict:
    """The stream ended with one code-500 event and then the closing ``data: true``."""
    assert events[-1].payload == {"code": 0, "message": "", "data": True}
    error = events[-2].payload
    assert error["code"] == 500 and error["message"]
    assert [e.payload["code"] for e in events].count(500) == 1
    return error


def test_model_failing_mid_stream_sends_the_partial_answer_and_stores_it(live_server, stub_llm) -> None:
    key = live_server.key()
    chat_id, session_id = _session(live_server, key)
    stub_llm.configure(reply=REPLY, cut_after=5)
    events, _ = stream_completion(live_server, key, chat_id, {"question": "go", "session_id": session_id})
    error = _error_then_close(events)
    partial = "word0 word1 word2 word3 word4"
    assert error["data"]["answer"].strip() == partial
    assert error["data"]["reference"] == []
    assert "word5" not in error["message"]
    stored = session_messages(live_server, session_id)[-1]
    assert (stored.role, stored.content.strip(), stored.status) == ("assistant", partial, "error")
    assert stored.error
    (row,) = usage_rows(live_server, chat_id)
    assert row.message_id == stored.id and row.outcome != "ok" and row.completion_tokens > 0


def test_model_failing_every_attempt_ends_with_the_error_event(live_server, stub_llm) -> None:
    key = live_server.key()
    chat_id, session_id = _session(live_server, key)
    stub_llm.configure(fail_500=100)
    started = time.monotonic()
    events, _ = stream_completion(live_server, key, chat_id, {"question": "go", "session_id": session_id})
    assert time.monotonic() - started < LLM_TIMEOUT + 3
    error = _error_then_close(events)
    assert error["data"]["answer"] == ""
    assert len(stub_llm.chat_requests) >= 2  # retried before giving up
    stored = session_messages(live_server, session_id)
    assert [(m.role, m.status) for m in stored] == [("assistant", "complete"), ("user", "complete"),
                                                    ("assistant", "error")]
    reply = api(live_server, key, "POST", f"/api/v1/chats/{chat_id}/completions",
                {"question": "again", "session_id": session_id, "stream": False})
    assert reply["code"] != 0 and reply["message"]

    stub_llm.reset()
    stub_llm.configure(reply="Back.")
    reply = api(live_server, key, "POST", f"/api/v1/chats/{chat_id}/completions",
                {"question": "third", "session_id": session_id, "stream": False})
    assert reply["data"]["answer"] == "Back."
    turns = [(m["role"], m["content"]) for m in stub_llm.chat_requests[-1].body["messages"][1:]]
    assert turns == [("user", "go"), ("user", "again"), ("user", "third")]  # failed turns' empty answers left out


def test_stalled_stream_ends_within_the_llm_timeout(live_server, stub_llm) -> None:
    key = live_server.key()
    chat_id, session_id = _session(live_server, key)
    stub_llm.configure(reply=REPLY, stall_after=3)
    started = time.monotonic()
    events, _ = stream_completion(live_server, key, chat_id, {"question": "go", "session_id": session_id})
    assert time.monotonic() - started < LLM_TIMEOUT + 2
    error = _error_then_close(events)
    assert error["data"]["answer"].strip() == "word0 word1 word2"
    stored = session_messages(live_server, session_id)[-1]
    assert (stored.content.strip(), stored.status) == ("word0 word1 word2", "error")


def test_client_going_away_cancels_the_model_and_stores_the_partial_answer(live_server, stub_llm) -> None:
    key = live_server.key()
    chat_id, session_id = _session(live_server, key)
    stub_llm.configure(reply=REPLY, tokens_per_second=25)
    events, closed_at = stream_completion(live_server, key, chat_id, {"question": "go", "session_id": session_id},
                                          stop_after=3)
    assert len(events) == 3
    upstream = stub_llm.chat_requests[-1]
    assert wait_for(lambda: upstream.ended, timeout=3), "the upstream LLM stream was never closed"
    assert upstream.ended - closed_at < 1.0
    assert not upstream.finished
    stored = wait_for(lambda: [m for m in session_messages(live_server, session_id) if m.seq == 2], timeout=3)
    assert stored, "the partial answer was not stored"
    answer = stored[0]
    assert answer.status == "interrupted"
    assert answer.content.startswith(answers(events)[-1]["answer"])
    assert 0 < len(answer.content.split()) < 60
    row = wait_for(lambda: usage_rows(live_server, chat_id), timeout=3)[0]
    assert (row.message_id, row.outcome) == (answer.id, "cancelled")


def test_unexpected_failure_mid_stream_still_closes_the_stream(live_server, stub_llm, monkeypatch) -> None:
    key = live_server.key()
    chat_id, session_id = _session(live_server, key)

    async def broken_finish(*args, **kwargs):
        raise RuntimeError("citation step exploded")

    monkeypatch.setattr(DialogService, "_finish", broken_finish)
    stub_llm.configure(reply="word0 word1 word2")
    events, _ = stream_completion(live_server, key, chat_id, {"question": "go", "session_id": session_id})
    error = _error_then_close(events)
    assert "citation step exploded" in error["message"]
    assert error["data"]["answer"] == "word0 word1 word2"
    stored = session_messages(live_server, session_id)[-1]
    assert (stored.content, stored.status) == ("word0 word1 word2", "error")
    assert "citation step exploded" in stored.error


def test_a_retrieval_failure_is_an_error_event_and_a_stored_error(live_server, stub_llm, monkeypatch) -> None:
    """Early retrieval (beside the history load) and the retry inside the answer both fail: the
    client gets the error event and the closing event, and the turn is stored as an error."""
    from api.db.services.dialog_service import DialogService
    from rag.utils.doc_store_conn import DocStoreError
    from tests.chat.helpers import answers, sdk, seed_dataset, session_messages, stream_completion

    client = sdk(live_server)
    dataset = seed_dataset(client)
    chat = client.create_chat("broken-index", dataset_ids=[dataset.id])
    session = chat.create_session()

    async def failing(self, dialog, question):
        raise DocStoreError("the index is unreachable")

    monkeypatch.setattr(DialogService, "retrieve", failing)
    events, _ = stream_completion(live_server, live_server.key(), chat.id,
                                  {"question": "anything?", "session_id": session.id})
    assert events[-1].payload == {"code": 0, "message": "", "data": True}
    assert any(e.payload["code"] == 500 and "unreachable" in e.payload["message"] for e in events)
    assert not answers(events) or all(a["answer"] == "" for a in answers(events))
    stored = session_messages(live_server, session.id)
    assert [m.role for m in stored][-2:] == ["user", "assistant"] and stored[-1].status == "error"
