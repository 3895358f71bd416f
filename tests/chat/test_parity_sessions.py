"""Sessions and related questions as RAGFlow v0.22 and v0.27 clients see them."""

from __future__ import annotations

from typing import Any

import pytest

from api.app import create_app
from api.apps.sdk.related_questions import EXTRACTIVE_NOTE
from api.db.services import tenant_service
from rag.prompts.related_questions import numbered_lines
from tests.chat.test_parity_chats import call, ok


def _chat_with_sessions(server: Any, count: int = 5) -> tuple[str, list[str]]:
    chat = ok(call(server, "POST", "/api/v1/chats", {"name": "with-sessions", "prompt": {"opener": "Welcome!"}}))
    sessions = [ok(call(server, "POST", f"/api/v1/chats/{chat['id']}/sessions",
                        {"name": f"session_with_chat_assistant_{i}"}))["id"] for i in range(count)]
    return chat["id"], sessions


@pytest.mark.parametrize(("line", "empty_name"), [("0.22", "`name` can not be empty."),
                                                  ("0.27", "`name` can not be empty")])
def test_create_and_rename_messages_of_each_line(live_server, stub_llm, line, empty_name) -> None:
    chat_id, (first, *_) = _chat_with_sessions(live_server, 1)
    assert call(live_server, "POST", f"/api/v1/chats/{chat_id}/sessions", {"name": ""}, line=line) == {
        "code": 102, "message": empty_name}
    made = ok(call(live_server, "POST", f"/api/v1/chats/{chat_id}/sessions", {}, line=line))
    assert (made["name"], made["chat_id"], made["messages"][0]["content"]) == ("New session", chat_id, "Welcome!")
    assert call(live_server, "PUT", f"/api/v1/chats/{chat_id}/sessions/{first}", {"name": " "},
                line=line)["message"] == empty_name


def test_get_patch_and_put_a_session(live_server, stub_llm) -> None:
    chat_id, (first, *_) = _chat_with_sessions(live_server, 2)
    path = f"/api/v1/chats/{chat_id}/sessions/{first}"
    assert ok(call(live_server, "PATCH", path, {"name": "patched"}))["name"] == "patched"
    assert ok(call(live_server, "PUT", path, {}))["name"] == "patched"  # nothing to change is fine
    got = ok(call(live_server, "GET", path))
    assert (got["id"], got["name"], got["messages"][0]["role"]) == (first, "patched", "assistant")
    for method in ("GET", "PATCH"):
        missing = call(live_server, method, f"/api/v1/chats/{chat_id}/sessions/{'0' * 32}", {"name": "x"})
        assert missing == {"code": 102, "message": "Session not found!"}


def test_list_paging_filters_and_order(live_server, stub_llm) -> None:
    chat_id, sessions = _chat_with_sessions(live_server)
    path = f"/api/v1/chats/{chat_id}/sessions"
    for line in ("0.22", "0.27"):  # both SDK lines read a bare list here
        assert [s["id"] for s in ok(call(live_server, "GET", path, params={"page_size": 2}, line=line))] == [
            sessions[4], sessions[3]]
        assert len(ok(call(live_server, "GET", path, params={"page": 3, "page_size": 2}, line=line))) == 1
        assert ok(call(live_server, "GET", path, params={"page_size": 0}, line=line)) == []
        assert ok(call(live_server, "GET", path, params={"id": "unknown"}, line=line)) == []
        assert ok(call(live_server, "GET", path, params={"name": "unknown"}, line=line)) == []
    by_name = ok(call(live_server, "GET", path, params={"orderby": "name", "desc": "False"}))
    assert [s["name"] for s in by_name] == sorted(s["name"] for s in by_name)


def test_deletes_are_partial_and_follow_delete_all(live_server, stub_llm) -> None:
    chat_id, sessions = _chat_with_sessions(live_server)
    path = f"/api/v1/chats/{chat_id}/sessions"
    reply = ok(call(live_server, "DELETE", path, {"ids": sessions[:1] + ["invalid_id"] + sessions[1:2] * 2}))
    assert reply["success_count"] == 2
    assert reply["errors"][0] == "The chat doesn't own the session invalid_id"
    assert "Duplicate session ids" in reply["errors"][1]
    gone = call(live_server, "DELETE", path, {"ids": sessions[:1]})
    assert (gone["code"], gone["message"]) == (102, f"The chat doesn't own the session {sessions[0]}")

    assert ok(call(live_server, "DELETE", path, {"ids": None, "delete_all": False}, line="0.27"))["success_count"] == 0
    assert len(ok(call(live_server, "GET", path))) == 3
    assert ok(call(live_server, "DELETE", path, {"ids": None, "delete_all": True}, line="0.27"))["success_count"] == 3
    assert ok(call(live_server, "GET", path)) == []


def test_completion_refusals_name_what_is_wrong(live_server, stub_llm) -> None:
    chat_id, _ = _chat_with_sessions(live_server, 0)
    unknown_chat = call(live_server, "POST", f"/api/v1/chats/{'0' * 32}/completions", {"question": "hi"})
    assert unknown_chat["code"] == 102 and "You don't own the chat" in unknown_chat["message"]
    unknown_session = call(live_server, "POST", f"/api/v1/chats/{chat_id}/completions",
                           {"question": "hello", "stream": False, "session_id": "invalid_session"})
    assert unknown_session["code"] == 102 and "You don't own the session" in unknown_session["message"]


def test_related_questions_through_the_chat_model(live_server, stub_llm) -> None:
    stub_llm.configure(reply="Here you go:\n1. What is RAGFlow?\n2. How does RAGFlow search?\n")
    reply = call(live_server, "POST", "/api/v1/sessions/related_questions", {"question": "ragflow",
                                                                             "industry": "search"})
    assert reply["code"] == 0 and reply["data"] == ["What is RAGFlow?", "How does RAGFlow search?"]
    prompt = stub_llm.chat_requests[-1].body["messages"][0]["content"]
    assert "ragflow" in prompt and "industry: search" in prompt
    missing = call(live_server, "POST", "/api/v1/sessions/related_questions", {"industry": "search"})
    assert (missing["code"], missing["message"]) == (101, "`question` is required.")

    stub_llm.configure(reply=None, fail_500=5)
    failed = call(live_server, "POST", "/api/v1/sessions/related_questions", {"question": "ragflow"})
    assert failed["code"] == 103 and "failed" in failed["message"]


def test_numbered_lines() -> None:
    assert numbered_lines("1. alpha\n2) beta\n- gamma") == ["alpha", "beta", "gamma"]
    assert numbered_lines("Sure:\n1. alpha\n\n2. beta") == ["alpha", "beta"]
    assert numbered_lines("alpha\nbeta") == ["alpha", "beta"]


async def test_related_questions_with_the_extractive_model(make_settings, make_parts) -> None:
    settings = make_settings()  # no LLM provider: the builtin extractive model answers
    parts = make_parts(settings)
    app = create_app(settings, parts)
    async with app.test_app() as test_app:
        key = parts.db.call(tenant_service.create_key_for, "acme").key
        response = await test_app.test_client().post("/api/v1/sessions/related_questions", json={"question": "q"},
                                                      headers={"Authorization": f"Bearer {key}"})
        body = await response.get_json()
    assert body == {"code": 0, "data": [], "message": EXTRACTIVE_NOTE}


def test_chat_completions_naming_the_chat_in_the_body(live_server, stub_llm) -> None:
    """RAGFlow's later ``POST /chat/completions``: ``chat_id`` and OpenAI-style ``messages`` in the body."""
    chat_id, _ = _chat_with_sessions(live_server, 0)
    stub_llm.configure(reply="Hi there.")
    body = {"chat_id": chat_id, "messages": [{"role": "user", "content": "hello"}], "stream": False}
    answer = ok(call(live_server, "POST", "/api/v1/chat/completions", body, line="0.27"))
    assert answer["answer"] == "Hi there." and answer["session_id"]
    assert stub_llm.chat_requests[-1].body["messages"][-1]["content"] == "hello"
    again = ok(call(live_server, "POST", "/api/v1/chat/completions", {**body, "session_id": answer["session_id"]}))
    assert again["session_id"] == answer["session_id"]
    refusals = [({**body, "chat_id": "0" * 32}, "You don't own the chat"),
                ({**body, "session_id": "invalid_session"}, "You don't own the session"),
                ({**body, "metadata_condition": "invalid"}, "metadata_condition"),
                ({"messages": body["messages"]}, "`chat_id` is required.")]
    for payload, message in refusals:
        reply = call(live_server, "POST", "/api/v1/chat/completions", payload)
        assert reply["code"] == 102 and message in reply["message"], reply


def test_related_questions_at_the_searchbots_path_too(live_server, stub_llm) -> None:
    stub_llm.configure(reply="1. What is Ragline?\n")
    reply = call(live_server, "POST", "/api/v1/searchbots/related_questions", {"question": "ragline"})
    assert (reply["code"], reply["data"]) == (0, ["What is Ragline?"])
    missing = call(live_server, "POST", "/api/v1/searchbots/related_questions", {"industry": "search"})
    assert (missing["code"], missing["message"]) == (101, "`question` is required.")
