"""No input makes the server answer 500 or log a traceback, on any route.

Hypothesis sends every HTTP route of the app (found from its URL map, so a new route is covered
the day it is added) JSON bodies and query strings built from the API's own field names with
hostile values: integers past 64 bits, NaN, deep lists, wrong types, odd unicode. Path
parameters are real ids of the caller's objects or junk. The app runs in a thread with a loop
of its own, so Hypothesis drives it from a plain test function.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
from collections.abc import Iterator
from concurrent.futures import Future
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from quart import Quart

from api.app import create_app
from api.apps import BLUEPRINTS
from api.components import build_components
from api.db.services import tenant_service
from api.settings import load_settings
from tests.conftest import BUILTIN_EMBEDDING, free_port

FIELD_NAMES = [
    "name", "ids", "id", "delete_all", "document_ids", "chunk_ids", "dataset_ids", "question", "page",
    "page_size", "orderby", "desc", "keywords", "similarity_threshold", "vector_similarity_weight", "top_k",
    "top_n", "content", "important_keywords", "questions", "tag_kwd", "available", "enabled",
    "metadata_condition", "meta_fields", "parser_config", "chunk_method", "embedding_model", "llm", "prompt",
    "llm_id", "llm_setting", "prompt_config", "messages", "stream", "session_id", "conversation_id",
    "user_message", "tone", "model", "max_tokens", "temperature", "create_time_from", "create_time_to",
    "from", "to", "group_by", "auto_metadata_config", "updates", "deletes", "selector", "logic",
    "conditions", "extra_body", "reference", "rerank_id", "user_id", "system_prompt", "knowledge_base_ids",
]
NUMERIC_FIELDS = ["page", "page_size", "top_k", "top_n", "max_tokens", "create_time_from", "create_time_to",
                  "from", "to", "similarity_threshold", "temperature"]
HUGE = [2**63, 2**64 + 1, -(2**63) - 1, 10**30, -(10**40)]

leaves = (st.none() | st.booleans() | st.integers() | st.sampled_from(HUGE)
          | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=40))
json_values = st.recursive(
    leaves,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=12,
)
bodies = st.dictionaries(st.sampled_from(FIELD_NAMES) | st.text(max_size=12), json_values, max_size=6)
query_values = st.sampled_from([str(n) for n in HUGE]) | st.integers().map(str) | st.text(max_size=20)
queries = st.dictionaries(st.sampled_from(FIELD_NAMES), query_values, max_size=4)


class AppInThread:
    """A Ragline app (lifespan started) on an event loop of its own thread."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="hostile-app", daemon=True)
        self.thread.start()
        self.context = app.test_app()
        self.test_app = self.run(self.context.__aenter__())
        self.client = self.test_app.test_client()

    def run(self, coroutine: Any) -> Any:
        future: Future = asyncio.run_coroutine_threadsafe(coroutine, self.loop)
        return future.result(timeout=120)

    def close(self) -> None:
        self.run(self.context.__aexit__(None, None, None))
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(30)


class TracebackRecorder(logging.Handler):
    def __init__(self) -> None:
        super().__init__(level=logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.exc_info:
            self.records.append(record)


@pytest.fixture(scope="module")
def hosted(tmp_path_factory, builtin_embedding) -> Iterator[tuple[AppInThread, dict[str, str], dict[str, str]]]:
    data_dir = tmp_path_factory.mktemp("hostile")
    config = load_settings(environ={}, data_dir=data_dir, port=free_port(), search_processes=0,
                           embed_processes=0, ingest_workers=0)
    parts = build_components(config)
    parts.registry.register(BUILTIN_EMBEDDING, builtin_embedding, kind="embedding")
    hosted_app = AppInThread(create_app(config, parts))
    key = parts.db.call(tenant_service.create_key_for, "hostile").key
    auth = {"Authorization": f"Bearer {key}"}
    ids = hosted_app.run(_seed(hosted_app.client, auth))
    yield hosted_app, auth, ids
    hosted_app.close()
    parts.close()


async def _seed(client: Any, auth: dict[str, str]) -> dict[str, str]:
    """One object of each kind, so routes are also tried on ids that exist."""
    dataset = (await (await client.post("/api/v1/datasets", headers=auth, json={"name": "seed"})).get_json())["data"]
    upload = await client.post(f"/api/v1/datasets/{dataset['id']}/documents", headers=auth,
                               files={"file": _file("seed.txt", b"Refunds are paid within 14 days.")})
    document = (await upload.get_json())["data"][0]
    chunk = await client.post(f"/api/v1/datasets/{dataset['id']}/documents/{document['id']}/chunks", headers=auth,
                              json={"content": "Refunds are paid within 14 days."})
    chat = (await (await client.post("/api/v1/chats", headers=auth, json={"name": "seed"})).get_json())["data"]
    session = await client.post(f"/api/v1/chats/{chat['id']}/sessions", headers=auth, json={"name": "seed"})
    return {"dataset_id": dataset["id"], "doc_id": document["id"], "document_id": document["id"],
            "chunk_id": (await chunk.get_json())["data"]["chunk"]["id"], "chat_id": chat["id"],
            "session_id": (await session.get_json())["data"]["id"]}


def _file(name: str, data: bytes) -> Any:
    import io

    from werkzeug.datastructures import FileStorage

    return FileStorage(io.BytesIO(data), filename=name)


def _http_routes() -> list[tuple[str, str]]:
    """Every (rule, method) the app's blueprints serve, read without building an app."""
    app = Quart("routes")
    for blueprint in BLUEPRINTS:
        app.register_blueprint(blueprint)
    routes = []
    for rule in app.url_map.iter_rules():
        if rule.websocket or rule.endpoint == "static":
            continue
        routes += [(rule.rule, method) for method in sorted(rule.methods - {"HEAD", "OPTIONS"})]
    return sorted(routes)


HTTP_ROUTES = _http_routes()


def _path(rule: str, ids: dict[str, str], junk: str, use_junk: bool) -> str:
    path = rule
    for name, value in ids.items():
        path = path.replace(f"<{name}>", junk if use_junk else value)
    while "<" in path:  # a parameter no seeded object fills
        start = path.index("<")
        path = path[:start] + (junk or "x") + path[path.index(">", start) + 1:]
    return path


@pytest.mark.parametrize(("rule", "method"), HTTP_ROUTES, ids=[f"{m} {r}" for r, m in HTTP_ROUTES])
def test_no_input_is_a_500_or_a_traceback(hosted, rule: str, method: str) -> None:
    hosted_app, auth, ids = hosted
    recorder = TracebackRecorder()
    logging.getLogger().addHandler(recorder)
    try:
        _fuzz(hosted_app, auth, ids, rule, method)
    finally:
        logging.getLogger().removeHandler(recorder)
    assert recorder.records == [], [record.getMessage() for record in recorder.records]


def _fuzz(hosted_app: AppInThread, auth: dict[str, str], ids: dict[str, str], rule: str, method: str) -> None:
    @settings(max_examples=12, deadline=None, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
    @given(body=bodies, query=queries, junk=st.text(alphabet="abcdef0123456789xyz-_.", max_size=40),
           use_junk=st.booleans())
    def one_request(body: dict, query: dict, junk: str, use_junk: bool) -> None:
        path = _path(rule, ids, junk, use_junk)
        payload = json.dumps(body, allow_nan=True)
        response = hosted_app.run(_send(hosted_app.client, method, path, auth, payload, query))
        assert response < 500, f"{method} {path} {payload[:300]} {query} -> {response}"

    for name in NUMERIC_FIELDS:  # the overflow class always, one field at a time, whatever Hypothesis draws
        one_request = example(body={name: 2**64}, query={name: str(10**25)}, junk="", use_junk=False)(one_request)
    one_request()


async def _send(client: Any, method: str, path: str, auth: dict[str, str], payload: str,
                query: dict[str, str]) -> int:
    response = await client.open(path, method=method, query_string=query, data=payload,
                                 headers={**auth, "Content-Type": "application/json"})
    await response.get_data()  # a streamed answer fails while it streams, not before
    return response.status_code


@pytest.mark.parametrize("raw", [b"\xff\xfe{\x00}\x00", b'{"name": "\xc3\x28"}', "\ufeff{}".encode(),
                                 b"[" * 100_000 + b"]" * 100_000],
                         ids=["utf16-bom", "invalid-utf8", "utf8-bom", "deep"])
@pytest.mark.parametrize("path", ["/api/v1/datasets", "/api/v1/chats", "/api/v1/retrieval",
                                  "/api/v1/llm/generate", "/v1/messages"])
def test_undecodable_bodies_are_client_errors(hosted, raw: bytes, path: str) -> None:
    hosted_app, auth, _ = hosted
    status = hosted_app.run(_send_raw(hosted_app.client, path, auth, raw))
    assert 200 <= status < 500


async def _send_raw(client: Any, path: str, auth: dict[str, str], raw: bytes) -> int:
    response = await client.post(path, data=raw, headers={**auth, "Content-Type": "application/json"})
    body = await response.get_json()
    assert body is None or body.get("code") != 0, body  # never taken for a valid request
    return response.status_code
