"""Helpers of the gateway tests: HTTP calls, SSE parsing, a dataset of facts, DB peeks."""

from __future__ import annotations

import json
from typing import Any

import httpx

from api.db.models import Message

FACTS = [
    "The Eiffel Tower is in Paris and was completed in 1889.",
    "Mount Fuji is the highest mountain in Japan at 3,776 metres.",
]


def headers(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def post(server: Any, path: str, body: Any, key: str | None = None, timeout: float = 30) -> httpx.Response:
    return httpx.post(server.url + path, json=body, headers=headers(key or server.key()), timeout=timeout)


def sse_events(text: str) -> list[tuple[str, dict[str, Any]]]:
    """``(event name, data)`` per SSE block; the name is "message" when the block names none.
    A plain JSON body (an error answered before streaming) is one event named "body"."""
    if text.lstrip().startswith("{"):
        return [("body", json.loads(text))]
    events = []
    for block in text.split("\n\n"):
        if not block.strip():
            continue
        name, data = "message", ""
        for line in block.splitlines():
            if line.startswith("event:"):
                name = line.removeprefix("event:").strip()
            elif line.startswith("data:"):
                data += line.removeprefix("data:").strip()
        events.append((name, json.loads(data)))
    return events


def stream(server: Any, body: dict[str, Any], key: str | None = None, timeout: float = 30
           ) -> tuple[httpx.Response, list[tuple[str, dict[str, Any]]]]:
    with httpx.stream("POST", server.url + "/api/v1/llm/stream", json=body, headers=headers(key or server.key()),
                      timeout=timeout) as response:
        text = "".join(response.iter_text())
    return response, sse_events(text)


def seed_facts(server: Any, key: str, name: str = "facts") -> str:
    """A dataset whose one document holds one chunk per fact (embedded on add); returns its id."""
    with httpx.Client(base_url=server.url, headers=headers(key), timeout=60) as client:
        def call(method: str, path: str, **kwargs: Any) -> Any:
            body = client.request(method, path, **kwargs).json()
            assert body["code"] == 0, body
            return body["data"]

        dataset = call("POST", "/api/v1/datasets", json={"name": name})
        files = {"file": ("facts.txt", b"placeholder", "text/plain")}
        document = call("POST", f"/api/v1/datasets/{dataset['id']}/documents", files=files)[0]
        for fact in FACTS:
            call("POST", f"/api/v1/datasets/{dataset['id']}/documents/{document['id']}/chunks", json={"content": fact})
    return dataset["id"]


def stored_messages(server: Any, conversation_id: str) -> list[tuple[str, str, str]]:
    """``(role, content, status)`` of each stored turn, in order, as the server wrote them."""
    def read() -> list[tuple[str, str, str]]:
        rows = Message.select().where(Message.conversation_id == conversation_id).order_by(Message.seq)
        return [(m.role, m.content, m.status) for m in rows]

    return server.parts.db.call(read)


def system_sent(request: Any) -> str:
    return next((m["content"] for m in request.body["messages"] if m["role"] == "system"), "")


def turns_sent(request: Any) -> list[tuple[str, str]]:
    return [(m["role"], m["content"]) for m in request.body["messages"] if m["role"] != "system"]
