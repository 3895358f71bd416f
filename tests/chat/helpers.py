"""Shared helpers of the chat tests: seeding a dataset, reading SSE, peeking at what was stored.

Everything talks to a ``live_server`` (real hypercorn in a thread); database checks go
through the server's own ``parts.db`` so they see exactly what the server wrote.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

import httpx
from ragflow_sdk import RAGFlow

from api.db.models import Dialog, Message, Usage

FACTS = [
    "The Eiffel Tower is in Paris and was completed in 1889.",
    "Mount Fuji is the highest mountain in Japan at 3,776 metres.",
    "The Amazon river flows through Brazil, Peru and Colombia.",
]


def sdk(server: Any, tenant: str = "acme") -> RAGFlow:
    return RAGFlow(api_key=server.key(tenant), base_url=server.url)


def seed_dataset(client: RAGFlow, name: str = "facts", facts: list[str] = FACTS) -> Any:
    """A dataset holding one document with one chunk per fact (embedded by the builtin MiniLM)."""
    dataset = client.create_dataset(name=name)
    document = dataset.upload_documents([{"display_name": f"{name}.txt", "blob": b"placeholder"}])[0]
    for fact in facts:
        document.add_chunk(content=fact)
    return dataset


def create_chat(server: Any, key: str, **fields: Any) -> dict[str, Any]:
    """POST /api/v1/chats with raw fields; returns the envelope's data (asserts success)."""
    reply = api(server, key, "POST", "/api/v1/chats", fields)
    assert reply["code"] == 0, reply
    return reply["data"]


def api(server: Any, key: str, method: str, path: str, body: Any = None, params: Any = None) -> dict[str, Any]:
    response = httpx.request(method, server.url + path, json=body, params=params, timeout=30,
                             headers={"Authorization": f"Bearer {key}"})
    return response.json()


@dataclass
class Event:
    at: float  # time.monotonic() when the line arrived
    payload: dict[str, Any]


def stream_completion(server: Any, key: str, chat_id: str, body: dict[str, Any], *, stop_after: int | None = None,
                      timeout: float = 30) -> tuple[list[Event], float]:
    """SSE events of one streamed completion, and the monotonic time when the client closed.

    ``stop_after``: close the connection after that many events (a client going away).
    """
    events: list[Event] = []
    with httpx.Client(timeout=timeout) as client, client.stream(
        "POST", f"{server.url}/api/v1/chats/{chat_id}/completions", json={"stream": True, **body},
        headers={"Authorization": f"Bearer {key}"},
    ) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        for line in response.iter_lines():
            if line.startswith("data:"):
                events.append(Event(time.monotonic(), json.loads(line[len("data:"):])))
                if stop_after is not None and len(events) >= stop_after:
                    break
    return events, time.monotonic()


def answers(events: list[Event]) -> list[dict[str, Any]]:
    """The ``data`` of the answer events (code 0, not the closing ``true``)."""
    return [e.payload["data"] for e in events if e.payload["code"] == 0 and e.payload["data"] is not True]


def session_messages(server: Any, session_id: str) -> list[Message]:
    return server.parts.db.call(
        lambda: list(Message.select().where(Message.conversation_id == session_id).order_by(Message.seq)))


def usage_rows(server: Any, dialog_id: str) -> list[Usage]:
    return server.parts.db.call(
        lambda: list(Usage.select().where(Usage.dialog_id == dialog_id).order_by(Usage.create_time)))


def dialog_row(server: Any, chat_id: str) -> Dialog:
    return server.parts.db.call(lambda: Dialog.get_by_id(chat_id))


def wait_for(predicate: Callable[[], Any], timeout: float = 5.0, interval: float = 0.02) -> Any:
    """Poll until ``predicate()`` is truthy; its value, or None after ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    return None


def run_on_server(server: Any, coroutine: Coroutine[Any, Any, Any], timeout: float = 30) -> Any:
    """Run a coroutine on the live server's loop (where its executor and model clients live)."""
    return asyncio.run_coroutine_threadsafe(coroutine, server.loop).result(timeout)
