"""The chunk routes as RAGFlow's own HTTP cases (test_add_chunk, test_list_chunks,
test_update_chunk, test_delete_chunks) and ragflow-sdk 0.27 use them: shapes, codes, messages,
PATCH and GET of one chunk, ``tag_kwd`` and ``image_base64``, and both lines' delete semantics."""

from __future__ import annotations

import base64

import pytest

from tests.api.test_chunks_api import add, chunks_url, counters, listed_ids, new_document

pytestmark = pytest.mark.usefixtures("app")

V027 = {"X-RAGFlow-API": "0.27"}
PNG = base64.b64encode(b"\x89PNG\r\n\x1a\n" + b"\x00" * 16).decode()


async def with_chunks(client, auth, count: int = 4) -> tuple[str, str, list[str]]:
    dataset_id, doc_id = await new_document(client, auth)
    ids = [(await add(client, auth, dataset_id, doc_id, f"chunk test {i}"))["data"]["chunk"]["id"]
           for i in range(count)]
    return dataset_id, doc_id, ids


async def test_add_returns_what_was_given(client, auth) -> None:
    dataset_id, doc_id = await new_document(client, auth)
    reply = await add(client, auth, dataset_id, doc_id, "chunk test", important_keywords=["a", "a"],
                      questions=[" why? ", "", "how"], tag_kwd=["tag1", "tag2"])
    chunk = reply["data"]["chunk"]
    assert (chunk["dataset_id"], chunk["document_id"], chunk["content"]) == (dataset_id, doc_id, "chunk test")
    assert chunk["important_keywords"] == ["a", "a"] and chunk["questions"] == ["why?", "how"]
    assert chunk["tag_kwd"] == ["tag1", "tag2"] and chunk["image_id"] == ""
    assert isinstance(chunk["create_time"], str) and isinstance(chunk["create_timestamp"], float)
    listed = await (await client.get(chunks_url(dataset_id, doc_id), headers=auth)).get_json()
    assert listed["data"]["chunks"][0]["tag_kwd"] == ["tag1", "tag2"]
    assert listed["data"]["doc"]["chunk_count"] == 1


@pytest.mark.parametrize("body, code, message", [
    ({"content": ""}, 102, "`content` is required"),
    ({"content": " "}, 102, "`content` is required"),
    ({"content": "x", "important_keywords": "abc"}, 102, "`important_keywords` is required to be a list"),
    ({"content": "x", "important_keywords": [1]}, 100, "TypeError('sequence item 0: expected str instance, int found')"),
    ({"content": "x", "questions": 123}, 102, "`questions` is required to be a list"),
    ({"content": "x", "questions": ["a", 1]}, 100, "TypeError('sequence item 1: expected str instance, int found')"),
    ({"content": "x", "tag_kwd": "abc"}, 102, "`tag_kwd` is required to be a list"),
    ({"content": "x", "tag_kwd": [1]}, 102, "`tag_kwd` must be a list of strings"),
    ({"content": "x", "image_base64": ""}, 102, "`image_base64` must be a non-empty string"),
    ({"content": "x", "image_base64": "not base64!"}, 102, "Invalid `image_base64`"),
])
async def test_add_refusals_as_ragflow_words_them(client, auth, body, code, message) -> None:
    dataset_id, doc_id = await new_document(client, auth)
    reply = await (await client.post(chunks_url(dataset_id, doc_id), headers=auth, json=body)).get_json()
    assert (reply["code"], reply["message"]) == (code, message)
    assert (await counters(client, auth, dataset_id, doc_id))[0] == 0


@pytest.mark.parametrize("headers, code, message", [
    ({}, 100, "TypeError(\"unsupported operand type(s) for +: 'NoneType' and 'str'\")"),
    (V027, 102, "`content` is required"),
])
async def test_add_with_null_content_in_the_words_of_each_line(client, auth, headers, code, message) -> None:
    dataset_id, doc_id = await new_document(client, auth)
    reply = await (await client.post(chunks_url(dataset_id, doc_id), headers={**auth, **headers},
                                     json={"content": None})).get_json()
    assert (reply["code"], reply["message"]) == (code, message)
    assert (await counters(client, auth, dataset_id, doc_id))[0] == 0


async def test_add_to_a_foreign_dataset_or_document(client, auth) -> None:
    dataset_id, doc_id = await new_document(client, auth)
    ghost = "0" * 32
    reply = await add(client, auth, ghost, doc_id, "a")
    assert (reply["code"], reply["message"]) == (102, f"You don't own the dataset {ghost}.")
    reply = await add(client, auth, dataset_id, ghost, "a")
    assert (reply["code"], reply["message"]) == (102, f"You don't own the document {ghost}.")


async def test_image_base64_is_stored_and_named(client, auth, parts) -> None:
    dataset_id, doc_id = await new_document(client, auth)
    chunk = (await add(client, auth, dataset_id, doc_id, "a figure", image_base64=PNG))["data"]["chunk"]
    assert chunk["image_id"] == f"{dataset_id}-{chunk['id']}"
    assert parts.storage.get(chunk["image_id"]) == base64.b64decode(PNG)
    listed = await (await client.get(chunks_url(dataset_id, doc_id), headers=auth)).get_json()
    assert listed["data"]["chunks"][0]["image_id"] == chunk["image_id"]


async def test_get_one_chunk(client, auth) -> None:
    dataset_id, doc_id, ids = await with_chunks(client, auth, 2)
    reply = await (await client.get(f"{chunks_url(dataset_id, doc_id)}/{ids[1]}", headers=auth)).get_json()
    chunk = reply["data"]
    assert chunk["id"] == ids[1] and chunk["content"] == "chunk test 1" and chunk["document_id"] == doc_id
    assert chunk["content_with_weight"] == "chunk test 1", "v0.27 answers the stored fields too"
    assert not [key for key in chunk if key.endswith(("_vec", "_tks", "_ltks"))]
    missing = await (await client.get(f"{chunks_url(dataset_id, doc_id)}/{'0' * 32}", headers=auth)).get_json()
    assert (missing["code"], missing["message"]) == (102, "Chunk not found!")


async def test_list_paging_keywords_id_and_availability(client, auth) -> None:
    dataset_id, doc_id, ids = await with_chunks(client, auth, 5)
    url = chunks_url(dataset_id, doc_id)

    async def listed(query: str) -> dict:
        return await (await client.get(f"{url}?{query}", headers=auth)).get_json()

    assert len((await listed("page=3&page_size=2"))["data"]["chunks"]) == 1
    assert len((await listed("page_size=0"))["data"]["chunks"]) == 5, "RAGFlow answers a default page for 0"
    assert [c["id"] for c in (await listed(f"id={ids[2]}"))["data"]["chunks"]] == [ids[2]]
    unknown = await listed("id=unknown")
    assert (unknown["code"], unknown["message"]) == (102, f"Chunk not found: {dataset_id}/unknown")
    assert len((await listed("keywords=unknownword"))["data"]["chunks"]) == 0
    await client.patch(f"{url}/{ids[0]}", headers=auth, json={"available": 0})
    assert [c["id"] for c in (await listed("available=false"))["data"]["chunks"]] == [ids[0]]
    assert len((await listed("available=true"))["data"]["chunks"]) == 4


async def test_patch_and_put_update_the_same_fields(client, auth) -> None:
    dataset_id, doc_id, ids = await with_chunks(client, auth, 1)
    url = f"{chunks_url(dataset_id, doc_id)}/{ids[0]}"
    patched = await (await client.patch(url, headers=auth, json={
        "content": "update chunk", "important_keywords": ["k"], "questions": ["q "], "tag_kwd": ["t"],
        "positions": [[1, 2, 3, 4, 5]], "unknown_key": "ignored"})).get_json()
    assert patched["code"] == 0
    got = (await (await client.get(url, headers=auth)).get_json())["data"]
    assert (got["content"], got["important_keywords"], got["questions"], got["tag_kwd"]) == \
        ("update chunk", ["k"], ["q"], ["t"])
    assert got["positions"] == [[1, 2, 3, 4, 5]]
    put = await (await client.put(url, headers=auth, json={"available": False, "image_base64": PNG})).get_json()
    assert put["code"] == 0 and put["data"]["available"] is False and put["data"]["image_id"]
    assert (await (await client.patch(url, headers=auth, json={})).get_json())["code"] == 0


@pytest.mark.parametrize("body, code, message", [
    ({"content": " "}, 102, "`content` is required"),
    ({"important_keywords": "abc"}, 102, "`important_keywords` should be a list"),
    ({"important_keywords": [1]}, 100, "TypeError('sequence item 0: expected str instance, int found')"),
    ({"questions": 123}, 102, "`questions` should be a list"),
    ({"tag_kwd": "abc"}, 102, "`tag_kwd` should be a list"),
    ({"positions": "x"}, 102, "`positions` should be a list"),
])
async def test_update_refusals_as_ragflow_words_them(client, auth, body, code, message) -> None:
    dataset_id, doc_id, ids = await with_chunks(client, auth, 1)
    reply = await (await client.patch(f"{chunks_url(dataset_id, doc_id)}/{ids[0]}", headers=auth,
                                      json=body)).get_json()
    assert (reply["code"], reply["message"]) == (code, message)


async def test_update_with_content_null_keeps_the_content_on_both_lines(client, auth) -> None:
    dataset_id, doc_id, ids = await with_chunks(client, auth, 1)
    url = f"{chunks_url(dataset_id, doc_id)}/{ids[0]}"
    v022 = await (await client.put(url, headers=auth, json={"content": None})).get_json()
    assert v022["code"] == 0 and v022["data"]["content"] == "chunk test 0"
    v027 = await (await client.patch(url, headers={**auth, **V027}, json={"content": None})).get_json()
    assert v027["code"] == 0 and v027["data"]["content"] == "chunk test 0"


async def test_update_unknown_chunk_document_and_deleted_document(client, auth) -> None:
    dataset_id, doc_id, ids = await with_chunks(client, auth, 1)
    base = chunks_url(dataset_id, doc_id)
    unknown = await (await client.patch(f"{base}/invalid_chunk", headers=auth, json={})).get_json()
    assert (unknown["code"], unknown["message"]) == (102, "Can't find this chunk invalid_chunk")
    wrong_doc = await (await client.patch(f"{chunks_url(dataset_id, 'invalid_document_id')}/{ids[0]}",
                                          headers=auth, json={})).get_json()
    assert (wrong_doc["code"], wrong_doc["message"]) == (102, "You don't own the document invalid_document_id.")
    await client.delete(f"/api/v1/datasets/{dataset_id}/documents", headers=auth, json={"ids": [doc_id]})
    gone = await (await client.patch(f"{base}/{ids[0]}", headers=auth, json={})).get_json()
    assert (gone["code"], gone["message"]) == (102, f"Can't find this chunk {ids[0]}")


async def test_delete_partial_repeated_and_duplicate_ids(client, auth) -> None:
    dataset_id, doc_id, ids = await with_chunks(client, auth, 5)
    url = chunks_url(dataset_id, doc_id)
    partial = await (await client.delete(url, headers=auth, json={"chunk_ids": ids[:1] + ["x"] + ids[1:4]})).get_json()
    assert (partial["code"], partial["message"]) == (102, "rm_chunk deleted chunks 4, expect 5")
    assert await listed_ids(client, auth, dataset_id, doc_id) == [ids[4]]
    again = await (await client.delete(url, headers=auth, json={"chunk_ids": ids[:4]})).get_json()
    assert (again["code"], again["message"]) == (102, "rm_chunk deleted chunks 0, expect 4")
    duplicated = await (await client.delete(url, headers=auth, json={"chunk_ids": [ids[4], ids[4]]})).get_json()
    assert duplicated["code"] == 0 and duplicated["data"]["success_count"] == 1
    assert "Duplicate chunk ids" in duplicated["data"]["errors"][0]
    assert await counters(client, auth, dataset_id, doc_id) == (0, 0, 0, 0)


async def test_delete_semantics_of_both_lines(client, auth) -> None:
    dataset_id, doc_id, ids = await with_chunks(client, auth, 3)
    url = chunks_url(dataset_id, doc_id)
    v027_nothing = await (await client.delete(url, headers={**auth, **V027}, json={"chunk_ids": []})).get_json()
    assert v027_nothing["code"] == 0 and len(await listed_ids(client, auth, dataset_id, doc_id)) == 3
    nothing = await (await client.delete(url, headers=auth, json={"chunk_ids": None, "delete_all": False}))\
        .get_json()
    assert nothing["code"] == 0 and len(await listed_ids(client, auth, dataset_id, doc_id)) == 3
    one = await (await client.delete(url, headers=auth, json={"chunk_ids": ids[:1], "delete_all": False})).get_json()
    assert (one["code"], one["message"]) == (0, "deleted 1 chunks")
    everything = await (await client.delete(url, headers=auth, json={"chunk_ids": None, "delete_all": True}))\
        .get_json()
    assert (everything["code"], everything["message"]) == (0, "deleted 2 chunks")
    assert await counters(client, auth, dataset_id, doc_id) == (0, 0, 0, 0)


async def test_v022_empty_list_deletes_every_chunk_as_it_did(client, auth, make_key) -> None:
    v022 = {"Authorization": f"Bearer {make_key('initech')}"}
    dataset_id, doc_id, _ = await with_chunks(client, v022, 2)
    reply = await (await client.delete(chunks_url(dataset_id, doc_id), headers=v022, json={"chunk_ids": []}))\
        .get_json()
    assert reply["code"] == 0 and await listed_ids(client, v022, dataset_id, doc_id) == []


async def test_tags_are_searchable_and_follow_edits(client, auth) -> None:
    """A chunk's tags are matched like its keywords: retrieval by a tag word finds it, and
    editing keywords keeps the tags searchable while editing tags replaces them."""
    dataset_id, doc_id = await new_document(client, auth)
    chunk_id = (await add(client, auth, dataset_id, doc_id, "quarterly revenue figures",
                          important_keywords=["finance"], tag_kwd=["zeppelin"]))["data"]["chunk"]["id"]

    async def retrieved(word: str) -> dict:
        body = {"question": word, "dataset_ids": [dataset_id], "vector_similarity_weight": 0.0}
        reply = await (await client.post("/api/v1/retrieval", headers=auth, json=body)).get_json()
        return {chunk["id"]: chunk for chunk in reply["data"]["chunks"]}

    async def found(word: str) -> bool:
        return chunk_id in await retrieved(word)

    assert await found("zeppelin") and await found("finance")
    assert (await retrieved("zeppelin"))[chunk_id]["tag_kwd"] == ["zeppelin"]
    url = f"{chunks_url(dataset_id, doc_id)}/{chunk_id}"
    assert (await (await client.put(url, headers=auth, json={"important_keywords": ["ledger"]})).get_json())["code"] == 0
    assert await found("zeppelin") and await found("ledger") and not await found("finance")
    assert (await (await client.put(url, headers=auth, json={"tag_kwd": ["airship"]})).get_json())["code"] == 0
    assert await found("airship") and await found("ledger") and not await found("zeppelin")
    assert (await retrieved("airship"))[chunk_id]["tag_kwd"] == ["airship"]
