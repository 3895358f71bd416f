"""``keyword: true`` on /api/v1/retrieval asks the tenant's chat model for keywords first."""

from __future__ import annotations

import pytest


@pytest.fixture
def settings(make_settings, stub_llm):
    return make_settings(llm_model="stub-chat@OpenAI-API-Compatible", llm_api_base=stub_llm.api_base,
                         ingest_workers=0)


async def test_keyword_true_asks_the_chat_model_for_keywords(client, auth, stub_llm) -> None:
    stub_llm.configure(reply="photosynthesis, chlorophyll")
    dataset = await (await client.post("/api/v1/datasets", headers=auth, json={"name": "kw"})).get_json()
    response = await client.post("/api/v1/retrieval", headers=auth, json={
        "dataset_ids": [dataset["data"]["id"]], "question": "how do plants eat light", "keyword": True})
    assert (await response.get_json())["code"] == 0
    asked = [r for r in stub_llm.chat_requests if "how do plants eat light" in str(r.body["messages"])]
    assert len(asked) == 1
