"""A dataset's embedding model is checked when it is set, not when its first document fails."""

from __future__ import annotations

import pytest


async def create(client, auth, **fields):
    return await (await client.post("/api/v1/datasets", headers=auth, json={"name": "d", **fields})).get_json()


@pytest.mark.parametrize(("model", "named"), [
    ("nope@Nowhere", "known factories: "),
    ("bge-m3@Builtin", "all-MiniLM-L6-v2@Builtin"),
])
async def test_an_embedding_model_nothing_serves_is_refused_with_the_known_names(client, auth, model, named):
    body = await create(client, auth, embedding_model=model)
    assert body["code"] == 101
    assert body["message"].startswith(f"Unsupported model: <{model}>") and named in body["message"]
    listed = await (await client.get("/api/v1/datasets", headers=auth)).get_json()
    assert listed["data"] == []  # nothing stored


async def test_served_embedding_models_are_accepted(client, auth):
    builtin = await create(client, auth, embedding_model="all-MiniLM-L6-v2@Builtin")
    remote = await create(client, auth, name="r", embedding_model="text-embedding-3-small@OpenAI")
    assert builtin["code"] == remote["code"] == 0


async def test_an_update_to_an_unserved_model_changes_nothing(client, auth):
    dataset = (await create(client, auth))["data"]
    response = await client.put(f"/api/v1/datasets/{dataset['id']}", headers=auth,
                                json={"embedding_model": "nope@Nowhere"})
    assert (await response.get_json())["code"] == 101
    again = await (await client.get(f"/api/v1/datasets/{dataset['id']}", headers=auth)).get_json()
    assert again["data"]["embedding_model"] == dataset["embedding_model"]
