"""POST /v1/messages: a reply, with the conversation and its messages stored."""

from __future__ import annotations

from api.db.models import Conversation
from tests.gateway.helpers import post, stored_messages, system_sent, turns_sent

MESSAGES = "/v1/messages"


def test_new_conversation_then_continue_it(live_server, stub_llm) -> None:
    stub_llm.configure(reply="pong")
    first = post(live_server, MESSAGES, {"conversation_id": "", "messages": [{"role": "user", "content": "ping"}]})
    assert first.status_code == 200, first.text
    body = first.json()
    assert body == {"conversation_id": body["conversation_id"], "reply": "pong"} and len(body["conversation_id"]) == 32
    stub_llm.configure(reply="pong again")
    second = post(live_server, MESSAGES, {"conversation_id": body["conversation_id"],
                                          "messages": [{"role": "user", "content": "ping again"}]}).json()
    assert second == {"conversation_id": body["conversation_id"], "reply": "pong again"}
    assert turns_sent(stub_llm.chat_requests[-1]) == [("user", "ping"), ("assistant", "pong"),
                                                      ("user", "ping again")]
    assert stored_messages(live_server, body["conversation_id"]) == [
        ("user", "ping", "complete"), ("assistant", "pong", "complete"),
        ("user", "ping again", "complete"), ("assistant", "pong again", "complete")]


def test_missing_conversation_id_starts_a_new_one(live_server, stub_llm) -> None:
    body = post(live_server, MESSAGES, {"messages": [{"role": "user", "content": "ping"}]}).json()
    assert len(body["conversation_id"]) == 32 and body["reply"]


def test_prior_turns_of_a_new_conversation_are_stored_and_sent(live_server, stub_llm) -> None:
    stub_llm.configure(reply="Blue.")
    messages = [{"role": "system", "content": "You are Iris."}, {"role": "user", "content": "Favourite colour?"},
                {"role": "assistant", "content": "Green."}, {"role": "user", "content": "And now?"}]
    body = post(live_server, MESSAGES, {"conversation_id": "", "messages": messages}).json()
    sent = stub_llm.chat_requests[-1]
    assert system_sent(sent).startswith("You are Iris.")
    assert turns_sent(sent) == [("user", "Favourite colour?"), ("assistant", "Green."), ("user", "And now?")]
    assert [m[:2] for m in stored_messages(live_server, body["conversation_id"])] == [
        ("user", "Favourite colour?"), ("assistant", "Green."), ("user", "And now?"), ("assistant", "Blue.")]
    conversation = live_server.parts.db.call(Conversation.get_by_id, body["conversation_id"])
    assert conversation.system_prompt == "You are Iris."


def test_bad_bodies_are_400(live_server, stub_llm) -> None:
    bodies = [
        {}, {"messages": []}, {"messages": [{"role": "assistant", "content": "hi"}]},
        {"messages": [{"role": "user", "content": "   "}]}, {"messages": [{"role": "robot", "content": "hi"}]},
        {"messages": [{"role": "user", "content": "x" * 100_001}]}, {"messages": "hi"},
    ]
    for body in bodies:
        response = post(live_server, MESSAGES, body)
        assert response.status_code == 400, (body, response.text)
        assert response.json()["code"] == 101 and response.json()["message"]
    assert stub_llm.chat_requests == []


def test_body_over_the_size_limit_is_413(live_server, stub_llm) -> None:
    content = "x" * (live_server.settings.max_content_length + 10)
    response = post(live_server, MESSAGES, {"messages": [{"role": "user", "content": content}]})
    assert response.status_code == 413


def test_unknown_and_foreign_conversations_are_404(live_server, stub_llm) -> None:
    theirs = post(live_server, MESSAGES, {"messages": [{"role": "user", "content": "secret"}]},
                  live_server.key("globex")).json()["conversation_id"]
    stub_llm.reset()
    for conversation_id in ("a" * 32, theirs):
        response = post(live_server, MESSAGES, {"conversation_id": conversation_id,
                                                "messages": [{"role": "user", "content": "hi"}]})
        assert response.status_code == 404, response.text
    assert stub_llm.chat_requests == []
    assert len(stored_messages(live_server, theirs)) == 2


def test_provider_failure_is_an_error_status(live_server, stub_llm) -> None:
    stub_llm.configure(fail_500=10)
    response = post(live_server, MESSAGES, {"messages": [{"role": "user", "content": "hi"}]})
    assert response.status_code == 502, response.text
    assert response.json()["message"]
