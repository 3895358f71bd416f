"""/api/v1/chats_openai/<chat_id>: the official ``openai`` client against a live server + stub LLM."""

from __future__ import annotations

import re

import httpx
import openai
import pytest
from openai import OpenAI

from api.apps.openai_app import unsent_tail
from tests.fixtures.stub_llm import _prompt_tokens, _words
from tests.openai.conftest import FACTS, STUB_MODEL, make_chat

QUESTION = "When was the Eiffel Tower completed?"
CITED_REPLY = "The Eiffel Tower was completed in 1889 [ID:0]."
MARK = re.compile(r"\s*\[ID:\d+\]")


def client_for(setup, key: str | None = None) -> OpenAI:
    return OpenAI(api_key=key or setup.key, base_url=setup.openai_base, max_retries=0, timeout=30)


def ask(setup, question: str = QUESTION, **kwargs):
    return client_for(setup).chat.completions.create(
        model="anything", messages=[{"role": "user", "content": question}], **kwargs)


def collect(stream) -> tuple[str, list]:
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    return text, chunks


def test_whole_answer_with_real_usage(geo_chat, stub_llm) -> None:
    stub_llm.configure(reply=CITED_REPLY)
    completion = ask(geo_chat)

    assert completion.object == "chat.completion"
    assert completion.model == STUB_MODEL
    choice = completion.choices[0]
    assert choice.message.role == "assistant"
    assert choice.message.content == CITED_REPLY
    assert choice.finish_reason == "stop"
    assert "reference" not in (choice.message.model_extra or {})
    sent = stub_llm.chat_requests[-1].body
    assert completion.usage.prompt_tokens == _prompt_tokens(sent["messages"])
    assert completion.usage.completion_tokens == len(_words(CITED_REPLY))
    assert completion.usage.total_tokens == completion.usage.prompt_tokens + completion.usage.completion_tokens
    assert any(FACTS[0] in m["content"] for m in sent["messages"] if m["role"] == "system"), "no retrieval"


def test_whole_answer_with_reference(geo_chat, stub_llm) -> None:
    stub_llm.configure(reply=CITED_REPLY)
    completion = ask(geo_chat, extra_body={"reference": True})

    reference = completion.choices[0].message.model_extra["reference"]
    assert reference[0]["content"] == FACTS[0]
    assert {"id", "document_id", "dataset_id", "similarity"} <= set(reference[0])
    assert reference[0]["dataset_id"] == geo_chat.dataset_id


def test_stream_deltas_reassemble_the_answer_and_usage_comes_last(geo_chat, stub_llm) -> None:
    stub_llm.configure(reply=CITED_REPLY, tokens_per_second=100)
    text, chunks = collect(ask(geo_chat, stream=True, stream_options={"include_usage": True}))

    assert text == CITED_REPLY
    assert all(c.object == "chat.completion.chunk" and c.id == chunks[0].id for c in chunks)
    assert chunks[0].choices[0].delta.role == "assistant"
    content_chunks = [c for c in chunks if c.choices and c.choices[0].delta.content]
    assert len(content_chunks) > 1, "the answer was not streamed"
    finals = [c for c in chunks if c.choices and c.choices[0].finish_reason]
    assert [c.choices[0].finish_reason for c in finals] == ["stop"]
    assert "reference" not in (finals[0].choices[0].delta.model_extra or {})
    usage_chunk = chunks[-1]
    assert usage_chunk.choices == []
    sent = stub_llm.chat_requests[-1].body
    assert sent["stream"] is True
    assert usage_chunk.usage.prompt_tokens == _prompt_tokens(sent["messages"])
    assert usage_chunk.usage.completion_tokens == len(_words(CITED_REPLY))


def test_stream_without_include_usage_sends_no_usage(geo_chat, stub_llm) -> None:
    stub_llm.configure(reply=CITED_REPLY)
    _, chunks = collect(ask(geo_chat, stream=True))
    assert all(c.usage is None for c in chunks)
    assert chunks[-1].choices[0].finish_reason == "stop"


def test_stream_final_delta_carries_reference(geo_chat, stub_llm) -> None:
    stub_llm.configure(reply=CITED_REPLY)
    text, chunks = collect(ask(geo_chat, stream=True, extra_body={"reference": True}))
    final = next(c for c in chunks if c.choices and c.choices[0].finish_reason)
    extra = final.choices[0].delta.model_extra
    assert extra["reference"][0]["content"] == FACTS[0]
    assert "final_content" not in extra, "the stream was not rewritten, so no final_content"
    assert sum("reference" in (c.choices[0].delta.model_extra or {}) for c in chunks if c.choices) == 1


def test_stream_with_server_inserted_citations_stays_append_only(geo_chat, stub_llm) -> None:
    reply = "The Eiffel Tower is in Paris. It was completed in 1889 and is in Paris."
    stub_llm.configure(reply=reply)
    whole = ask(geo_chat, extra_body={"reference": True}).choices[0].message.content
    assert "[ID:0]" in whole and MARK.sub("", whole) == reply

    stub_llm.configure(tokens_per_second=40)
    text, chunks = collect(ask(geo_chat, stream=True, extra_body={"reference": True}))
    final = next(c for c in chunks if c.choices and c.choices[0].finish_reason).choices[0].delta
    assert MARK.sub("", text) == reply, "the deltas must reassemble the answer's text"
    assert text.endswith(whole[whole.rfind("1889"):]), "the unsent tail carries its citation"
    assert text != whole, "the first sentence's citation came after the sentence was streamed"
    assert final.model_extra["final_content"] == whole


def test_unsent_tail_aligns_on_text_without_markers() -> None:
    assert unsent_tail("Paris. It", "Paris. It was.") == " was."
    assert unsent_tail("Paris. It", "Paris. [ID:0] It was. [ID:1]") == " was. [ID:1]"
    assert unsent_tail("Paris.", "Paris. [ID:0] It was.") == " [ID:0] It was."
    assert unsent_tail("Paris [ID:7]", "Paris. More") == ". More"
    assert unsent_tail("One [ID:9] two [ID:0]", "One two [ID:0] three") == " three"


def test_history_of_the_request_reaches_the_model(geo_chat, stub_llm) -> None:
    messages = [
        {"role": "system", "content": "ignored: the assistant's own prompt rules"},
        {"role": "user", "content": "Tell me about the Eiffel Tower."},
        {"role": "assistant", "content": "It is in Paris."},
        {"role": "user", "content": [{"type": "text", "text": "When was it completed?"}]},
    ]
    client_for(geo_chat).chat.completions.create(model="x", messages=messages)
    sent = stub_llm.chat_requests[-1].body["messages"]
    assert [m["role"] for m in sent] == ["system", "user", "assistant", "user"]
    assert [m["content"] for m in sent[1:]] == ["Tell me about the Eiffel Tower.", "It is in Paris.",
                                                "When was it completed?"]
    assert "ignored" not in sent[0]["content"]


def test_generation_options_are_forwarded(geo_chat, stub_llm) -> None:
    ask(geo_chat, temperature=0.5, max_tokens=3)
    sent = stub_llm.chat_requests[-1].body
    assert sent["temperature"] == 0.5
    assert (sent.get("max_tokens") or sent.get("max_completion_tokens")) == 3


def test_models_lists_the_chat_model(geo_chat) -> None:
    models = client_for(geo_chat).models.list()
    assert [m.id for m in models.data] == [STUB_MODEL]
    assert models.data[0].owned_by == "OpenAI-API-Compatible"


def test_bad_key_is_an_authentication_error(geo_chat) -> None:
    with pytest.raises(openai.AuthenticationError) as raised:
        ask(geo_chat.__class__(**{**geo_chat.__dict__, "key": "not-a-key"}))
    assert raised.value.status_code == 401
    assert raised.value.body["code"] == "invalid_api_key"


def test_unknown_or_foreign_chat_is_not_found(live_server, geo_chat) -> None:
    other = make_chat(live_server.url, live_server.key("globex"), name="theirs", facts=FACTS[:1])
    for setup in (other.__class__(geo_chat.url, geo_chat.key, "0" * 32, ""),
                  other.__class__(geo_chat.url, geo_chat.key, other.chat_id, "")):
        with pytest.raises(openai.NotFoundError) as raised:
            ask(setup)
        assert raised.value.body["type"] == "invalid_request_error"
        with pytest.raises(openai.NotFoundError):
            client_for(setup).models.list()


@pytest.mark.parametrize("body", [
    {"model": "x", "messages": []},
    {"model": "x", "messages": [{"role": "assistant", "content": "hello"}]},
    {"model": "x", "messages": [{"role": "user", "content": "hi"}], "temperature": 5},
    {"model": "x", "messages": [{"role": "wizard", "content": "hi"}]},
    {"model": "x", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 0},
])
def test_bad_requests_are_400_with_openai_error_object(geo_chat, body) -> None:
    response = httpx.post(f"{geo_chat.openai_base}/chat/completions", json=body,
                          headers={"Authorization": f"Bearer {geo_chat.key}"}, timeout=30)
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error" and error["message"]


def test_not_json_is_400(geo_chat) -> None:
    response = httpx.post(f"{geo_chat.openai_base}/chat/completions", content=b"{oops",
                          headers={"Authorization": f"Bearer {geo_chat.key}"}, timeout=30)
    assert response.status_code == 400
    assert "JSON" in response.json()["error"]["message"]


@pytest.mark.parametrize("stream", [False, True])
def test_rate_limited_model_is_429(geo_chat, stub_llm, stream) -> None:
    stub_llm.configure(rate_limit_429=10, retry_after=2)
    with pytest.raises(openai.RateLimitError) as raised:
        collect(ask(geo_chat, stream=True)) if stream else ask(geo_chat)
    assert raised.value.status_code == 429
    assert raised.value.response.headers.get("Retry-After") is not None
    assert raised.value.body["type"] == "rate_limit_error"


def test_failing_model_is_502(geo_chat, stub_llm) -> None:
    stub_llm.configure(fail_500=10)
    with pytest.raises(openai.InternalServerError) as raised:
        ask(geo_chat)
    assert raised.value.status_code == 502
    assert raised.value.body["type"] == "api_error"


def test_failure_mid_stream_raises_in_the_client(geo_chat, stub_llm) -> None:
    stub_llm.configure(reply="The Eiffel Tower was completed in 1889 and it is tall.", cut_after=3,
                       tokens_per_second=100)
    received: list[str] = []
    with pytest.raises(openai.APIError) as raised:
        for chunk in ask(geo_chat, stream=True):
            received.append(chunk.choices[0].delta.content or "" if chunk.choices else "")
    assert "".join(received).startswith("The"), "the partial answer was streamed before the error"
    assert raised.value.body["type"] == "api_error"


def test_unexpected_failure_mid_stream_still_ends_the_stream(geo_chat, stub_llm, monkeypatch) -> None:
    from api.db.services.dialog_service import DialogService

    async def broken_finish(*_args, **_kwargs):
        raise RuntimeError("citations exploded")

    monkeypatch.setattr(DialogService, "_finish", broken_finish)
    stub_llm.configure(reply=CITED_REPLY)
    body = {"model": "x", "stream": True, "messages": [{"role": "user", "content": QUESTION}]}
    with httpx.stream("POST", f"{geo_chat.openai_base}/chat/completions", json=body, timeout=30,
                      headers={"Authorization": f"Bearer {geo_chat.key}"}) as response:
        lines = [line for line in response.iter_lines() if line.startswith("data: ")]
    assert lines[-1] == "data: [DONE]"
    assert "citations exploded" in lines[-2] and '"error"' in lines[-2]
