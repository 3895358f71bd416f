"""/api/v1/openai/<chat_id>: RAGFlow v0.27's alias of chats_openai, with ``extra_body`` as curl sends
it (a literal object) and as the ``openai`` client sends it (merged into the body)."""

from __future__ import annotations

import json

import httpx
from openai import OpenAI

from api.db.services.chat_assistant_service import DEFAULT_EMPTY_RESPONSE
from tests.openai.conftest import FACTS, ChatSetup

CITED_REPLY = "The Eiffel Tower was completed in 1889 [ID:0]."
QUESTION = [{"role": "user", "content": "When was the Eiffel Tower completed?"}]


def alias(setup: ChatSetup) -> str:
    return f"{setup.url}/api/v1/openai/{setup.chat_id}"


def post(setup: ChatSetup, body: dict, chat_id: str | None = None) -> httpx.Response:
    url = f"{setup.url}/api/v1/openai/{chat_id or setup.chat_id}/chat/completions"
    return httpx.post(url, json={"model": "model", **body}, timeout=30,
                      headers={"Authorization": f"Bearer {setup.key}"})


def test_curl_extra_body_reference_whole_answer(geo_chat, stub_llm) -> None:
    stub_llm.configure(reply=CITED_REPLY)
    response = post(geo_chat, {"messages": QUESTION, "stream": False, "extra_body": {"reference": True}})
    assert response.status_code == 200
    message = response.json()["choices"][0]["message"]
    assert message["content"] == CITED_REPLY
    assert message["reference"][0]["content"] == FACTS[0]

    plain = post(geo_chat, {"messages": QUESTION, "stream": False}).json()["choices"][0]["message"]
    assert "reference" not in plain


def test_curl_extra_body_reference_streamed(geo_chat, stub_llm) -> None:
    stub_llm.configure(reply=CITED_REPLY)
    with httpx.stream("POST", f"{alias(geo_chat)}/chat/completions", timeout=30,
                      headers={"Authorization": f"Bearer {geo_chat.key}"},
                      json={"model": "m", "messages": QUESTION, "stream": True,
                            "extra_body": {"reference": True}}) as response:
        lines = [line[len("data: "):] for line in response.iter_lines() if line.startswith("data: ")]
    assert lines[-1] == "[DONE]"
    chunks = [json.loads(line) for line in lines[:-1]]
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    assert text == CITED_REPLY
    final = [c for c in chunks if c["choices"] and c["choices"][0]["finish_reason"]][-1]
    assert final["choices"][0]["delta"]["reference"][0]["content"] == FACTS[0]


def test_openai_client_on_the_alias(geo_chat, stub_llm) -> None:
    stub_llm.configure(reply=CITED_REPLY)
    client = OpenAI(api_key=geo_chat.key, base_url=alias(geo_chat), max_retries=0, timeout=30)
    whole = client.chat.completions.create(model="m", messages=QUESTION, extra_body={"reference": True})
    assert whole.choices[0].message.model_extra["reference"][0]["content"] == FACTS[0]
    chunks = list(client.chat.completions.create(model="m", messages=QUESTION, stream=True,
                                                 extra_body={"reference": True}))
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == CITED_REPLY
    assert chunks[-1].choices[0].delta.model_extra["reference"][0]["content"] == FACTS[0]
    assert [m.id for m in client.models.list()] == [whole.model]


def test_reference_metadata_and_metadata_condition(geo_chat, stub_llm) -> None:
    stub_llm.configure(reply=CITED_REPLY)
    headers = {"Authorization": f"Bearer {geo_chat.key}"}
    with httpx.Client(base_url=geo_chat.url, headers=headers, timeout=30) as client:
        documents = client.get(f"/api/v1/datasets/{geo_chat.dataset_id}/documents").json()["data"]["docs"]
        doc_id = documents[0]["id"]
        assert client.put(f"/api/v1/datasets/{geo_chat.dataset_id}/documents/{doc_id}",
                          json={"meta_fields": {"author": "ada", "year": "2024"}}).json()["code"] == 0
    extra = {"reference": True, "reference_metadata": {"include": True, "fields": ["author"]}}
    message = post(geo_chat, {"messages": QUESTION, "extra_body": extra}).json()["choices"][0]["message"]
    assert message["reference"][0]["document_metadata"] == {"author": "ada"}

    nobody = {"reference": True, "metadata_condition": {"conditions": [
        {"name": "author", "comparison_operator": "is", "value": "bob"}]}}
    asked = len(stub_llm.chat_requests)
    answer = post(geo_chat, {"messages": QUESTION, "extra_body": nobody}).json()
    assert answer["choices"][0]["message"]["reference"] == []
    # nothing retrieved: the chat's empty_response answers, without the model, as in RAGFlow
    assert answer["choices"][0]["message"]["content"] == DEFAULT_EMPTY_RESPONSE
    assert len(stub_llm.chat_requests) == asked
    assert answer["usage"]["prompt_tokens"] > 0 and answer["usage"]["completion_tokens"] > 0  # counted as RAGFlow


def test_errors_use_http_statuses_like_chats_openai(geo_chat, stub_llm) -> None:
    unknown = post(geo_chat, {"messages": QUESTION}, chat_id="0" * 32)
    assert unknown.status_code == 404
    assert "don't own the chat" in unknown.json()["error"]["message"]
    cases = [
        ({"messages": QUESTION, "extra_body": "bad"}, "extra_body must be an object"),
        ({"messages": QUESTION, "extra_body": {"reference_metadata": "bad"}}, "reference_metadata must be an object"),
        ({"messages": QUESTION, "extra_body": {"reference_metadata": {"fields": "bad"}}},
         "reference_metadata.fields must be an array"),
        ({"messages": QUESTION, "extra_body": {"metadata_condition": "bad"}}, "metadata_condition must be an object"),
        ({"messages": []}, "You have to provide messages"),
        ({"messages": [{"role": "assistant", "content": "hello"}]}, "last content of this conversation"),
    ]
    for body, expected in cases:
        response = post(geo_chat, body)
        assert response.status_code == 400, (body, response.text)
        assert expected in response.json()["message"] and expected in response.json()["error"]["message"]
    no_key = httpx.post(f"{alias(geo_chat)}/chat/completions", json={"model": "m", "messages": QUESTION})
    assert no_key.status_code == 401 and "error" in no_key.json()
