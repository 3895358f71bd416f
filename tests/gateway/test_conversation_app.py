"""/v1/conversation/*: set, get, list, rm and completion through the shared pipeline."""

from __future__ import annotations

import json

import pytest


async def test_conversation_lifecycle_and_completion(client, auth, stub_llm) -> None:
    stub_llm.configure(reply="Paris is the capital.")
    created = await (await client.post("/v1/conversation/set", headers=auth,
                                       json={"name": "geo", "system_prompt": "Answer briefly."})).get_json()
    conversation = created["data"]
    assert conversation["name"] == "geo" and conversation["messages"] == []

    response = await client.post("/v1/conversation/completion", headers=auth, json={
        "conversation_id": conversation["id"], "stream": True,
        "messages": [{"role": "user", "content": "Capital of France?"}]})
    lines = [line for line in (await response.get_data(as_text=True)).split("\n\n") if line.strip()]
    events = [json.loads(line.removeprefix("data:")) for line in lines]
    assert events[-1] == {"code": 0, "message": "", "data": True}
    assert events[-2]["data"]["answer"] == "Paris is the capital."
    assert stub_llm.chat_requests[-1].body["messages"][0]["content"].startswith("Answer briefly.")

    whole = await (await client.post("/v1/conversation/completion", headers=auth, json={
        "conversation_id": conversation["id"], "stream": False,
        "messages": [{"role": "user", "content": "Again?"}]})).get_json()
    assert whole["data"]["answer"] == "Paris is the capital."

    stored = await (await client.get(f"/v1/conversation/get?conversation_id={conversation['id']}",
                                     headers=auth)).get_json()
    assert [m["role"] for m in stored["data"]["messages"]] == ["user", "assistant", "user", "assistant"]
    listed = await (await client.get("/v1/conversation/list", headers=auth)).get_json()
    assert [c["id"] for c in listed["data"]] == [conversation["id"]]
    removed = await (await client.post("/v1/conversation/rm", headers=auth,
                                       json={"conversation_ids": [conversation["id"]]})).get_json()
    assert removed["code"] == 0
    gone = await client.get(f"/v1/conversation/get?conversation_id={conversation['id']}", headers=auth)
    assert gone.status_code == 404


@pytest.mark.parametrize(
    ("path", "body", "status"),
    [
        ("/v1/conversation/completion", {"conversation_id": "0" * 32, "messages": [{"role": "user",
                                                                                    "content": "x"}]}, 404),
        ("/v1/conversation/completion", {"conversation_id": "0" * 32, "messages": []}, 400),
        ("/v1/conversation/rm", {"conversation_ids": ["0" * 32]}, 404),
        ("/v1/conversation/set", {"dialog_id": "0" * 32}, 404),
    ],
)
async def test_bad_requests_use_http_statuses(client, auth, path, body, status) -> None:
    response = await client.post(path, headers=auth, json=body)
    assert response.status_code == status


async def test_another_tenant_cannot_read_a_conversation(client, make_key) -> None:
    acme = {"Authorization": f"Bearer {make_key('acme')}"}
    globex = {"Authorization": f"Bearer {make_key('globex')}"}
    made = (await (await client.post("/v1/conversation/set", headers=acme, json={"name": "secret"})).get_json())
    conversation_id = made["data"]["id"]
    response = await client.get(f"/v1/conversation/get?conversation_id={conversation_id}", headers=globex)
    assert response.status_code == 404
    assert (await (await client.get("/v1/conversation/list", headers=globex)).get_json())["data"] == []
