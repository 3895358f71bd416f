"""/ws through a real WebSocket client (aiohttp) against the live server."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import aiohttp
import pytest

from api.db.models import Conversation
from api.db.services import tenant_service
from rag.prompts import tone_instruction
from tests.gateway.helpers import stored_messages, system_sent

TERMINAL = ("llm_response", "llm_error")


def ws_url(server: Any) -> str:
    return server.url.replace("http://", "ws://") + "/ws"


def request(message: str, conversation_id: str | None = None, **metadata: Any) -> dict[str, Any]:
    data: dict[str, Any] = {"conversation_id": conversation_id, "message": message}
    if metadata:
        data["metadata"] = metadata
    return {"event": "llm_request", "data": data}


async def frames_until(socket: aiohttp.ClientWebSocketResponse, terminals: int, within: float = 20
                       ) -> list[tuple[float, dict[str, Any]]]:
    """Frames (with arrival time) until ``terminals`` answers ended in llm_response / llm_error."""
    frames: list[tuple[float, dict[str, Any]]] = []
    async with asyncio.timeout(within):
        while sum(frame["event"] in TERMINAL for _, frame in frames) < terminals:
            frames.append((time.monotonic(), await socket.receive_json()))
    return frames


async def test_request_answered_with_deltas_then_response(live_server, stub_llm) -> None:
    stub_llm.configure(reply="alpha beta gamma delta", tokens_per_second=100)
    async with aiohttp.ClientSession() as session:
        async with session.ws_connect(ws_url(live_server),
                                      headers={"Authorization": f"Bearer {live_server.key()}"}) as socket:
            await socket.send_json(request("hi", tone="casual", system_prompt="You are Ada.", max_tokens=33))
            frames = [frame for _, frame in await frames_until(socket, 1)]
    *deltas, last = frames
    assert deltas and all(frame["event"] == "llm_delta" for frame in deltas)
    assert last["event"] == "llm_response"
    answer = last["data"]
    assert answer["success"] is True and answer["response"] == "alpha beta gamma delta"
    assert len(answer["conversation_id"]) == 32 and len(answer["message_id"]) == 32
    assert {frame["data"]["conversation_id"] for frame in deltas} == {answer["conversation_id"]}
    assert "".join(frame["data"]["delta"] for frame in deltas) == answer["response"]
    sent = stub_llm.chat_requests[-1]
    assert system_sent(sent).startswith("You are Ada.") and tone_instruction("casual") in system_sent(sent)
    assert sent.body["max_tokens"] == 33
    assert [m[:2] for m in stored_messages(live_server, answer["conversation_id"])] == [
        ("user", "hi"), ("assistant", "alpha beta gamma delta")]


async def test_token_query_parameter_authenticates(live_server, stub_llm) -> None:
    stub_llm.configure(reply="ok")
    async with aiohttp.ClientSession() as session:
        async with session.ws_connect(ws_url(live_server), params={"token": live_server.key()}) as socket:
            await socket.send_json(request("hi"))
            frames = await frames_until(socket, 1)
    assert frames[-1][1]["event"] == "llm_response" and frames[-1][1]["data"]["response"] == "ok"


@pytest.mark.parametrize("how", ["none", "header", "query"])
async def test_bad_or_missing_key_is_refused_with_401(live_server, how: str) -> None:
    headers = {"Authorization": "Bearer ragline-wrong"} if how == "header" else {}
    params = {"token": "ragline-wrong"} if how == "query" else {}
    async with aiohttp.ClientSession() as session:
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await session.ws_connect(ws_url(live_server), headers=headers, params=params)
    assert refused.value.status == 401


async def test_concurrent_requests_on_one_socket_each_under_its_conversation(live_server, stub_llm) -> None:
    delay = 2.0
    stub_llm.configure(reply="one two three four five six", first_token_delay=delay, tokens_per_second=20)
    async with aiohttp.ClientSession() as session:
        async with session.ws_connect(ws_url(live_server), params={"token": live_server.key()}) as socket:
            started = time.monotonic()
            for question in ("first", "second", "third"):
                await socket.send_json(request(question))
            frames = await frames_until(socket, 3)
            elapsed = time.monotonic() - started
    answers = [frame["data"] for _, frame in frames if frame["event"] == "llm_response"]
    assert len(answers) == 3 and len({a["conversation_id"] for a in answers}) == 3
    # one model delay plus pacing, not three of them: the answers ran side by side
    assert elapsed < 2 * delay + 1.5, elapsed
    owners = [frame["data"]["conversation_id"] for _, frame in frames if frame["event"] == "llm_delta"]
    switches = sum(a != b for a, b in zip(owners, owners[1:], strict=False))
    assert switches >= 2, owners  # deltas of different answers interleave
    for answer in answers:
        pieces = [f["data"]["delta"] for _, f in frames
                  if f["event"] == "llm_delta" and f["data"]["conversation_id"] == answer["conversation_id"]]
        assert "".join(pieces) == answer["response"] == "one two three four five six"


async def test_malformed_frames_get_llm_error_and_the_socket_stays_open(live_server, stub_llm) -> None:
    stub_llm.configure(reply="still here")
    bad_frames = ["not json", json.dumps([1, 2]), json.dumps({"event": "llm_request"}),
                  json.dumps({"event": "subscribe", "data": {}}), json.dumps(request("")),
                  json.dumps(request("x" * 100_001)), json.dumps(request("hi", tone="grumpy"))]
    async with aiohttp.ClientSession() as session:
        async with session.ws_connect(ws_url(live_server), params={"token": live_server.key()}) as socket:
            for raw in bad_frames:
                await socket.send_str(raw)
                frame = await asyncio.wait_for(socket.receive_json(), 10)
                assert frame["event"] == "llm_error", (raw, frame)
                assert set(frame["data"]) == {"error", "conversation_id", "timestamp"}
                assert frame["data"]["error"] and "success" not in frame["data"]
            assert "grumpy" in frame["data"]["error"] and "professional" in frame["data"]["error"]
            await socket.send_json(request("hi"))
            frames = await frames_until(socket, 1)
    assert frames[-1][1]["event"] == "llm_response" and frames[-1][1]["data"]["response"] == "still here"


def user_turns(request: Any) -> list[str]:
    return [m["content"] for m in request.body["messages"] if m["role"] == "user"]


def conversation_rows(server: Any, tenant_key: str, client_id: str) -> list[Conversation]:
    tenant_id = server.parts.db.call(tenant_service.tenant_for_key, tenant_key)
    return server.parts.db.call(lambda: list(Conversation.select().where(
        (Conversation.tenant_id == tenant_id) & (Conversation.client_id == client_id))))


async def test_a_client_named_conversation_starts_then_continues(live_server, stub_llm) -> None:
    key = live_server.key()
    async with aiohttp.ClientSession() as session:
        async with session.ws_connect(ws_url(live_server), params={"token": key}) as socket:
            for message in ("first", "second"):
                await socket.send_json(request(message, "c1"))
                last = (await frames_until(socket, 1))[-1][1]
                assert last["event"] == "llm_response" and last["data"]["conversation_id"] == "c1"
    assert user_turns(stub_llm.chat_requests[-1]) == ["first", "second"]  # the history was kept
    [row] = conversation_rows(live_server, key, "c1")
    assert [m[:2] for m in stored_messages(live_server, row.id)][::2] == [("user", "first"), ("user", "second")]


async def test_the_same_client_id_under_another_tenant_is_another_conversation(live_server, stub_llm) -> None:
    ours, theirs = live_server.key("acme"), live_server.key("globex")
    async with aiohttp.ClientSession() as session:
        for key, message in ((theirs, "globex secret"), (ours, "hello")):
            async with session.ws_connect(ws_url(live_server), params={"token": key}) as socket:
                await socket.send_json(request(message, "c1"))
                assert (await frames_until(socket, 1))[-1][1]["event"] == "llm_response"
    assert user_turns(stub_llm.chat_requests[-1]) == ["hello"]  # nothing of globex's turn
    assert len(conversation_rows(live_server, ours, "c1")) == len(conversation_rows(live_server, theirs, "c1")) == 1


async def test_another_tenants_generated_id_never_reaches_its_history(live_server, stub_llm) -> None:
    async with aiohttp.ClientSession() as session:
        async with session.ws_connect(ws_url(live_server), params={"token": live_server.key("globex")}) as socket:
            await socket.send_json(request("secret"))
            foreign = (await frames_until(socket, 1))[-1][1]["data"]["conversation_id"]
        async with session.ws_connect(ws_url(live_server), params={"token": live_server.key()}) as socket:
            await socket.send_json(request("hi", foreign))
            frame = (await frames_until(socket, 1))[-1][1]
    assert frame["event"] == "llm_response" and frame["data"]["conversation_id"] == foreign
    assert user_turns(stub_llm.chat_requests[-1]) == ["hi"]


async def test_two_new_client_ids_in_flight_on_one_socket_are_both_answered(live_server, stub_llm) -> None:
    stub_llm.configure(reply="ok", first_token_delay=0.3)
    async with aiohttp.ClientSession() as session:
        async with session.ws_connect(ws_url(live_server), params={"token": live_server.key()}) as socket:
            await socket.send_json(request("one", "c1"))
            await socket.send_json(request("two", "c2"))
            frames = [frame for _, frame in await frames_until(socket, 2)]
    answered = {f["data"]["conversation_id"] for f in frames if f["event"] == "llm_response"}
    assert answered == {"c1", "c2"}


async def test_json_nested_past_the_recursion_limit_keeps_the_socket(live_server, stub_llm) -> None:
    async with aiohttp.ClientSession() as session:
        async with session.ws_connect(ws_url(live_server), params={"token": live_server.key()}) as socket:
            await socket.send_str("[" * 100_000 + "]" * 100_000)
            error = await socket.receive_json()
            assert error["event"] == "llm_error" and "Malformed" in error["data"]["error"]
            await socket.send_json(request("still there?"))
            assert (await frames_until(socket, 1))[-1][1]["event"] == "llm_response"


async def test_provider_failures_are_llm_errors_never_hangs(live_server, stub_llm) -> None:
    async with aiohttp.ClientSession() as session:
        async with session.ws_connect(ws_url(live_server), params={"token": live_server.key()}) as socket:
            stub_llm.configure(fail_500=10)
            await socket.send_json(request("hi"))
            failed = (await frames_until(socket, 1))[-1][1]
            stub_llm.reset()
            stub_llm.configure(reply="a b c d e f g h", cut_after=3, tokens_per_second=50)
            await socket.send_json(request("again", failed["data"]["conversation_id"]))
            cut = (await frames_until(socket, 1))[-1][1]
            stub_llm.reset()
            stub_llm.configure(reply="a b c d e f g h", stall_after=2)
            started = time.monotonic()
            await socket.send_json(request("stall"))
            stalled = (await frames_until(socket, 1, within=live_server.settings.llm_timeout + 5))[-1][1]
            stall_seconds = time.monotonic() - started
    for frame in (failed, cut, stalled):
        assert frame["event"] == "llm_error", frame
        assert set(frame["data"]) == {"error", "conversation_id", "timestamp"} and frame["data"]["error"]
        assert len(frame["data"]["conversation_id"]) == 32
    assert cut["data"]["conversation_id"] == failed["data"]["conversation_id"]
    assert stall_seconds < live_server.settings.llm_timeout + 3


async def test_closing_the_socket_mid_answer_stores_it_as_interrupted(live_server, stub_llm) -> None:
    stub_llm.configure(reply="a b c d e f g h i j k l m n o p", tokens_per_second=10)
    async with aiohttp.ClientSession() as session:
        async with session.ws_connect(ws_url(live_server), params={"token": live_server.key()}) as socket:
            await socket.send_json(request("long one"))
            first = await asyncio.wait_for(socket.receive_json(), 10)
            assert first["event"] == "llm_delta"
    conversation_id = first["data"]["conversation_id"]
    async with asyncio.timeout(10):
        while len(stored := stored_messages(live_server, conversation_id)) < 2:  # noqa: ASYNC110 - another thread writes
            await asyncio.sleep(0.05)
    assert stored[1][0] == "assistant" and stored[1][2] == "interrupted"
    assert stored[1][1].startswith("a ") and stored[1][1] != "a b c d e f g h i j k l m n o p"


async def test_refusal_carries_the_error_envelope(client) -> None:
    """What a client sees for a bad key: the HTTP 401 handshake answer with code 109 in its body."""
    from quart.testing import WebsocketResponseError

    with pytest.raises(WebsocketResponseError) as refused:
        async with client.websocket("/ws", headers={"Authorization": "Bearer ragline-wrong"}) as socket:
            await socket.receive()
    assert refused.value.response.status_code == 401
    body = await refused.value.response.get_json()
    assert body["code"] == 109 and body["message"]


async def test_an_unknown_socket_path_is_refused_not_a_server_error(live_server) -> None:
    import aiohttp

    async with aiohttp.ClientSession() as session:
        for headers in ({"Authorization": f"Bearer {live_server.key()}"}, {}):
            try:
                async with session.ws_connect(f"{live_server.url.replace('http', 'ws', 1)}/no-such-socket",
                                              headers=headers):
                    raise AssertionError("the handshake was accepted")
            except aiohttp.WSServerHandshakeError as refused:
                assert refused.status == 404
