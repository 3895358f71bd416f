"""The direct SSE transport for OpenAI-compatible streams (``rag.llm.sse_stream``) and the
Router's choice between it and LiteLLM's wrapper. The behaviour both transports share
(retries, faults, reasoning, cancellation) is covered by every test of this folder, which runs
once per transport (``stream_transport`` in conftest)."""

from __future__ import annotations

import base64

import httpx
import litellm
import pytest

from rag.llm.errors import RateLimitError, retry_after_seconds, translate_exception
from rag.llm.router import SSE_LINE_BYTES, LiteLLMPieces, build_router
from rag.llm.sse_stream import SSEChatStream, piece_of, speaks_openai, status_error, wire_options
from tests.fixtures.stub_llm import StubLLMServer

MESSAGES = [{"role": "user", "content": "tell me"}]


def router_of(*deployments: dict, rate_limited: bool = False, direct: bool = True):
    """A Router whose group ``m`` has one deployment per ``litellm_params`` given."""
    router = build_router(timeout=5, max_retries=0, rate_limited=rate_limited, fallbacks={}, direct_streaming=direct)
    router.set_model_list([{"model_name": "m", "litellm_params": params} for params in deployments])
    return router


def router_to(stub_llm: StubLLMServer, model: str, direct: bool = True):
    return router_of({"model": model, "api_base": stub_llm.api_base, "api_key": "k"}, direct=direct)


async def read_all(stream) -> tuple[str, str, dict | None, str | None]:
    text, reasoning, usage, finish = "", "", None, None
    try:
        async for piece in stream:
            text += piece.text
            reasoning += piece.reasoning
            usage = piece.usage or usage
            finish = piece.finish_reason or finish
    finally:
        await stream.aclose()
    return text, reasoning, usage, finish


async def test_answers_read_to_their_end_reuse_one_connection(stub_llm: StubLLMServer) -> None:
    """After ``[DONE]`` the body's end is read too, so the connection goes back to the pool
    instead of being closed with unread bytes (a new TCP connection per answer)."""
    stub_llm.configure(reply="one two three")
    router = router_to(stub_llm, "openai/stub-chat")
    try:
        for _ in range(3):
            text, *_ = await read_all(await router.astream_chat("m", MESSAGES, {}))
            assert text == "one two three"
    finally:
        await router.aclose_streams()
    peers = {request.peer for request in stub_llm.chat_requests}
    assert len(stub_llm.chat_requests) == 3 and len(peers) == 1


async def test_a_direct_refusal_carries_its_status_and_retry_after(stub_llm: StubLLMServer) -> None:
    """A 429 read off the wire by the direct transport becomes LiteLLM's RateLimitError with
    the response's Retry-After, as LiteLLM's own transport would raise it (the Router and
    ``retry_after_seconds`` read it there)."""
    stub_llm.configure(rate_limit_429=1, retry_after=7)
    router = router_to(stub_llm, "openai/stub-chat")
    try:
        with pytest.raises(litellm.RateLimitError) as raised:
            await router.astream_chat("m", MESSAGES, {})
        assert retry_after_seconds(raised.value) == 7
        assert raised.value.status_code == 429
        text, *_ = await read_all(await router.astream_chat("m", MESSAGES, {}))  # the next one is answered
        assert text
    finally:
        await router.aclose_streams()


async def test_a_line_too_long_to_read_is_a_typed_connection_error(stub_llm: StubLLMServer) -> None:
    stub_llm.configure(reply="x" * (3 * SSE_LINE_BYTES))  # one word: one SSE line of 3 MiB
    router = router_to(stub_llm, "openai/stub-chat")
    try:
        with pytest.raises(litellm.APIConnectionError, match="could not be read"):
            await read_all(await router.astream_chat("m", MESSAGES, {}))
    finally:
        await router.aclose_streams()


async def test_openai_deployments_stream_without_litellm(stub_llm: StubLLMServer, monkeypatch) -> None:
    """The point of the transport: LiteLLM's completion (and its per-chunk wrapper) is not
    involved in an OpenAI-compatible stream at all."""

    async def refuse(*args, **kwargs):
        raise AssertionError("litellm.acompletion must not be called for a direct stream")

    monkeypatch.setattr(litellm, "acompletion", refuse)
    stub_llm.configure(reply="one two three")
    router = router_to(stub_llm, "openai/stub-chat")
    try:
        stream = await router.astream_chat("m", MESSAGES, {"temperature": 0.5})
        assert isinstance(stream, SSEChatStream)
        text, _, usage, finish = await read_all(stream)
    finally:
        await router.aclose_streams()
    assert text == "one two three" and finish == "stop"
    assert usage == {"prompt_tokens": 2, "completion_tokens": 3, "total_tokens": 5}
    sent = stub_llm.chat_requests[0]
    assert sent.body["model"] == "stub-chat" and sent.body["temperature"] == 0.5
    assert sent.body["stream_options"] == {"include_usage": True}
    assert sent.headers["authorization"] == "Bearer k"


@pytest.mark.parametrize("model, direct", [("hosted_vllm/stub-chat", True), ("openai/stub-chat", False)])
async def test_other_routes_and_the_switch_stream_through_litellm(stub_llm: StubLLMServer, model: str,
                                                                  direct: bool) -> None:
    stub_llm.configure(reply="one two three")
    router = router_to(stub_llm, model, direct=direct)
    stream = await router.astream_chat("m", MESSAGES, {})
    assert isinstance(stream, LiteLLMPieces)
    text, _, usage, _ = await read_all(stream)
    assert text == "one two three" and usage["completion_tokens"] == 3


async def test_both_transports_read_the_same_answer(stub_llm: StubLLMServer) -> None:
    stub_llm.configure(reply="Alpha, beta; gamma!\n delta", reasoning="thinking hard", reasoning_format="field")
    answers = []
    for direct in (True, False):
        router = router_to(stub_llm, "openai/stub-chat", direct=direct)
        answers.append(await read_all(await router.astream_chat("m", MESSAGES, {})))
        await router.aclose_streams()
    (text, reasoning, usage, finish), (text_2, reasoning_2, usage_2, finish_2) = answers
    assert (text, reasoning, finish) == (text_2, reasoning_2, finish_2)
    assert usage["completion_tokens"] == usage_2["completion_tokens"]
    assert answers[0][0] == "Alpha, beta; gamma!\n delta" and answers[0][1] == "thinking hard"


def test_pieces_read_reasoning_under_either_name() -> None:
    chunk = {"choices": [{"delta": {"content": "a", "reasoning": "r"}, "finish_reason": None}]}
    assert (piece_of(chunk).text, piece_of(chunk).reasoning) == ("a", "r")
    chunk["choices"][0]["delta"]["reasoning_content"] = "rc"
    assert piece_of(chunk).reasoning == "rc"
    usage_only = piece_of({"choices": [], "usage": {"prompt_tokens": 1, "completion_tokens": 2}})
    assert usage_only.text == "" and usage_only.usage["completion_tokens"] == 2


def test_a_refusal_becomes_the_error_litellm_would_raise() -> None:
    request = httpx.Request("POST", "http://x/v1/chat/completions")
    limited = httpx.Response(429, json={"error": {"message": "slow down"}}, headers={"Retry-After": "7"},
                             request=request)
    error = status_error(limited, "m")
    assert isinstance(error, litellm.RateLimitError) and retry_after_seconds(error) == 7
    typed = translate_exception(error, "m@OpenAI")
    assert isinstance(typed, RateLimitError) and "slow down" in str(typed)
    too_long = httpx.Response(400, json={"error": {"message": "maximum context length is 8192"}}, request=request)
    assert isinstance(status_error(too_long, "m"), litellm.ContextWindowExceededError)
    gateway = httpx.Response(502, text="<html>bad gateway</html>", request=request)
    assert isinstance(status_error(gateway, "m"), litellm.InternalServerError)


def test_options_are_mapped_as_litellm_maps_them() -> None:
    assert wire_options("gpt-4o-mini", {"max_tokens": 9, "temperature": 0.2}) == {"max_tokens": 9, "temperature": 0.2}
    assert wire_options("o3-mini", {"max_tokens": 9}) == {"max_completion_tokens": 9}
    with pytest.raises(litellm.UnsupportedParamsError):
        wire_options("o3-mini", {"temperature": 0.2})
    with pytest.raises(litellm.UnsupportedParamsError):  # a refusal is not remembered as an answer
        wire_options("o3-mini", {"temperature": 0.2})


def test_remembered_mappings_are_fresh_dicts_and_unhashable_options_still_map() -> None:
    first = wire_options("gpt-4o-mini", {"temperature": 0.3, "max_tokens": 5})
    first["temperature"] = 99
    assert wire_options("gpt-4o-mini", {"max_tokens": 5, "temperature": 0.3}) == {"max_tokens": 5, "temperature": 0.3}
    assert wire_options("gpt-4o-mini", {"stop": ["\n\n"], "max_tokens": 5}) == {"stop": ["\n\n"], "max_tokens": 5}


def test_only_the_openai_route_is_read_directly() -> None:
    assert speaks_openai({"model": "openai/gpt-4o-mini"})
    assert not speaks_openai({"model": "ollama_chat/llama3"})
    assert not speaks_openai({"model": "anthropic/claude-3-5-haiku"})


async def test_the_environments_proxy_carries_direct_streams_and_is_looked_up_once(
        stub_llm: StubLLMServer, monkeypatch) -> None:
    """HTTP_PROXY applies to the direct transport as it does to LiteLLM's httpx. It is read once
    per origin: aiohttp's ``trust_env`` reads it (and netrc) in the default thread pool on every
    request, two thread hops in each answer's time to first token."""
    from rag.llm import sse_stream

    for name in ("HTTP_PROXY", "http_proxy"):
        monkeypatch.setenv(name, stub_llm.url)  # the stub answers the proxied request itself
    for name in ("NO_PROXY", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
    lookups = []
    real_lookup = sse_stream._route_from_env
    monkeypatch.setattr(sse_stream, "_route_from_env", lambda url: lookups.append(url) or real_lookup(url))
    stub_llm.configure(reply="through the proxy")
    router = router_of({"model": "openai/stub-chat", "api_base": "http://llm.invalid/v1", "api_key": "k"})
    try:
        for _ in range(2):
            text, *_ = await read_all(await router.astream_chat("m", MESSAGES, {}))
            assert text == "through the proxy"
    finally:
        await router.aclose_streams()
    assert len(stub_llm.chat_requests) == 2 and len(lookups) == 1


def test_no_proxy_and_netrc_shape_the_route(monkeypatch, tmp_path) -> None:
    from yarl import URL

    from rag.llm.sse_stream import _route_from_env

    netrc = tmp_path / "netrc"
    netrc.write_text("machine llm.example login user password secret\n")
    netrc.chmod(0o600)
    monkeypatch.setenv("NETRC", str(netrc))
    for name in ("HTTPS_PROXY", "https_proxy"):
        monkeypatch.setenv(name, "http://proxy.example:3128")
    for name in ("NO_PROXY", "no_proxy"):
        monkeypatch.setenv(name, "direct.example")
    proxied = _route_from_env(URL("https://llm.example/v1/chat/completions"))
    assert proxied.proxy == URL("http://proxy.example:3128") and proxied.auth.login == "user"
    direct = _route_from_env(URL("https://direct.example/v1/chat/completions"))
    assert direct.proxy is None and direct.auth is None


def spy_on(router, method: str, calls: list, monkeypatch):
    """``router`` with ``method`` (called with keywords) noting each call's keywords in ``calls``."""
    real = getattr(router, method)

    async def noted(**kwargs):
        calls.append(kwargs)
        return await real(**kwargs)
    monkeypatch.setattr(router, method, noted)
    return router


async def calls_of_one_answer(router, calls: list) -> tuple[str, int]:
    """The streamed answer of ``router``'s group ``m`` and how many ``calls`` it made."""
    calls.clear()
    try:
        text, *_ = await read_all(await router.astream_chat("m", MESSAGES, {}))
    finally:
        await router.aclose_streams()
    return text, len(calls)


def rpm_limited_router(stub_llm: StubLLMServer):
    return router_of({"model": "openai/stub-chat", "api_base": stub_llm.api_base, "api_key": "k", "rpm": 100},
                     rate_limited=True)


async def test_the_only_deployment_of_a_shuffled_group_is_called_without_the_routers_selection(
        stub_llm: StubLLMServer, monkeypatch) -> None:
    """Nothing to choose: the Router's selection (0.5 ms of the loop per answer) is skipped; with
    two deployments, or rpm limits (usage-based routing), it runs."""
    stub_llm.configure(reply="picked")
    selections: list = []
    pair = router_of(*({"model": "openai/stub-chat", "api_base": stub_llm.api_base, "api_key": key}
                       for key in ("a", "b")))
    for router, selected in ((router_to(stub_llm, "openai/stub-chat"), 0), (rpm_limited_router(stub_llm), 1),
                             (pair, 1)):
        spy_on(router, "async_get_available_deployment", selections, monkeypatch)
        assert await calls_of_one_answer(router, selections) == ("picked", selected)


async def test_usage_counters_are_kept_only_for_a_router_that_enforces_limits(
        stub_llm: StubLLMServer, monkeypatch) -> None:
    """The per-minute tpm/rpm counters feed the usage-based strategy's rpm limits; a router
    without limits does not pay for them on every answer."""
    stub_llm.configure(reply="counted")
    counted: list = []
    for router, expected in ((router_to(stub_llm, "openai/stub-chat"), 0), (rpm_limited_router(stub_llm), 1)):
        spy_on(router, "_increment_deployment_usage", counted, monkeypatch)
        assert await calls_of_one_answer(router, counted) == ("counted", expected)


@pytest.mark.parametrize("api_key", [None, "k"])
async def test_netrc_authenticates_only_a_deployment_without_a_key(stub_llm: StubLLMServer, monkeypatch, tmp_path,
                                                                   api_key: str | None) -> None:
    """As with aiohttp's ``trust_env``, a netrc entry for the provider's host is sent when no key
    is; with a key, only the key (aiohttp would refuse the two together)."""
    netrc = tmp_path / "netrc"
    netrc.write_text("machine 127.0.0.1 login user password secret\n")
    netrc.chmod(0o600)
    monkeypatch.setenv("NETRC", str(netrc))
    for name in ("OPENAI_API_KEY", "HTTP_PROXY", "http_proxy"):
        monkeypatch.delenv(name, raising=False)
    stub_llm.configure(reply="authenticated")
    router = router_of({"model": "openai/stub-chat", "api_base": stub_llm.api_base,
                        **({"api_key": api_key} if api_key else {})})
    try:
        text, *_ = await read_all(await router.astream_chat("m", MESSAGES, {}))
    finally:
        await router.aclose_streams()
    sent = stub_llm.chat_requests[-1].headers["authorization"]
    assert text == "authenticated"
    assert sent == ("Bearer k" if api_key else "Basic " + base64.b64encode(b"user:secret").decode())
