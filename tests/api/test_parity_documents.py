"""RAGFlow v0.22/v0.27 parity of documents: delete semantics of both lines, PATCH, the
/documents/parse and /documents/stop routes, the ids/suffix/run filters and RAGFlow's messages."""

from __future__ import annotations

import asyncio

import pytest
from urllib3 import encode_multipart_formdata

pytestmark = pytest.mark.usefixtures("app")

NAMES = ("ragflow_test_upload_0.txt", "ragflow_test_upload_1.txt", "ragflow_test_upload_2.md")


async def dataset_with_documents(client, auth) -> tuple[str, list[str]]:
    created = await (await client.post("/api/v1/datasets", headers=auth, json={"name": "docs"})).get_json()
    dataset_id = created["data"]["id"]
    body, content_type = encode_multipart_formdata([("file", (name, f"text of {name}".encode())) for name in NAMES])
    uploaded = await client.post(f"/api/v1/datasets/{dataset_id}/documents", data=body,
                                 headers={**auth, "Content-Type": content_type})
    return dataset_id, [doc["id"] for doc in (await uploaded.get_json())["data"]]


async def listed(client, auth, dataset_id, query: str = ""):
    return await (await client.get(f"/api/v1/datasets/{dataset_id}/documents{query}", headers=auth)).get_json()


async def delete(client, auth, dataset_id, body):
    return await (await client.delete(f"/api/v1/datasets/{dataset_id}/documents", headers=auth,
                                      json=body)).get_json()


async def remaining(client, auth, dataset_id) -> int:
    body = await listed(client, auth, dataset_id)
    assert len(body["data"]["docs"]) == body["data"]["total"]
    return body["data"]["total"]


@pytest.mark.parametrize("body", [{"ids": None, "delete_all": False}, {"ids": [], "delete_all": False},
                                  {"delete_all": False}])
async def test_v027_delete_documents_without_ids_never_wipes_the_dataset(client, auth, body) -> None:
    dataset_id, _ = await dataset_with_documents(client, auth)
    assert (await delete(client, auth, dataset_id, body))["code"] == 0
    assert await remaining(client, auth, dataset_id) == 3


async def test_v027_delete_all_true_deletes_every_document(client, auth) -> None:
    dataset_id, _ = await dataset_with_documents(client, auth)
    assert (await delete(client, auth, dataset_id, {"ids": None, "delete_all": True}))["code"] == 0
    assert await remaining(client, auth, dataset_id) == 0


@pytest.mark.parametrize("body", [None, {"ids": None}, {"ids": []}])
async def test_v022_delete_without_ids_deletes_every_document(client, auth, body) -> None:
    dataset_id, _ = await dataset_with_documents(client, auth)
    response = await client.delete(f"/api/v1/datasets/{dataset_id}/documents", headers=auth,
                                   **({} if body is None else {"json": body}))
    assert (await response.get_json())["code"] == 0
    assert await remaining(client, auth, dataset_id) == 0


async def test_unknown_ids_are_named_and_the_known_ones_deleted(client, auth) -> None:
    dataset_id, ids = await dataset_with_documents(client, auth)
    alone = await delete(client, auth, dataset_id, {"ids": ["invalid_id"]})
    assert alone == {"code": 102, "message": "Documents not found: ['invalid_id']"}
    assert await remaining(client, auth, dataset_id) == 3
    mixed = await delete(client, auth, dataset_id, {"ids": ids[:1] + ["invalid_id"] + ids[1:]})
    assert mixed["code"] == 102 and mixed["message"] == "Documents not found: ['invalid_id']"
    assert await remaining(client, auth, dataset_id) == 0


async def test_duplicate_ids_are_reported_and_deleted_once(client, auth) -> None:
    dataset_id, ids = await dataset_with_documents(client, auth)
    body = await delete(client, auth, dataset_id, {"ids": ids + ids})
    assert body["code"] == 0 and body["data"]["success_count"] == 3
    assert "Duplicate document ids" in body["data"]["errors"][0]
    assert await remaining(client, auth, dataset_id) == 0


async def test_ids_suffix_and_run_filters(client, auth) -> None:
    dataset_id, ids = await dataset_with_documents(client, auth)
    by_ids = await listed(client, auth, dataset_id, f"?ids={ids[0]}&ids={ids[2]}")
    assert {doc["id"] for doc in by_ids["data"]["docs"]} == {ids[0], ids[2]} and by_ids["data"]["total"] == 2
    by_suffix = await listed(client, auth, dataset_id, "?suffix=md")
    assert [doc["name"] for doc in by_suffix["data"]["docs"]] == ["ragflow_test_upload_2.md"]
    assert (await listed(client, auth, dataset_id, "?run=UNSTART&run=0"))["data"]["total"] == 3
    assert (await listed(client, auth, dataset_id, "?run=DONE"))["data"]["total"] == 0
    bad_run = await listed(client, auth, dataset_id, "?run=INVALID_STATUS")
    assert bad_run["code"] == 102 and "Invalid filter run status conditions: INVALID_STATUS" in bad_run["message"]


async def test_unknown_id_or_name_in_ragflow_words_on_both_api_lines(client, auth) -> None:
    dataset_id, _ = await dataset_with_documents(client, auth)
    v022 = await listed(client, auth, dataset_id, "?name=unknown.txt")
    assert v022 == {"code": 102, "message": "You don't own the document unknown.txt."}
    headers = {**auth, "X-RAGFlow-API": "0.27"}
    v027 = await (await client.get(f"/api/v1/datasets/{dataset_id}/documents?id=unknown", headers=headers)).get_json()
    assert v027 == {"code": 102, "message": "You don't own the document unknown."}


async def test_patch_updates_like_put_and_keeps_meta_fields(client, auth) -> None:
    dataset_id, ids = await dataset_with_documents(client, auth)
    url = f"/api/v1/datasets/{dataset_id}/documents/{ids[0]}"
    patched = await (await client.patch(url, headers=auth, json={"name": "renamed.txt", "meta_fields": {"author": "bob"},
                                                               "chunk_method": "qa"})).get_json()
    assert patched["code"] == 0
    assert patched["data"]["name"] == "renamed.txt" and patched["data"]["chunk_method"] == "qa"
    doc = (await listed(client, auth, dataset_id, f"?id={ids[0]}"))["data"]["docs"][0]
    assert doc["meta_fields"] == {"author": "bob"} and doc["name"] == "renamed.txt"
    put = await (await client.put(url, headers=auth, json={"meta_fields": {"year": 2024}, "enabled": 0})).get_json()
    assert put["data"]["meta_fields"] == {"year": 2024} and put["data"]["status"] == "0"


@pytest.mark.parametrize(
    ("changes", "code", "message"),
    [
        ({"name": ""}, 101, "The extension of file can't be changed"),
        ({"name": "ragflow_test_upload_0"}, 101, "The extension of file can't be changed"),
        ({"name": "ragflow_test_upload_1.txt"}, 102, "Duplicated document name in the same dataset."),
        ({"chunk_method": "other_chunk_method"}, 102, "`chunk_method` other_chunk_method doesn't exist"),
        ({"chunk_count": 1}, 102, "Can't change `chunk_count`."),
        ({"progress": 1.0}, 102, "Can't change `progress`."),
    ],
)
async def test_update_refusals_in_ragflow_words(client, auth, changes, code, message) -> None:
    dataset_id, ids = await dataset_with_documents(client, auth)
    body = await (await client.patch(f"/api/v1/datasets/{dataset_id}/documents/{ids[0]}", headers=auth,
                                     json=changes)).get_json()
    assert body == {"code": code, "message": message}


async def test_update_of_unknown_dataset_or_document(client, auth) -> None:
    dataset_id, ids = await dataset_with_documents(client, auth)
    no_doc = await (await client.patch(f"/api/v1/datasets/{dataset_id}/documents/{'0' * 32}", headers=auth,
                                       json={"name": "a.txt"})).get_json()
    assert no_doc == {"code": 102, "message": "The dataset doesn't own the document."}
    no_set = await (await client.patch(f"/api/v1/datasets/{'0' * 32}/documents/{ids[0]}", headers=auth,
                                       json={"name": "a.txt"})).get_json()
    assert no_set == {"code": 102, "message": "You don't own the dataset."}


async def test_a_name_differing_only_in_case_is_not_a_duplicate(client, auth) -> None:
    dataset_id, ids = await dataset_with_documents(client, auth)
    body = await (await client.patch(f"/api/v1/datasets/{dataset_id}/documents/{ids[0]}", headers=auth,
                                     json={"name": "RAGFLOW_TEST_UPLOAD_1.TXT"})).get_json()
    assert body["code"] == 0 and body["data"]["name"] == "RAGFLOW_TEST_UPLOAD_1.TXT"


async def test_parse_and_stop_on_the_v027_routes(client, auth) -> None:
    dataset_id, ids = await dataset_with_documents(client, auth)
    base = f"/api/v1/datasets/{dataset_id}/documents"
    parsed = await (await client.post(f"{base}/parse", headers=auth, json={"document_ids": ids[:1]})).get_json()
    assert parsed["code"] == 0
    for _ in range(300):
        doc = (await listed(client, auth, dataset_id, f"?id={ids[0]}"))["data"]["docs"][0]
        if doc["run"] == "DONE":
            break
        await asyncio.sleep(0.05)
    assert doc["run"] == "DONE" and doc["chunk_count"] > 0
    empty = await (await client.post(f"{base}/parse", headers=auth, json={"document_ids": []})).get_json()
    assert empty == {"code": 102, "message": "`document_ids` is required"}
    idle = await (await client.post(f"{base}/stop", headers=auth, json={"document_ids": ids[1:2]})).get_json()
    assert idle["code"] == 102 and "not being parsed" in idle["message"]


async def test_parser_config_of_a_document_merges_sections(client, auth) -> None:
    dataset_id, ids = await dataset_with_documents(client, auth)
    body = await (await client.patch(f"/api/v1/datasets/{dataset_id}/documents/{ids[0]}", headers=auth,
                                     json={"parser_config": {"raptor": {"use_raptor": True}}})).get_json()
    config = body["data"]["parser_config"]
    assert config["raptor"]["use_raptor"] is True and config["raptor"]["max_cluster"] == 64
    assert config["graphrag"]["use_graphrag"] is False


async def wait_parsed(client, auth, dataset_id, doc_ids) -> list[dict]:
    for _ in range(300):
        docs = (await listed(client, auth, dataset_id))["data"]["docs"]
        if all(doc["run"] == "DONE" for doc in docs if doc["id"] in doc_ids):
            break
        await asyncio.sleep(0.05)
    return [doc for doc in docs if doc["id"] in doc_ids]


async def test_parse_with_an_unknown_id_parses_the_known_ones_and_names_it(client, auth) -> None:
    dataset_id, ids = await dataset_with_documents(client, auth)
    body = await (await client.post(f"/api/v1/datasets/{dataset_id}/documents/parse", headers=auth,
                                    json={"document_ids": ids[:1] + ["invalid_id"] + ids[1:]})).get_json()
    assert body == {"code": 102, "message": "Documents not found: ['invalid_id']"}
    assert [doc["run"] for doc in await wait_parsed(client, auth, dataset_id, ids)] == ["DONE"] * 3


@pytest.mark.parametrize(("query", "shown"), [("?page=0&page_size=2", 2), ("?page_size=0", 0)])
async def test_document_list_reads_page_zero_as_the_first_and_page_size_zero_as_none(client, auth, query,
                                                                                      shown) -> None:
    dataset_id, _ = await dataset_with_documents(client, auth)
    body = await listed(client, auth, dataset_id, query)
    assert body["code"] == 0 and len(body["data"]["docs"]) == shown and body["data"]["total"] == 3


async def test_a_delete_body_that_is_not_an_object_deletes_nothing(client, auth) -> None:
    dataset_id, _ = await dataset_with_documents(client, auth)
    body = await delete(client, auth, dataset_id, "not json")
    assert body == {"code": 100, "message": "AttributeError(\"'str' object has no attribute 'get'\")"}
    assert await remaining(client, auth, dataset_id) == 3


@pytest.mark.parametrize(("name", "kind"), [(0, "int"), (None, "NoneType")])
async def test_a_name_that_is_not_a_string_is_refused_as_ragflow_does(client, auth, name, kind) -> None:
    dataset_id, ids = await dataset_with_documents(client, auth)
    body = await (await client.patch(f"/api/v1/datasets/{dataset_id}/documents/{ids[0]}", headers=auth,
                                     json={"name": name})).get_json()
    assert body == {"code": 100, "message": f"AttributeError(\"'{kind}' object has no attribute 'encode'\")"}
    assert (await listed(client, auth, dataset_id, f"?id={ids[0]}"))["data"]["docs"][0]["name"] == NAMES[0]
