"""Serving both RAGFlow API lines: delete semantics, the remembered client line, and the
features Ragline does not serve."""

from __future__ import annotations

import pytest

from api.components import Components
from api.utils.compat import (
    DialectMemory,
    auth_line_of_route,
    dialect_of_body,
    dialect_of_query,
    ids_to_delete,
    parse_dialect_header,
)


@pytest.mark.parametrize(
    ("ids", "delete_all", "expected"),
    [
        (None, None, None),  # v0.22: null ids = everything in scope
        (["a"], None, ["a"]),
        ([], None, []),
        (None, True, None),  # v0.27: delete_all wins over ids
        (["a"], True, None),
        (None, False, []),  # v0.27: nothing named, nothing deleted
        ([], False, []),
        (["a", "b"], False, ["a", "b"]),
    ],
)
def test_ids_to_delete_follows_each_line(ids, delete_all, expected) -> None:
    assert ids_to_delete(ids, delete_all) == expected


@pytest.mark.parametrize(
    ("method", "path", "body", "expected"),
    [
        ("PATCH", "/api/v1/chats/abc", None, "0.27"),
        ("DELETE", "/api/v1/datasets", {"ids": None, "delete_all": False}, "0.27"),
        ("DELETE", "/api/v1/datasets", {"ids": ["a"]}, None),
        ("POST", "/api/v1/chats", {"name": "x", "icon": "", "dataset_ids": []}, "0.27"),
        ("PUT", "/api/v1/chats/abc", {"llm_setting": {"temperature": 0.1}}, "0.27"),
        ("POST", "/api/v1/chats", {"name": "x", "avatar": "", "llm": {}, "prompt": {}}, "0.22"),
        ("POST", "/api/v1/chats", {"name": "x", "dataset_ids": []}, None),
        ("POST", "/api/v1/chats/abc/completions", {"prompt": "x"}, None),  # not a chat body
        ("POST", "/api/v1/datasets", {"avatar": "x"}, None),
    ],
)
def test_request_signals_of_the_client_line(method, path, body, expected) -> None:
    assert dialect_of_body(method, path, body) == expected


@pytest.mark.parametrize(
    ("path", "params", "expected"),
    [
        ("/api/v1/chats", ["page", "keywords"], "0.27"),
        ("/api/v1/chats", ["owner_ids"], "0.27"),
        ("/api/v1/datasets", ["ids"], "0.27"),
        ("/api/v1/datasets/abc/documents", ["keywords", "page"], None),  # v0.22 has keywords there
        ("/api/v1/chats", ["page", "page_size", "name"], None),
        ("/api/v1/chats/abc", [], "0.27"),  # GET one chat by id: v0.27 only
        ("/api/v1/datasets/abc", [], "0.27"),
        ("/api/v1/chats/abc/sessions/def", [], "0.27"),
        ("/api/v1/datasets/a/documents/b/chunks/c", [], "0.27"),
        ("/api/v1/datasets/a/metadata/summary", [], "0.27"),
        ("/api/v1/datasets/a/documents/b", [], None),  # a download: both lines
        ("/api/v1/chats/abc/sessions", [], None),
    ],
)
def test_list_filters_only_v027_has_signal_it(path, params, expected) -> None:
    assert dialect_of_query("GET", path, params) == expected


def test_routes_only_v027_has_signal_it() -> None:
    assert dialect_of_query("POST", "/api/v1/datasets/a/documents/parse", []) == "0.27"
    assert dialect_of_query("POST", "/api/v1/datasets/a/documents/stop", []) == "0.27"
    assert dialect_of_query("POST", "/api/v1/openai/c/chat/completions", []) == "0.27"
    assert dialect_of_query("POST", "/api/v1/datasets/a/chunks", []) is None
    assert dialect_of_query("POST", "/api/v1/chats", ["ids"]) is None


def test_header_names_the_line() -> None:
    assert parse_dialect_header("0.27.3") == "0.27"
    assert parse_dialect_header("v0.22.1") == "0.22"
    assert parse_dialect_header("1.0") is None
    assert parse_dialect_header(None) is None


def test_memory_is_per_tenant_and_bounded() -> None:
    memory = DialectMemory(max_tenants=2)
    memory.remember("t1", "0.27")
    assert memory.of("t1") == "0.27" and memory.of("t2") == "0.22" and memory.of(None) == "0.22"
    memory.remember("t2", "0.27")
    memory.remember("t3", "0.27")
    assert memory.of("t1") == "0.22"  # the oldest was forgotten, not the newest


async def test_a_tenants_line_is_remembered_from_its_requests(client, auth, make_key, parts: Components) -> None:
    tenant = await parts.tenant_resolver.resolve(auth["Authorization"].split()[1])
    assert parts.dialects.of(tenant) == "0.22"
    await client.delete("/api/v1/datasets", headers=auth, json={"ids": [], "delete_all": False})
    assert parts.dialects.of(tenant) == "0.27"
    other = await parts.tenant_resolver.resolve(make_key("other"))
    assert parts.dialects.of(other) == "0.22"  # another tenant's client is not assumed to match
    await client.get("/api/v1/datasets", headers={**auth, "X-RAGFlow-API": "0.22"})
    assert parts.dialects.of(tenant) == "0.22"


async def test_a_tenants_line_survives_a_restart(client, auth, parts: Components) -> None:
    tenant = await parts.tenant_resolver.resolve(auth["Authorization"].split()[1])
    await client.delete("/api/v1/chats", headers=auth, json={"ids": [], "delete_all": False})
    parts.dialects = DialectMemory()  # what a new process starts with
    listed = await (await client.get("/api/v1/chats", headers=auth)).get_json()
    assert listed["data"] == {"chats": [], "total": 0}  # the v0.27 shape, from the tenant's row
    assert parts.dialects.known(tenant) == "0.27"


@pytest.mark.parametrize(
    ("method", "path", "feature"),
    [
        ("GET", "/api/v1/agents", "agents"),
        ("POST", "/api/v1/agents/abc/sessions", "agents"),
        ("POST", "/api/v1/memories", "memories"),
        ("GET", "/api/v1/messages/search", "memory messages"),
        ("POST", "/api/v1/agents_openai/abc/chat/completions", "agent completions"),
    ],
)
async def test_unserved_ragflow_features_say_so_in_the_envelope(client, auth, method, path, feature) -> None:
    response = await client.open(path, method=method, headers=auth, json={})
    assert response.status_code == 200 and response.content_type.startswith("application/json")
    body = await response.get_json()
    assert body["code"] == 404
    assert f"Not supported by Ragline: {feature}." in body["message"]


async def test_an_unknown_route_elsewhere_stays_a_plain_404(client, auth) -> None:
    response = await client.get("/api/v1/nothing-here", headers=auth)
    assert response.status_code == 404
    assert "not supported" not in (await response.get_json())["message"].lower()


@pytest.mark.parametrize("path", ["/api/v1/datasets", "/api/v1/chats", "/api/v1/retrieval"])
async def test_json_nested_past_the_recursion_limit_is_an_argument_error(client, auth, path) -> None:
    deep = "[" * 100_000 + "]" * 100_000
    response = await client.post(path, headers={**auth, "Content-Type": "application/json"}, data=deep)
    assert response.status_code == 200
    assert (await response.get_json())["code"] == 101


async def test_deep_json_on_a_dialect_signalling_delete_is_not_a_500(client, auth) -> None:
    deep = '{"ids": ' + "[" * 100_000 + "]" * 100_000 + "}"
    response = await client.delete("/api/v1/datasets", headers={**auth, "Content-Type": "application/json"},
                                   data=deep)
    assert response.status_code == 200
    assert (await response.get_json())["code"] == 101


async def test_a_wrong_key_answers_in_the_line_this_address_last_showed(client, auth) -> None:
    wrong = {"Authorization": "Bearer ragline-wrong"}
    first = await (await client.get("/api/v1/datasets", headers=wrong)).get_json()
    assert first["code"] == 109 and first["message"] == "Authentication error: API key is invalid!"
    await client.patch("/api/v1/chats/" + "0" * 32, headers=auth, json={})  # a v0.27 client here
    later = await (await client.get("/api/v1/datasets", headers=wrong)).get_json()
    assert later == {"code": 401, "message": "<Unauthorized '401: Unauthorized'>"}
    gateway = await client.post("/api/v1/llm/generate", headers=wrong, json={"user_message": "hi"})
    assert gateway.status_code == 401 and (await gateway.get_json())["code"] == 109  # not a RAGFlow route


async def test_the_address_follows_the_tenant_that_last_spoke_from_it(client, auth, make_key) -> None:
    wrong = {"Authorization": "Bearer ragline-wrong"}
    await client.delete("/api/v1/chats", headers=auth, json={"ids": [], "delete_all": False})  # acme: v0.27
    assert (await (await client.get("/api/v1/datasets", headers=wrong)).get_json())["code"] == 401
    other = {"Authorization": f"Bearer {make_key('fresh')}"}  # a tenant never seen: v0.22
    await client.get("/api/v1/datasets", headers=other)
    assert (await (await client.get("/api/v1/datasets", headers=wrong)).get_json())["code"] == 109
    await client.get("/api/v1/datasets", headers=auth)  # acme again, no signal: its remembered v0.27
    assert (await (await client.get("/api/v1/datasets", headers=wrong)).get_json())["code"] == 401


@pytest.mark.parametrize(("method", "path", "expected"), [
    ("GET", "/api/v1/datasets/a/metadata/config", "0.27"),  # a route only v0.27 has
    ("POST", "/api/v1/datasets/a/documents/parse", "0.27"),
    ("POST", "/api/v1/datasets/a/documents", "0.22"),  # v0.27 kept v0.22's auth on documents,
    ("PUT", "/api/v1/datasets/a/documents/b/chunks/c", "0.22"),  # chunks,
    ("POST", "/api/v1/retrieval", "0.22"),  # retrieval
    ("DELETE", "/api/v1/chats/c/sessions", "0.22"),  # and deleting sessions
    ("POST", "/api/v1/chats/c/sessions", None),  # the rest answers as the client's line does
    ("GET", "/api/v1/datasets", None),
])
def test_routes_that_answer_auth_failures_one_way_on_both_lines(method, path, expected) -> None:
    assert auth_line_of_route(method, path) == expected


async def test_a_missing_key_on_a_document_route_answers_as_both_lines_do(client, auth) -> None:
    await client.get("/api/v1/datasets?ids=x", headers=auth)  # this address shows v0.27
    on_documents = await (await client.get("/api/v1/datasets/x/documents")).get_json()
    assert on_documents == {"code": 0, "message": "`Authorization` can't be empty"}
    on_datasets = await (await client.get("/api/v1/datasets")).get_json()
    assert on_datasets["code"] == 401
