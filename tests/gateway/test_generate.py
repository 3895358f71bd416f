"""POST /api/v1/llm/generate: tone, history, knowledge, options, the response shape, errors."""

from __future__ import annotations

import time

from rag.prompts import tone_instruction
from tests.gateway.helpers import FACTS, post, seed_facts, stored_messages, system_sent, turns_sent

GENERATE = "/api/v1/llm/generate"


def test_response_shape_and_usage(live_server, stub_llm) -> None:
    stub_llm.configure(reply="Hello there friend")
    response = post(live_server, GENERATE, {"user_message": "hi"})
    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body) >= {"response", "conversation_id", "message_id", "tokens_used", "cost", "references"}
    assert body["response"] == "Hello there friend"
    assert len(body["conversation_id"]) == 32 and len(body["message_id"]) == 32
    tokens = body["tokens_used"]
    assert tokens["prompt"] > 0 and tokens["completion"] > 0
    assert tokens["total"] == tokens["prompt"] + tokens["completion"]
    assert set(body["cost"]) == {"prompt", "completion", "total", "currency"} and body["cost"]["currency"] == "USD"
    assert body["references"] == []
    stored = stored_messages(live_server, body["conversation_id"])
    assert stored == [("user", "hi", "complete"), ("assistant", "Hello there friend", "complete")]


def test_tone_system_prompt_and_generation_settings_reach_the_model(live_server, stub_llm) -> None:
    response = post(live_server, GENERATE, {"user_message": "hi", "tone": "formal", "system_prompt": "You are Zed.",
                                            "max_tokens": 42, "temperature": 0.3})
    assert response.status_code == 200, response.text
    sent = stub_llm.chat_requests[-1]
    system = system_sent(sent)
    assert system.startswith("You are Zed.") and tone_instruction("formal") in system
    assert sent.body["max_tokens"] == 42 and sent.body["temperature"] == 0.3


def test_model_override_is_the_model_called(live_server, stub_llm) -> None:
    response = post(live_server, GENERATE, {"user_message": "hi", "model": "stub-other@OpenAI-API-Compatible"})
    assert response.status_code == 200, response.text
    assert stub_llm.chat_requests[-1].body["model"] == "stub-other"


def test_unsupported_model_is_a_client_error(live_server, stub_llm) -> None:
    response = post(live_server, GENERATE, {"user_message": "hi", "model": "nonsense-without-factory"})
    assert response.status_code == 400, response.text
    assert "nonsense-without-factory" in response.json()["message"]
    assert stub_llm.chat_requests == []


def test_history_is_reused_across_calls(live_server, stub_llm) -> None:
    stub_llm.configure(reply="First answer")
    first = post(live_server, GENERATE, {"user_message": "one"}).json()
    stub_llm.configure(reply="Second answer")
    second = post(live_server, GENERATE, {"user_message": "two", "conversation_id": first["conversation_id"]}).json()
    assert second["conversation_id"] == first["conversation_id"]
    assert second["message_id"] != first["message_id"]
    assert turns_sent(stub_llm.chat_requests[-1]) == [("user", "one"), ("assistant", "First answer"),
                                                      ("user", "two")]


def test_knowledge_is_retrieved_into_the_prompt_and_referenced(live_server, stub_llm) -> None:
    key = live_server.key()
    dataset_id = seed_facts(live_server, key)
    stub_llm.configure(reply="It is in Paris.")
    response = post(live_server, GENERATE, {"user_message": "Where is the Eiffel Tower?",
                                            "knowledge_base_ids": [dataset_id]}, key)
    assert response.status_code == 200, response.text
    body = response.json()
    assert FACTS[0] in system_sent(stub_llm.chat_requests[-1])
    assert body["references"] and body["references"][0]["content"] == FACTS[0]
    assert {"id", "content", "document_id", "dataset_id", "similarity"} <= set(body["references"][0])
    assert body["references"][0]["dataset_id"] == dataset_id


def test_another_tenants_dataset_is_refused(live_server, stub_llm) -> None:
    dataset_id = seed_facts(live_server, live_server.key("globex"), "theirs")
    response = post(live_server, GENERATE, {"user_message": "hi", "knowledge_base_ids": [dataset_id]})
    assert response.status_code == 404, response.text
    assert stub_llm.chat_requests == []


def test_unknown_tone_is_400_listing_the_known_ones(live_server, stub_llm) -> None:
    response = post(live_server, GENERATE, {"user_message": "hi", "tone": "sarcastic"})
    assert response.status_code == 400
    message = response.json()["message"]
    assert "sarcastic" in message
    assert all(tone in message for tone in ("professional", "friendly", "empathetic", "concise", "formal", "casual"))
    assert stub_llm.chat_requests == []


def test_unknown_and_foreign_conversations_are_404(live_server, stub_llm) -> None:
    theirs = post(live_server, GENERATE, {"user_message": "secret"}, live_server.key("globex")).json()
    stub_llm.reset()
    for conversation_id in ("0" * 32, theirs["conversation_id"]):
        response = post(live_server, GENERATE, {"user_message": "hi", "conversation_id": conversation_id})
        assert response.status_code == 404, response.text
        assert response.json()["code"] == 102
    assert stub_llm.chat_requests == []
    assert [m[0] for m in stored_messages(live_server, theirs["conversation_id"])] == ["user", "assistant"]


def test_bad_bodies_are_400_and_oversize_is_refused(live_server, stub_llm) -> None:
    for body in ({}, {"user_message": ""}, {"user_message": "hi", "max_tokens": 0},
                 {"user_message": "hi", "temperature": 5}, {"user_message": "x" * 100_001}):
        response = post(live_server, GENERATE, body)
        assert response.status_code == 400, (body, response.text)
    huge = post(live_server, GENERATE, {"user_message": "x" * (live_server.settings.max_content_length + 10)})
    assert huge.status_code == 413
    assert stub_llm.chat_requests == []


def test_missing_key_is_401(live_server) -> None:
    import httpx

    response = httpx.post(live_server.url + GENERATE, json={"user_message": "hi"})
    assert response.status_code == 401 and response.json()["code"] == 109


def test_provider_failure_is_502_quickly_and_stored_as_error(live_server, stub_llm) -> None:
    stub_llm.configure(fail_500=10)
    started = time.monotonic()
    response = post(live_server, GENERATE, {"user_message": "hi"})
    assert response.status_code == 502, response.text
    assert time.monotonic() - started < 5
    assert response.json()["message"]
    conversations = [r for r in stub_llm.chat_requests if r.status == 500]
    assert conversations


def test_rate_limit_is_429(live_server, stub_llm) -> None:
    stub_llm.configure(rate_limit_429=10, retry_after=None)
    response = post(live_server, GENERATE, {"user_message": "hi"})
    assert response.status_code == 429, response.text
