"""/api/v1/datasets through the app, and tenant isolation."""

from __future__ import annotations

import pytest


async def create(client, headers, **fields):
    return await (await client.post("/api/v1/datasets", headers=headers, json=fields)).get_json()


async def test_create_returns_the_full_dataset_with_defaults(client, auth) -> None:
    body = await create(client, auth, name="Papers", description="abstracts")
    assert body["code"] == 0
    dataset = body["data"]
    assert len(dataset["id"]) == 32 and dataset["name"] == "Papers"
    assert dataset["embedding_model"] == "all-MiniLM-L6-v2@Builtin"
    assert dataset["chunk_method"] == "naive" and dataset["permission"] == "me"
    assert dataset["parser_config"]["chunk_token_num"] > 0
    assert dataset["chunk_count"] == dataset["document_count"] == 0
    assert isinstance(dataset["create_time"], int) and dataset["create_date"].endswith("GMT")


async def test_ragflow_sdk_nulls_are_accepted(client, auth) -> None:
    body = await create(client, auth, name="n", avatar=None, description=None, embedding_model=None,
                        permission="me", chunk_method="naive")
    assert body["code"] == 0 and body["data"]["embedding_model"] == "all-MiniLM-L6-v2@Builtin"


@pytest.mark.parametrize(
    ("fields", "fragment"),
    [
        ({}, "name"),
        ({"name": "   "}, "name"),
        ({"name": "x" * 129}, "name"),
        ({"name": "a", "permission": "world"}, "permission"),
        ({"name": "a", "chunk_method": "qa-magic"}, "chunk_method"),
        ({"name": "a", "embedding_model": "no-factory"}, "embedding_model"),
        ({"name": "a", "parser_config": {"chunk_token_num": 0}}, "chunk_token_num"),
        ({"name": "a", "unknown_field": 1}, "unknown_field"),
        ({"name": 12}, "name"),
    ],
)
async def test_bad_fields_are_argument_errors_and_create_nothing(client, auth, fields, fragment) -> None:
    body = await create(client, auth, **fields)
    assert body["code"] == 101 and fragment in body["message"]
    listed = await (await client.get("/api/v1/datasets", headers=auth)).get_json()
    assert listed["data"] == []


async def test_names_are_unique_ignoring_case(client, auth) -> None:
    assert (await create(client, auth, name="Papers"))["code"] == 0
    duplicate = await create(client, auth, name="PAPERS")
    assert duplicate["code"] == 102 and "already exists" in duplicate["message"]


async def test_list_pages_orders_and_filters(client, auth) -> None:
    for index in range(5):
        await create(client, auth, name=f"set-{index}")
    newest_first = await (await client.get("/api/v1/datasets?page=1&page_size=2", headers=auth)).get_json()
    assert [d["name"] for d in newest_first["data"]] == ["set-4", "set-3"]
    assert newest_first["total_datasets"] == 5
    oldest_first = await (await client.get("/api/v1/datasets?desc=False&page=2&page_size=2",
                                           headers=auth)).get_json()
    assert [d["name"] for d in oldest_first["data"]] == ["set-2", "set-3"]
    by_name = await (await client.get("/api/v1/datasets?name=SET-1", headers=auth)).get_json()
    assert [d["name"] for d in by_name["data"]] == ["set-1"]
    by_id = await (await client.get(f"/api/v1/datasets?id={by_name['data'][0]['id']}", headers=auth)).get_json()
    assert by_id["data"][0]["name"] == "set-1"
    bad = await (await client.get("/api/v1/datasets?page=0", headers=auth)).get_json()
    assert bad["code"] == 101


async def test_update_changes_only_given_fields(client, auth) -> None:
    dataset = (await create(client, auth, name="old", description="keep"))["data"]
    response = await client.put(f"/api/v1/datasets/{dataset['id']}", headers=auth,
                                json={"name": "new", "parser_config": {"chunk_token_num": 128}})
    updated = (await response.get_json())["data"]
    assert updated["name"] == "new" and updated["description"] == "keep"
    assert updated["parser_config"]["chunk_token_num"] == 128
    assert updated["parser_config"]["delimiter"] == dataset["parser_config"]["delimiter"]


async def test_the_embedding_model_of_a_dataset_with_chunks_is_fixed(client, auth, parts) -> None:
    from api.db.models import Knowledgebase

    dataset = (await create(client, auth, name="fixed"))["data"]
    parts.db.call(lambda: Knowledgebase.update(chunk_num=3).where(Knowledgebase.id == dataset["id"]).execute())
    body = await (await client.put(f"/api/v1/datasets/{dataset['id']}", headers=auth,
                                   json={"embedding_model": "text-embedding-3-small@OpenAI"})).get_json()
    assert body["code"] == 102
    listed = await (await client.get(f"/api/v1/datasets?id={dataset['id']}", headers=auth)).get_json()
    assert listed["data"][0]["embedding_model"] == "all-MiniLM-L6-v2@Builtin"


async def test_delete_is_all_or_nothing(client, auth) -> None:
    keep = (await create(client, auth, name="keep"))["data"]
    drop = (await create(client, auth, name="drop"))["data"]
    refused = await (await client.delete("/api/v1/datasets", headers=auth,
                                         json={"ids": [drop["id"], "0" * 32]})).get_json()
    assert refused["code"] == 102
    assert (await (await client.get("/api/v1/datasets", headers=auth)).get_json())["total_datasets"] == 2
    done = await (await client.delete("/api/v1/datasets", headers=auth, json={"ids": [drop["id"]]})).get_json()
    assert done["code"] == 0
    left = await (await client.get("/api/v1/datasets", headers=auth)).get_json()
    assert [d["id"] for d in left["data"]] == [keep["id"]]
    missing_ids = await (await client.delete("/api/v1/datasets", headers=auth, json={})).get_json()
    assert missing_ids["code"] == 101


async def test_two_tenants_never_see_each_others_datasets(client, make_key) -> None:
    acme = {"Authorization": f"Bearer {make_key('acme')}"}
    globex = {"Authorization": f"Bearer {make_key('globex')}"}
    secret = (await create(client, acme, name="acme-secret"))["data"]
    assert (await create(client, globex, name="acme-secret"))["code"] == 0

    listed = await (await client.get("/api/v1/datasets", headers=globex)).get_json()
    assert [d["tenant_id"] for d in listed["data"]] != [secret["tenant_id"]]
    assert all(d["id"] != secret["id"] for d in listed["data"])
    by_id = await (await client.get(f"/api/v1/datasets?id={secret['id']}", headers=globex)).get_json()
    assert by_id["code"] == 102
    update = await (await client.put(f"/api/v1/datasets/{secret['id']}", headers=globex,
                                     json={"name": "stolen"})).get_json()
    assert update["code"] == 102
    delete = await (await client.delete("/api/v1/datasets", headers=globex, json={"ids": [secret["id"]]})).get_json()
    assert delete["code"] == 102
    still = await (await client.get(f"/api/v1/datasets?id={secret['id']}", headers=acme)).get_json()
    assert still["data"][0]["name"] == "acme-secret"


async def test_default_chunk_size_fits_what_the_embedding_model_reads(client, auth) -> None:
    from rag.app.naive import BUILTIN_EMBEDDING_CHUNK_TOKENS

    builtin = (await create(client, auth, name="local"))["data"]
    remote = (await create(client, auth, name="remote", embedding_model="text-embedding-3-small@OpenAI"))["data"]
    explicit = (await create(client, auth, name="mine", parser_config={"chunk_token_num": 400}))["data"]
    assert builtin["parser_config"]["chunk_token_num"] == BUILTIN_EMBEDDING_CHUNK_TOKENS < 256
    assert remote["parser_config"]["chunk_token_num"] == 512
    assert explicit["parser_config"]["chunk_token_num"] == 400
