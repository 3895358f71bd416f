"""Document metadata: the condition evaluation (pure) and the metadata routes through the test
client — config, summary, batch edits, the flattened view and a document's own config."""

from __future__ import annotations

import pytest

from api.db.services.metadata_service import (
    MetadataDelete,
    MetadataUpdate,
    document_matches,
    edit_metadata,
    parse_condition,
)
from api.errors import ApiError
from tests.api.test_documents_api import make_dataset, upload

pytestmark = pytest.mark.usefixtures("app")


def matches(meta: dict, *rules: tuple, logic: str = "and") -> bool:
    condition = parse_condition({"logic": logic, "conditions": [
        {"name": name, "comparison_operator": op, "value": value} for name, op, value in rules]})
    return document_matches(meta, condition)


@pytest.mark.parametrize("meta, rule, expected", [
    ({"author": "Alice"}, ("author", "is", "alice"), True),
    ({"author": "Alice"}, ("author", "=", "Bob"), False),
    ({"author": "Alice"}, ("author", "not is", "bob"), True),
    ({"author": "Alice"}, ("author", "≠", "ALICE"), False),
    ({"author": "Alice"}, ("author", "!=", "bob"), True),
    ({"url": "https://amd.com/x"}, ("url", "contains", "AMD"), True),
    ({"url": "https://amd.com/x"}, ("url", "not contains", "amd"), False),
    ({"title": "Annual report"}, ("title", "start with", "annual"), True),
    ({"title": "Annual report"}, ("title", "end with", "REPORT"), True),
    ({"title": "Annual report"}, ("title", "end with", "annual"), False),
    ({"year": "2021"}, ("year", ">", "2020"), True),
    ({"year": 2021}, ("year", "≥", 2021), True),
    ({"year": "9"}, ("year", "<", "10"), True),  # as numbers, not as text ("9" > "10")
    ({"year": "2021"}, ("year", "<=", "2020"), False),
    ({"year": "recent"}, ("year", ">", "2020"), False),  # a word and a number have no order
    ({"date": "2024-03-01"}, ("date", ">", "2024-01-31"), True),
    ({"date": "2024-03-01"}, ("date", "≤", "2023-12-31"), False),
    ({"date": "March"}, ("date", "<", "2024-01-31"), False),  # only dates compare with a date
    ({"tier": "gold"}, ("tier", "in", ["Gold", "silver"]), True),
    ({"tier": "gold"}, ("tier", "in", "silver, gold"), True),
    ({"tier": "gold"}, ("tier", "in", "golden"), False),
    ({"tier": "gold"}, ("tier", "not in", ["silver"]), True),
    ({"tags": ["foo", "bar"]}, ("tags", "is", "bar"), True),
    ({"tags": ["foo", "bar"]}, ("tags", "≠", "bar"), False),  # no element may equal it
    ({"tags": ["foo", "bar"]}, ("tags", "not contains", "ba"), False),
    ({"tags": ["foo", "bar"]}, ("tags", "contains", "ba"), True),
    ({"tags": []}, ("tags", "empty", None), True),
    ({"note": "  "}, ("note", "empty", None), True),
    ({}, ("note", "empty", None), True),
    ({"note": "x"}, ("note", "not empty", None), True),
    ({}, ("note", "not empty", None), False),
    ({}, ("author", "not is", "bob"), False),  # a missing field matches no comparison
    ({"flag": True}, ("flag", "is", "true"), True),
])
def test_one_rule(meta, rule, expected) -> None:
    assert matches(meta, rule) is expected


def test_logic_and_or_and_the_chat_filter_shape() -> None:
    meta = {"author": "alice", "year": "2020"}
    assert matches(meta, ("author", "is", "alice"), ("year", ">", "2021")) is False
    assert matches(meta, ("author", "is", "alice"), ("year", ">", "2021"), logic="or") is True
    assert matches(meta, ("author", "is", "bob"), ("year", "=", "2020"), logic="and") is False
    chat_filter = parse_condition({"method": "manual", "logic": "OR",
                                   "manual": [{"key": "author", "op": "is", "value": "bob"},
                                              {"key": "year", "op": ">=", "value": "2020"}]})
    assert chat_filter.logic == "or" and document_matches(meta, chat_filter)
    assert document_matches(meta, parse_condition({"logic": "and", "conditions": []})), "no rule filters nothing"


@pytest.mark.parametrize("raw", ["and", {"logic": "xor", "conditions": []},
                                 {"conditions": [{"name": "a", "comparison_operator": "near", "value": 1}]},
                                 {"conditions": [{"comparison_operator": "is", "value": 1}]}])
def test_bad_conditions_are_101(raw) -> None:
    with pytest.raises(ApiError) as caught:
        parse_condition(raw)
    assert caught.value.code == 101


def test_edit_metadata_sets_replaces_and_deletes() -> None:
    meta = {"tags": ["foo", "bar"], "author": "alice", "old": 1}
    updates = [MetadataUpdate.model_validate(u) for u in (
        {"key": "tags", "match": "foo", "value": "foo_new"}, {"key": "author", "match": "bob", "value": "x"},
        {"key": "status", "value": "done"})]
    deletes = [MetadataDelete.model_validate(d) for d in ({"key": "old"}, {"key": "tags", "value": "bar"})]
    assert edit_metadata(meta, updates, deletes) == {"tags": ["foo_new"], "author": "alice", "status": "done"}
    assert meta["tags"] == ["foo", "bar"], "the input is left alone"


# ---- routes ------------------------------------------------------------------------------

async def dataset_with_documents(client, auth, metas: list[dict], name: str = "metadata") -> tuple[str, list[str]]:
    dataset_id = await make_dataset(client, auth, name)
    files = [(f"doc{i}.txt", f"document {i}".encode()) for i in range(len(metas))]
    body = await (await upload(client, auth, dataset_id, *files)).get_json()
    doc_ids = [doc["id"] for doc in body["data"]]
    for doc_id, meta in zip(doc_ids, metas, strict=True):
        reply = await (await client.put(f"/api/v1/datasets/{dataset_id}/documents/{doc_id}", headers=auth,
                                        json={"meta_fields": meta})).get_json()
        assert reply["code"] == 0, reply
    return dataset_id, doc_ids


async def meta_of(client, auth, dataset_id: str) -> dict[str, dict]:
    listed = await (await client.get(f"/api/v1/datasets/{dataset_id}/documents?page_size=100",
                                     headers=auth)).get_json()
    return {doc["id"]: doc["meta_fields"] for doc in listed["data"]["docs"]}


async def test_config_round_trip_and_refusals(client, auth, make_key) -> None:
    dataset_id = await make_dataset(client, auth, "config")
    url = f"/api/v1/datasets/{dataset_id}/metadata/config"
    assert (await (await client.get(url, headers=auth)).get_json())["data"] == {"enabled": False, "fields": []}

    config = {"enabled": True, "fields": [{"name": "character", "type": "string", "description": "Who"},
                                          {"name": "achievements", "type": "list"}]}
    put = await (await client.put(url, headers=auth, json=config)).get_json()
    assert put["code"] == 0 and put["data"]["fields"][1]["name"] == "achievements"
    got = await (await client.get(url, headers=auth)).get_json()
    assert got["data"]["enabled"] is True and [f["name"] for f in got["data"]["fields"]] == ["character", "achievements"]

    assert (await (await client.put(url, headers=auth)).get_json())["code"] == 101, "no body"
    bad_type = {"fields": [{"name": "x", "type": "colour"}]}
    assert (await (await client.put(url, headers=auth, json=bad_type)).get_json())["code"] == 101
    foreign = {"Authorization": f"Bearer {make_key('globex')}"}
    refused = await (await client.get(url, headers=foreign)).get_json()
    assert refused == {"code": 102, "message": f"You don't own the dataset {dataset_id}."}
    assert (await (await client.put(url, headers=foreign, json={"fields": []})).get_json())["code"] == 102


async def test_summary_counts_values(client, auth) -> None:
    dataset_id, _ = await dataset_with_documents(client, auth, [
        {"tags": ["foo", "bar"], "author": "alice"}, {"tags": ["foo"], "author": "bob"},
        {"tags": ["bar", "baz"], "author": None, "year": 2020}])
    reply = await (await client.get(f"/api/v1/datasets/{dataset_id}/metadata/summary", headers=auth)).get_json()
    summary = reply["data"]["summary"]
    assert summary["tags"]["values"] == [["bar", 2], ["foo", 2], ["baz", 1]]
    assert summary["author"] == {"type": "string", "values": [["alice", 1], ["bob", 1]]}
    assert summary["year"] == {"type": "number", "values": [["2020", 1]]}


async def test_batch_update_by_ids_condition_and_both(client, auth) -> None:
    dataset_id, (a, b, c) = await dataset_with_documents(client, auth, [
        {"author": "alice", "tags": ["foo"]}, {"author": "bob", "tags": ["foo", "bar"]}, {"author": "alice"}])
    url = f"/api/v1/datasets/{dataset_id}/metadata/update"
    everyone = await (await client.post(url, headers=auth, json={"updates": [{"key": "status", "value": "new"}]}))\
        .get_json()
    assert everyone["data"] == {"updated": 3, "matched_docs": 3}

    by_condition = {"selector": {"metadata_condition": {"conditions": [
        {"name": "author", "comparison_operator": "is", "value": "alice"}]}},
        "updates": [{"key": "tags", "match": "foo", "value": "foo_new"}], "deletes": [{"key": "status"}]}
    reply = await (await client.post(url, headers=auth, json=by_condition)).get_json()
    assert reply["data"] == {"updated": 2, "matched_docs": 2}
    metas = await meta_of(client, auth, dataset_id)
    assert metas[a] == {"author": "alice", "tags": ["foo_new"]} and metas[c] == {"author": "alice"}
    assert metas[b] == {"author": "bob", "tags": ["foo", "bar"], "status": "new"}

    both = {**by_condition, "selector": {**by_condition["selector"], "document_ids": [b, c]}}
    patched = await (await client.patch(f"/api/v1/datasets/{dataset_id}/documents/metadatas", headers=auth,
                                        json={**both, "updates": [{"key": "checked", "value": True}]})).get_json()
    assert patched["data"] == {"updated": 1, "matched_docs": 1}
    assert (await meta_of(client, auth, dataset_id))[c] == {"author": "alice", "checked": True}

    nobody = {"selector": {"metadata_condition": {"conditions": [
        {"name": "author", "comparison_operator": "is", "value": "zed"}]}}, "deletes": [{"key": "author"}]}
    assert (await (await client.post(url, headers=auth, json=nobody)).get_json())["data"] == \
        {"updated": 0, "matched_docs": 0}


@pytest.mark.parametrize("body, message", [
    ({"selector": "x"}, "selector must be an object."),
    ({"updates": {"key": "a"}}, "updates and deletes must be lists."),
    ({"selector": {"metadata_condition": "x"}}, "metadata_condition must be an object."),
    ({"selector": {"document_ids": "x"}}, "document_ids must be a list."),
    ({"updates": [{"key": "a"}]}, "Each update requires key and value."),
    ({"deletes": [{"value": "a"}]}, "Each delete requires key."),
])
async def test_batch_update_refusals(client, auth, body, message) -> None:
    dataset_id, _ = await dataset_with_documents(client, auth, [{"a": "1"}])
    reply = await (await client.post(f"/api/v1/datasets/{dataset_id}/metadata/update", headers=auth,
                                     json=body)).get_json()
    assert (reply["code"], reply["message"]) == (100, message)


async def test_batch_update_refuses_foreign_documents_and_changes_nothing(client, auth) -> None:
    dataset_id, (doc,) = await dataset_with_documents(client, auth, [{"a": "1"}])
    reply = await (await client.post(f"/api/v1/datasets/{dataset_id}/metadata/update", headers=auth, json={
        "selector": {"document_ids": [doc, "f" * 32]}, "updates": [{"key": "a", "value": "2"}]})).get_json()
    assert reply["code"] == 100 and "f" * 32 in reply["message"]
    assert (await meta_of(client, auth, dataset_id))[doc] == {"a": "1"}


async def test_batch_update_selects_by_key_and_values_and_an_empty_id_list_selects_none(client, auth) -> None:
    dataset_id, (a, b) = await dataset_with_documents(client, auth, [{"category": "x"}, {"category": "y"}])
    url = f"/api/v1/datasets/{dataset_id}/documents/metadatas"
    by_values = {"selector": {"metadata_condition": {"conditions": [{"key": "category", "value": ["x", "z"]}]}},
                 "updates": [{"key": "seen", "value": True}]}
    assert (await (await client.patch(url, headers=auth, json=by_values)).get_json())["data"] == \
        {"updated": 1, "matched_docs": 1}
    none = {"selector": {"document_ids": []}, "updates": [{"key": "seen", "value": False}]}
    assert (await (await client.patch(url, headers=auth, json=none)).get_json())["data"] == \
        {"updated": 0, "matched_docs": 0}
    metas = await meta_of(client, auth, dataset_id)
    assert metas[a] == {"category": "x", "seen": True} and metas[b] == {"category": "y"}


async def test_flattened_view_across_datasets(client, auth, make_key) -> None:
    first, (a,) = await dataset_with_documents(client, auth, [{"tags": ["x", "y"]}])
    second, (b,) = await dataset_with_documents(client, auth, [{"tags": "x"}], "second")
    url = f"/api/v1/datasets/metadata/flattened?dataset_ids={first},{second}"
    reply = await (await client.get(url, headers=auth)).get_json()
    assert reply["data"] == {"tags": {"x": [a, b], "y": [a]}}
    empty = await (await client.get("/api/v1/datasets/metadata/flattened", headers=auth)).get_json()
    assert (empty["code"], empty["message"]) == (102, "Lack of dataset_ids in query parameters")
    foreign = {"Authorization": f"Bearer {make_key('globex')}"}
    assert (await (await client.get(url, headers=foreign)).get_json())["code"] == 102


async def test_document_metadata_config(client, auth) -> None:
    dataset_id, (doc,) = await dataset_with_documents(client, auth, [{}])
    url = f"/api/v1/datasets/{dataset_id}/documents/{doc}/metadata/config"
    reply = await (await client.put(url, headers=auth, json={"metadata": [{"key": "author"}]})).get_json()
    assert reply["code"] == 0 and reply["data"]["parser_config"]["metadata"] == [{"key": "author"}]
    assert (await (await client.put(url, headers=auth, json={})).get_json())["code"] == 101
    missing = await (await client.put(f"/api/v1/datasets/{dataset_id}/documents/{'e' * 32}/metadata/config",
                                      headers=auth, json={"metadata": {}})).get_json()
    assert missing["code"] == 102
