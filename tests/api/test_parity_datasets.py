"""RAGFlow v0.22/v0.27 parity of /api/v1/datasets: what both ragflow-sdk lines and RAGFlow's own
HTTP test cases send and expect (delete_all, GET by id, ids filter, validation messages,
parser_config sections, auto_metadata_config, knowledge-graph routes)."""

from __future__ import annotations

import pytest

BASE = "/api/v1/datasets"


async def create(client, headers, **fields):
    return await (await client.post(BASE, headers=headers, json=fields)).get_json()


async def listed(client, headers, query: str = ""):
    return await (await client.get(f"{BASE}{query}", headers=headers)).get_json()


async def delete(client, headers, body):
    return await (await client.delete(BASE, headers=headers, json=body)).get_json()


async def three(client, headers) -> list[str]:
    return [(await create(client, headers, name=f"dataset_{index}"))["data"]["id"] for index in range(3)]


async def test_v027_delete_with_delete_all_false_and_no_ids_deletes_nothing(client, auth) -> None:
    await three(client, auth)
    for body in ({"ids": None, "delete_all": False}, {"ids": [], "delete_all": False}, {"delete_all": False}):
        assert (await delete(client, auth, body))["code"] == 0
        assert len((await listed(client, auth))["data"]) == 3


async def test_v027_delete_all_true_deletes_every_dataset(client, auth) -> None:
    await three(client, auth)
    assert (await delete(client, auth, {"ids": None, "delete_all": True}))["code"] == 0
    assert (await listed(client, auth))["data"] == []


async def test_v022_delete_keeps_its_meaning(client, auth) -> None:
    ids = await three(client, auth)
    assert (await delete(client, auth, {"ids": []}))["code"] == 0
    assert len((await listed(client, auth))["data"]) == 3
    assert (await delete(client, auth, {"ids": ids[:1]}))["code"] == 0
    assert len((await listed(client, auth))["data"]) == 2
    assert (await delete(client, auth, {"ids": None}))["code"] == 0
    assert (await listed(client, auth))["data"] == []


@pytest.mark.parametrize(
    ("body", "code", "fragment"),
    [
        ({"ids": ["d94a8dc02c9711f0930f7fbc369eab6d"]}, 102, "lacks permission for dataset"),
        ({"ids": ["not_uuid"]}, 101, "Invalid UUID1 format"),
        ({"unknown_field": "x"}, 101, "Extra inputs are not permitted"),
        ({}, 101, "ids"),
    ],
)
async def test_bad_deletes_delete_nothing(client, auth, body, code, fragment) -> None:
    ids = await three(client, auth)
    for payload in (body, {"ids": ids + ids}):
        answer = await delete(client, auth, payload)
        assert answer["code"] == (code if payload is body else 101)
        assert (fragment if payload is body else "Duplicate ids:") in answer["message"]
    assert len((await listed(client, auth))["data"]) == 3


async def test_deleting_twice_says_the_datasets_are_gone(client, auth) -> None:
    ids = await three(client, auth)
    assert (await delete(client, auth, {"ids": ids}))["code"] == 0
    again = await delete(client, auth, {"ids": ids})
    assert again["code"] == 102 and "lacks permission for dataset" in again["message"]


async def test_get_one_dataset_by_id(client, auth, make_key) -> None:
    dataset_id = (await create(client, auth, name="one"))["data"]["id"]
    got = await (await client.get(f"{BASE}/{dataset_id}", headers=auth)).get_json()
    assert got["code"] == 0 and got["data"]["id"] == dataset_id and got["data"]["name"] == "one"
    for other in ({"Authorization": f"Bearer {make_key('globex')}"}, auth):
        target = dataset_id if other is not auth else "0" * 32
        missing = await (await client.get(f"{BASE}/{target}", headers=other)).get_json()
        assert missing["code"] == 102 and "lacks permission for dataset" in missing["message"]


async def test_ids_filter_is_a_repeated_query_parameter(client, auth) -> None:
    ids = await three(client, auth)
    body = await listed(client, auth, f"?ids={ids[0]}&ids={ids[2]}")
    assert body["code"] == 0 and {d["id"] for d in body["data"]} == {ids[0], ids[2]}
    assert body["total"] == body["total_datasets"] == 2
    unknown = await listed(client, auth, f"?ids={ids[0]}&ids={'0' * 32}")
    assert unknown["code"] == 102 and "lacks permission for dataset" in unknown["message"]
    both = await listed(client, auth, f"?id={ids[0]}&ids={ids[1]}")
    assert both["code"] == 101


async def test_list_filters_as_ragflow_checks_them(client, auth) -> None:
    ids = await three(client, auth)
    assert [d["name"] for d in (await listed(client, auth, "?name=dataset_1"))["data"]] == ["dataset_1"]
    mismatch = await listed(client, auth, f"?id={ids[0]}&name=dataset_1")
    assert mismatch["code"] == 0 and mismatch["data"] == []
    wrong = await listed(client, auth, "?name=wrong")
    assert wrong["code"] == 102 and "lacks permission for dataset" in wrong["message"]
    assert "Invalid UUID format" in (await listed(client, auth, "?id=not_uuid"))["message"]
    assert "Extra inputs are not permitted" in (await listed(client, auth, "?unknown_field=1"))["message"]
    oldest_first = await listed(client, auth, "?desc=n")
    assert [d["name"] for d in oldest_first["data"]] == ["dataset_0", "dataset_1", "dataset_2"]


async def test_parser_config_has_raptor_and_graphrag_sections(client, auth) -> None:
    plain = (await create(client, auth, name="plain", parser_config={"chunk_token_num": 1024}))["data"]
    config = plain["parser_config"]
    assert config["chunk_token_num"] == 1024
    assert config["raptor"]["use_raptor"] is False and config["graphrag"]["use_graphrag"] is False
    assert config["raptor"]["max_token"] == 256 and config["graphrag"]["method"] == "light"
    raptor = (await create(client, auth, name="raptor", parser_config={"raptor": {"use_raptor": True}}))["data"]
    assert raptor["parser_config"]["raptor"]["use_raptor"] is True
    assert raptor["parser_config"]["raptor"]["threshold"] == 0.1
    assert raptor["parser_config"]["graphrag"]["use_graphrag"] is False


async def test_update_merges_parser_config_sections(client, auth) -> None:
    dataset_id = (await create(client, auth, name="merge"))["data"]["id"]
    url = f"{BASE}/{dataset_id}"
    body = await (await client.put(url, headers=auth, json={"parser_config": {"graphrag": {"method": "general"}}}))\
        .get_json()
    assert body["code"] == 0
    graphrag = body["data"]["parser_config"]["graphrag"]
    assert graphrag["method"] == "general" and graphrag["use_graphrag"] is False and graphrag["entity_types"]
    empty = await (await client.put(url, headers=auth, json={})).get_json()
    assert empty == {"code": 102, "message": "no properties were modified"}


@pytest.mark.parametrize("method", ["naive", "book", "email", "laws", "manual", "one", "paper", "picture",
                                    "presentation", "qa", "table", "tag"])
async def test_every_ragflow_chunk_method_is_accepted(client, auth, method) -> None:
    body = await create(client, auth, name=method, chunk_method=method)
    assert body["code"] == 0 and body["data"]["chunk_method"] == method
    updated = await (await client.put(f"{BASE}/{body['data']['id']}", headers=auth,
                                      json={"chunk_method": method})).get_json()
    assert updated["code"] == 0 and updated["data"]["chunk_method"] == method


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"name": " "}, "String should have at least 1 character"),
        ({"name": "a" * 129}, "string should have at most 128 characters"),
        ({"name": None}, "Input should be a valid string"),
        ({"name": "x", "permission": "ME"}, "Input should be 'me' or 'team'"),
        ({"name": "x", "chunk_method": "unknown"}, "Input should be 'naive', 'book', 'email', 'laws', 'manual', "
                                                   "'one', 'paper', 'picture', 'presentation', 'qa', 'table', "
                                                   "'tag' or 'resume'"),
        ({"name": "x", "embedding_model": "no-at"}, "must follow <model_name>@<provider> format"),
        ({"name": "x", "embedding_model": " @Builtin"}, "Both model_name and provider must be non-empty strings"),
        ({"name": "x", "description": "a" * 65536}, "string should have at most 65535 characters"),
        ({"name": "x", "parser_config": {"chunk_token_num": 2049}}, "Input should be less than or equal to 2048"),
        ({"name": "x", "parser_config": {"raptor": {"max_cluster": 0}}}, "Input should be greater than or equal to 1"),
        ({"name": "x", "parser_config": {"graphrag": {"method": "unknown"}}}, "Input should be 'light', 'general' or"),
        ({"name": "x", "parser_config": {"raptor": {"prompt": " "}}}, "String should have at least 1 character"),
        ({"name": "x", "parser_config": {"delimiter": "a" * 65536}}, "Parser config exceeds size limit"),
        ({"name": "x", "pagerank": 50, "status": "1"}, "Extra inputs are not permitted"),
    ],
)
async def test_validation_messages_match_ragflow(client, auth, fields, message) -> None:
    body = await create(client, auth, **fields)
    assert body["code"] == 101 and message in body["message"]


async def test_auto_metadata_config_is_stored_and_returned(client, auth) -> None:
    config = {"enabled": True, "fields": [{"name": "author", "type": "string", "description": "who wrote it"}]}
    created = (await create(client, auth, name="meta", auto_metadata_config=config))["data"]
    assert created["auto_metadata_config"] == config
    changed = {"enabled": False, "fields": []}
    updated = await (await client.put(f"{BASE}/{created['id']}", headers=auth,
                                      json={"auto_metadata_config": changed})).get_json()
    assert updated["data"]["auto_metadata_config"] == changed
    assert (await listed(client, auth, f"?id={created['id']}"))["data"][0]["auto_metadata_config"] == changed


async def test_dataset_carries_every_field_both_sdks_read(client, auth) -> None:
    dataset = (await create(client, auth, name="fields"))["data"]
    for field in ("id", "name", "avatar", "tenant_id", "description", "embedding_model", "permission",
                  "document_count", "chunk_count", "chunk_method", "parser_config", "pagerank"):
        assert field in dataset


@pytest.mark.parametrize("path", ["knowledge_graph", "graph"])
async def test_knowledge_graph_is_empty_until_built(client, auth, path) -> None:
    dataset_id = (await create(client, auth, name="kg"))["data"]["id"]
    got = await (await client.get(f"{BASE}/{dataset_id}/{path}", headers=auth)).get_json()
    assert got["code"] == 0 and got["data"] == {"graph": {}, "mind_map": {}}
    removed = await (await client.delete(f"{BASE}/{dataset_id}/{path}", headers=auth)).get_json()
    assert removed["code"] == 0 and removed["data"] is True
    foreign = await (await client.get(f"{BASE}/{'0' * 32}/{path}", headers=auth)).get_json()
    assert foreign["code"] == 102


async def test_a_search_of_the_knowledge_graph_finds_the_empty_graph(client, auth) -> None:
    dataset_id = (await create(client, auth, name="kg"))["data"]["id"]
    got = await (await client.get(f"{BASE}/{dataset_id}/graph/search", headers=auth)).get_json()
    assert got["code"] == 0 and got["data"] == {"graph": {}, "mind_map": {}}
    foreign = await (await client.get(f"{BASE}/{'0' * 32}/graph/search", headers=auth)).get_json()
    assert foreign["code"] == 102


@pytest.mark.parametrize(("method", "path"), [("post", "run_graphrag"), ("get", "trace_graphrag"),
                                              ("post", "run_raptor"), ("get", "trace_raptor")])
async def test_graphrag_and_raptor_say_they_are_not_supported(client, auth, method, path) -> None:
    dataset_id = (await create(client, auth, name="kg"))["data"]["id"]
    body = await (await getattr(client, method)(f"{BASE}/{dataset_id}/{path}", headers=auth)).get_json()
    assert body["code"] != 0 and "Not supported by Ragline" in body["message"]
