"""Chunk routes through the test client: counters stay true, availability, bad input, tenants.

Chunks are added by hand to uploaded (unparsed) documents, so no worker has to run: the
counters then move only because of the chunk routes under test.
"""

from __future__ import annotations

import pytest

from tests.api.test_documents_api import make_dataset, upload

pytestmark = pytest.mark.usefixtures("app")


async def new_document(client, auth, name="chunks") -> tuple[str, str]:
    dataset_id = await make_dataset(client, auth, name)
    body = await (await upload(client, auth, dataset_id, ("notes.txt", b"placeholder"))).get_json()
    return dataset_id, body["data"][0]["id"]


def chunks_url(dataset_id: str, doc_id: str) -> str:
    return f"/api/v1/datasets/{dataset_id}/documents/{doc_id}/chunks"


async def add(client, auth, dataset_id, doc_id, content, **extra) -> dict:
    return await (await client.post(chunks_url(dataset_id, doc_id), headers=auth,
                                    json={"content": content, **extra})).get_json()


async def counters(client, auth, dataset_id, doc_id) -> tuple[int, int, int, int]:
    """(document chunks, document tokens, dataset chunks, dataset tokens)."""
    docs = await (await client.get(f"/api/v1/datasets/{dataset_id}/documents?id={doc_id}",
                                   headers=auth)).get_json()
    datasets = await (await client.get(f"/api/v1/datasets?id={dataset_id}", headers=auth)).get_json()
    doc, dataset = docs["data"]["docs"][0], datasets["data"][0]
    return doc["chunk_count"], doc["token_count"], dataset["chunk_count"], dataset["token_num"]


async def retrieve(client, auth, dataset_ids, question, **extra) -> dict:
    body = {"dataset_ids": dataset_ids, "question": question, **extra}
    return await (await client.post("/api/v1/retrieval", headers=auth, json=body)).get_json()


async def listed_ids(client, auth, dataset_id, doc_id) -> list[str]:
    url = chunks_url(dataset_id, doc_id) + "?page_size=100"
    body = await (await client.get(url, headers=auth)).get_json()
    return [chunk["id"] for chunk in body["data"]["chunks"]]


async def test_counters_follow_add_update_and_delete(client, auth) -> None:
    dataset_id, doc_id = await new_document(client, auth)
    assert await counters(client, auth, dataset_id, doc_id) == (0, 0, 0, 0)

    first = await add(client, auth, dataset_id, doc_id, "Owls hunt at night.", important_keywords=["owl"])
    second = await add(client, auth, dataset_id, doc_id, "Larks sing at dawn over the barley fields.")
    assert first["code"] == 0 and second["code"] == 0
    chunk = first["data"]["chunk"]
    assert chunk["document_id"] == doc_id and chunk["dataset_id"] == dataset_id
    assert chunk["important_keywords"] == ["owl"] and len(chunk["id"]) == 32
    doc_chunks, doc_tokens, kb_chunks, kb_tokens = await counters(client, auth, dataset_id, doc_id)
    assert doc_chunks == kb_chunks == 2 and doc_tokens == kb_tokens > 0

    again = await add(client, auth, dataset_id, doc_id, "Owls hunt at night.", important_keywords=["owl"])
    assert again["data"]["chunk"]["id"] != chunk["id"]
    assert (await counters(client, auth, dataset_id, doc_id))[0] == 3, "as in RAGFlow, each add is a chunk"
    await client.delete(chunks_url(dataset_id, doc_id), headers=auth, json={"chunk_ids": [again["data"]["chunk"]["id"]]})

    longer = "Owls hunt at night over meadows, barns and silent woodland clearings."
    updated = await (await client.put(f"{chunks_url(dataset_id, doc_id)}/{chunk['id']}", headers=auth,
                                      json={"content": longer})).get_json()
    assert updated["code"] == 0 and updated["data"]["content"] == longer
    after_update = await counters(client, auth, dataset_id, doc_id)
    assert after_update[0] == 2 and after_update[1] == after_update[3] > doc_tokens

    deleted = await (await client.delete(chunks_url(dataset_id, doc_id), headers=auth,
                                         json={"chunk_ids": [chunk["id"]]})).get_json()
    assert deleted["code"] == 0
    remaining = await counters(client, auth, dataset_id, doc_id)
    assert remaining[0] == remaining[2] == 1 and 0 < remaining[1] == remaining[3] < after_update[1]
    assert await listed_ids(client, auth, dataset_id, doc_id) == [second["data"]["chunk"]["id"]]

    everything = await (await client.delete(chunks_url(dataset_id, doc_id), headers=auth,
                                            json={"chunk_ids": None})).get_json()
    assert everything["code"] == 0
    assert await counters(client, auth, dataset_id, doc_id) == (0, 0, 0, 0)


async def test_the_stored_token_count_follows_the_content(client, auth, parts) -> None:
    """Chats bound their prompts by the count stored with each chunk: an edit must renew it."""
    from api.db.models import Knowledgebase
    from rag.utils.doc_store_conn import index_name
    from rag.utils.token_utils import num_tokens

    dataset_id, doc_id = await new_document(client, auth, "token counts")
    chunk = (await add(client, auth, dataset_id, doc_id, "Owls hunt at night."))["data"]["chunk"]
    tenant_id = parts.db.call(lambda: Knowledgebase.get_by_id(dataset_id).tenant_id)

    def stored() -> int:
        return parts.doc_store.get(chunk["id"], index_name(tenant_id), [dataset_id])["token_num_int"]

    assert stored() == num_tokens("Owls hunt at night.")
    longer = "Owls hunt at night over meadows, barns and silent woodland clearings."
    await client.put(f"{chunks_url(dataset_id, doc_id)}/{chunk['id']}", headers=auth, json={"content": longer})
    assert stored() == num_tokens(longer)


async def test_unavailable_chunk_is_hidden_from_retrieval(client, auth) -> None:
    dataset_id, doc_id = await new_document(client, auth)
    chunk = await add(client, auth, dataset_id, doc_id, "The pangolin is covered in keratin scales.")
    chunk_id = chunk["data"]["chunk"]["id"]
    found = await retrieve(client, auth, [dataset_id], "pangolin scales")
    assert [c["id"] for c in found["data"]["chunks"]] == [chunk_id]

    url = f"{chunks_url(dataset_id, doc_id)}/{chunk_id}"
    hidden = await (await client.put(url, headers=auth, json={"available": False})).get_json()
    assert hidden["code"] == 0 and hidden["data"]["available"] is False
    assert (await retrieve(client, auth, [dataset_id], "pangolin scales"))["data"]["chunks"] == []
    listed = await (await client.get(chunks_url(dataset_id, doc_id), headers=auth)).get_json()
    assert listed["data"]["chunks"][0]["available"] is False, "the owner still sees it in the list"

    await client.put(url, headers=auth, json={"available": True})
    again = await retrieve(client, auth, [dataset_id], "pangolin scales")
    assert [c["id"] for c in again["data"]["chunks"]] == [chunk_id]


@pytest.mark.parametrize("body, code", [({}, 102), ({"content": ""}, 102), ({"content": "   \n\t"}, 102),
                                        ({"content": 5}, 101), ({"content": "ok", "important_keywords": "not-a-list"}, 102)])
async def test_bad_new_chunk_is_refused(client, auth, body, code) -> None:
    dataset_id, doc_id = await new_document(client, auth)
    reply = await (await client.post(chunks_url(dataset_id, doc_id), headers=auth, json=body)).get_json()
    assert reply["code"] == code and reply["message"]
    assert await counters(client, auth, dataset_id, doc_id) == (0, 0, 0, 0)


async def test_bad_update_and_unknown_ids(client, auth) -> None:
    dataset_id, doc_id = await new_document(client, auth)
    chunk_id = (await add(client, auth, dataset_id, doc_id, "Beavers build dams."))["data"]["chunk"]["id"]
    base = chunks_url(dataset_id, doc_id)

    blank = await (await client.put(f"{base}/{chunk_id}", headers=auth, json={"content": " "})).get_json()
    assert blank == {"code": 102, "message": "`content` is required"}
    unknown_chunk = await (await client.put(f"{base}/{'0' * 32}", headers=auth,
                                            json={"content": "x"})).get_json()
    assert unknown_chunk["code"] == 102
    unknown_doc = await (await client.get(chunks_url(dataset_id, "f" * 32), headers=auth)).get_json()
    assert unknown_doc["code"] == 102
    unknown_dataset = await add(client, auth, "e" * 32, doc_id, "text")
    assert unknown_dataset["code"] == 102

    other_dataset, other_doc = await new_document(client, auth, "other")
    moved = await (await client.put(f"{chunks_url(other_dataset, other_doc)}/{chunk_id}", headers=auth,
                                    json={"content": "hijack"})).get_json()
    assert moved["code"] == 102, "a chunk is only reachable through its own document"


async def test_delete_with_a_missing_id_deletes_the_others_and_says_so(client, auth) -> None:
    """RAGFlow's semantics (its p1 case): the ids that exist go, and the count is reported short."""
    dataset_id, doc_id = await new_document(client, auth)
    ids = [(await add(client, auth, dataset_id, doc_id, text))["data"]["chunk"]["id"]
           for text in ("Ravens are clever.", "Crows use tools.")]
    missing = "a" * 32
    reply = await (await client.delete(chunks_url(dataset_id, doc_id), headers=auth,
                                       json={"chunk_ids": [ids[0], missing]})).get_json()
    assert reply == {"code": 102, "message": "rm_chunk deleted chunks 1, expect 2"}
    assert await listed_ids(client, auth, dataset_id, doc_id) == [ids[1]]
    assert (await counters(client, auth, dataset_id, doc_id))[0] == 1


async def test_another_tenant_never_sees_chunks(client, auth, make_key) -> None:
    dataset_id, doc_id = await new_document(client, auth)
    added = await add(client, auth, dataset_id, doc_id, "Secret recipe: saffron rice.")
    chunk_id = added["data"]["chunk"]["id"]
    other = {"Authorization": f"Bearer {make_key('globex')}"}
    base = chunks_url(dataset_id, doc_id)

    listed = await (await client.get(base, headers=other)).get_json()
    assert listed["code"] == 102 and "saffron" not in str(listed)
    by_id = await (await client.get(f"{base}?id={chunk_id}", headers=other)).get_json()
    assert by_id["code"] == 102
    assert (await add(client, other, dataset_id, doc_id, "intruder"))["code"] == 102
    changed = await (await client.put(f"{base}/{chunk_id}", headers=other, json={"content": "x"})).get_json()
    assert changed["code"] == 102
    removed = await (await client.delete(base, headers=other, json={"chunk_ids": [chunk_id]})).get_json()
    assert removed["code"] == 102
    found = await retrieve(client, other, [dataset_id], "saffron rice")
    assert found["code"] == 102 and "saffron" not in str(found)

    own_dataset, own_doc = await new_document(client, other, "globex-data")
    foreign_ids = await retrieve(client, other, [own_dataset], "saffron rice", document_ids=[doc_id])
    assert foreign_ids["code"] == 102
    assert (await retrieve(client, other, [own_dataset], "saffron rice"))["data"]["chunks"] == []
    assert await listed_ids(client, auth, dataset_id, doc_id) == [chunk_id]


async def test_an_unusable_embedding_model_refuses_the_chunk_without_a_500(client, auth) -> None:
    # a provider Ragline knows, with no endpoint configured: accepted when set, unusable when called
    created = await (await client.post("/api/v1/datasets", headers=auth, json={
        "name": "unroutable", "embedding_model": "ghost-embedder@OpenAI-API-Compatible"})).get_json()
    dataset_id = created["data"]["id"]
    body = await (await upload(client, auth, dataset_id, ("notes.txt", b"placeholder"))).get_json()
    doc_id = body["data"][0]["id"]
    response = await client.post(chunks_url(dataset_id, doc_id), headers=auth, json={"content": "Hello there."})
    assert response.status_code == 200
    reply = await response.get_json()
    assert reply["code"] == 103 and "ghost-embedder@OpenAI-API-Compatible" in reply["message"]
    assert await counters(client, auth, dataset_id, doc_id) == (0, 0, 0, 0)
