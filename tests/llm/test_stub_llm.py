"""The stub server itself: the faults tests rely on really happen on the wire."""

from __future__ import annotations

import json
import time

import httpx
import pytest

from tests.fixtures.stub_llm import StubLLMServer

CHAT = {"model": "stub-chat", "messages": [{"role": "user", "content": "alpha beta gamma"}]}


def _sse_payloads(text: str) -> list[str]:
    return [line[len("data: ") :] for line in text.splitlines() if line.startswith("data: ")]


def test_chat_json_and_usage(stub_llm: StubLLMServer) -> None:
    body = httpx.post(stub_llm.api_base + "/chat/completions", json=CHAT).json()
    assert body["choices"][0]["message"]["content"] == "Stub answer about: alpha beta gamma"
    assert body["usage"] == {"prompt_tokens": 3, "completion_tokens": 6, "total_tokens": 9}
    assert stub_llm.chat_requests[0].body["messages"][0]["content"] == "alpha beta gamma"


def test_stream_with_usage_and_reasoning_field(stub_llm: StubLLMServer) -> None:
    stub_llm.configure(reply="one two", reasoning="hmm", reasoning_format="field")
    request = {**CHAT, "stream": True, "stream_options": {"include_usage": True}}
    payloads = _sse_payloads(httpx.post(stub_llm.api_base + "/chat/completions", json=request).text)
    assert payloads[-1] == "[DONE]"
    chunks = [json.loads(p) for p in payloads[:-1]]
    deltas = [c["choices"][0]["delta"] for c in chunks if c["choices"]]
    assert "".join(d.get("content") or "" for d in deltas) == "one two"
    assert "".join(d.get("reasoning_content") or "" for d in deltas) == "hmm"
    assert chunks[-1]["usage"]["completion_tokens"] == 3


def test_failures_then_success_in_order(stub_llm: StubLLMServer) -> None:
    stub_llm.configure(fail_500=1, rate_limit_429=1, retry_after=2)
    url = stub_llm.api_base + "/chat/completions"
    first, second, third = (httpx.post(url, json=CHAT) for _ in range(3))
    assert (first.status_code, second.status_code, third.status_code) == (500, 429, 200)
    assert second.headers["Retry-After"] == "2"
    assert [r.status for r in stub_llm.chat_requests] == [500, 429, 200]


def test_cut_closes_the_connection(stub_llm: StubLLMServer) -> None:
    stub_llm.configure(reply="a b c d e", cut_after=2)
    with pytest.raises(httpx.HTTPError):
        httpx.post(stub_llm.api_base + "/chat/completions", json={**CHAT, "stream": True}).read()


def test_stall_keeps_the_connection_open(stub_llm: StubLLMServer) -> None:
    stub_llm.configure(reply="a b c d e", stall_after=2)
    started = time.monotonic()
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(stub_llm.api_base + "/chat/completions", json={**CHAT, "stream": True}, timeout=0.5).read()
    assert time.monotonic() - started < 5


def test_embeddings_are_deterministic_unit_vectors(stub_llm: StubLLMServer) -> None:
    stub_llm.configure(embedding_dim=16)
    url = stub_llm.api_base + "/embeddings"
    one = httpx.post(url, json={"model": "e", "input": ["x y", "z"]}).json()
    two = httpx.post(url, json={"model": "e", "input": "x y"}).json()
    assert len(one["data"][0]["embedding"]) == 16
    assert one["data"][0]["embedding"] == two["data"][0]["embedding"]
    assert abs(sum(v * v for v in one["data"][1]["embedding"]) - 1.0) < 1e-6
    assert one["usage"]["prompt_tokens"] == 3


def test_models_and_reset(stub_llm: StubLLMServer) -> None:
    stub_llm.configure(fail_500=5)
    stub_llm.reset()
    ids = [m["id"] for m in httpx.get(stub_llm.api_base + "/models").json()["data"]]
    assert "stub-chat" in ids
    assert len(stub_llm.requests) == 1
