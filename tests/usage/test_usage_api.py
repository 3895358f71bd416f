"""GET /api/v1/usage: grouped totals for the caller's tenant only, windows, argument errors."""

from __future__ import annotations

from datetime import UTC, datetime

import httpx
import pytest
from openai import OpenAI

from api.db.models import Tenant, Usage
from api.db.services.usage_service import MS_PER_DAY
from tests.openai.conftest import STUB_MODEL, make_chat

DAY_3 = 3 * MS_PER_DAY
DAY_4 = 4 * MS_PER_DAY


@pytest.fixture
def settings(make_settings, stub_llm):
    return make_settings(llm_model=STUB_MODEL, llm_api_base=stub_llm.api_base, llm_timeout=10, llm_max_retries=0)


def tenant_id(parts, name: str) -> str:
    return parts.db.call(lambda: Tenant.get(Tenant.name == name).id)


@pytest.fixture
def seeded(parts, make_key) -> dict[str, str]:
    """Keys of two tenants; acme has four rows over two models, two chats and two days."""
    keys = {"acme": make_key("acme"), "globex": make_key("globex")}
    acme, globex = tenant_id(parts, "acme"), tenant_id(parts, "globex")
    rows = [
        dict(tenant_id=acme, model="a@OpenAI", dialog_id="d1", prompt_tokens=10, completion_tokens=5, cost=0.5,
             create_time=DAY_3 + 10),
        dict(tenant_id=acme, model="a@OpenAI", dialog_id="d2", prompt_tokens=1, completion_tokens=1, cost=0.25,
             create_time=DAY_3 + 20),
        dict(tenant_id=acme, model="b@Ollama", dialog_id="d1", prompt_tokens=7, completion_tokens=0, cost=None,
             create_time=DAY_4 + 10),
        dict(tenant_id=acme, model="e@Builtin", kind="embedding", prompt_tokens=3, cost=0.0, create_time=DAY_4 + 20),
        dict(tenant_id=globex, model="a@OpenAI", dialog_id="d9", prompt_tokens=100, completion_tokens=100,
             cost=9.0, create_time=DAY_3 + 30),
    ]
    parts.db.call(lambda: [Usage.create(**row) for row in rows])
    return keys


async def get_usage(client, key: str, **query) -> dict:
    response = await client.get("/api/v1/usage", query_string=query, headers={"Authorization": f"Bearer {key}"})
    assert response.status_code == 200
    return await response.get_json()


async def test_group_by_model_is_the_default_and_counts_only_the_callers_tenant(client, seeded) -> None:
    body = await get_usage(client, seeded["acme"])
    assert body["code"] == 0
    data = body["data"]
    assert data["group_by"] == "model"
    assert [(g["model"], g["calls"], g["prompt_tokens"], g["completion_tokens"]) for g in data["groups"]] == [
        ("a@OpenAI", 2, 11, 6), ("b@Ollama", 1, 7, 0), ("e@Builtin", 1, 3, 0)]
    assert data["groups"][0]["cost"] == pytest.approx(0.75)
    assert data["groups"][1]["cost"] is None and data["groups"][1]["calls_without_price"] == 1
    total = data["total"]
    assert (total["calls"], total["prompt_tokens"], total["completion_tokens"], total["total_tokens"]) == (4, 21, 6, 27)
    assert total["cost"] == pytest.approx(0.75) and total["currency"] == "USD"

    theirs = (await get_usage(client, seeded["globex"]))["data"]
    assert [(g["model"], g["prompt_tokens"]) for g in theirs["groups"]] == [("a@OpenAI", 100)]


async def test_group_by_chat_and_day(client, seeded) -> None:
    by_chat = (await get_usage(client, seeded["acme"], group_by="chat"))["data"]["groups"]
    assert {g["chat"]: g["calls"] for g in by_chat} == {None: 1, "d1": 2, "d2": 1}
    assert "d9" not in {g["chat"] for g in by_chat}

    by_day = (await get_usage(client, seeded["acme"], group_by="day"))["data"]["groups"]
    assert [(g["day"], g["calls"], g["prompt_tokens"]) for g in by_day] == [(DAY_3, 2, 11), (DAY_4, 2, 10)]


async def test_window_in_milliseconds_or_iso_dates(client, seeded) -> None:
    in_ms = (await get_usage(client, seeded["acme"], **{"from": DAY_3 + 15, "to": DAY_4 + 15}))["data"]
    assert in_ms["total"]["calls"] == 2 and in_ms["total"]["prompt_tokens"] == 8
    day_4 = datetime.fromtimestamp(DAY_4 / 1000, UTC).date().isoformat()
    by_date = (await get_usage(client, seeded["acme"], **{"from": day_4}))["data"]
    assert by_date["from"] == DAY_4
    assert by_date["total"]["calls"] == 2 and by_date["total"]["prompt_tokens"] == 10
    empty = (await get_usage(client, seeded["acme"], to=DAY_3))["data"]
    assert empty["groups"] == [] and empty["total"]["calls"] == 0 and empty["total"]["cost"] is None


@pytest.mark.parametrize("query", [
    {"group_by": "tenant"},
    {"group_by": "MODEL"},
    {"from": "yesterday"},
    {"from": DAY_4, "to": DAY_3},
])
async def test_bad_arguments_are_code_101(client, seeded, query) -> None:
    body = await get_usage(client, seeded["acme"], **query)
    assert body["code"] == 101 and body["message"]


async def test_needs_a_key(client) -> None:
    response = await client.get("/api/v1/usage")
    body = await response.get_json()
    assert body["message"] == "`Authorization` can't be empty" and "data" not in body


def test_a_chat_completion_shows_up_in_usage(live_server, stub_llm) -> None:
    setup = make_chat(live_server.url, live_server.key("acme"))
    stub_llm.configure(reply="The Eiffel Tower was completed in 1889 [ID:0].")
    answer = OpenAI(api_key=setup.key, base_url=setup.openai_base, max_retries=0).chat.completions.create(
        model="x", messages=[{"role": "user", "content": "When was the Eiffel Tower completed?"}])

    headers = {"Authorization": f"Bearer {setup.key}"}
    by_chat = httpx.get(f"{live_server.url}/api/v1/usage", params={"group_by": "chat"}, headers=headers).json()
    chat_row = next(g for g in by_chat["data"]["groups"] if g["chat"] == setup.chat_id)
    assert chat_row["calls"] == 1
    assert chat_row["prompt_tokens"] == answer.usage.prompt_tokens
    assert chat_row["completion_tokens"] == answer.usage.completion_tokens
    stored = live_server.parts.db.call(
        lambda: Usage.get(Usage.message_id == answer.id.removeprefix("chatcmpl-")))
    assert (stored.kind, stored.dialog_id, stored.prompt_tokens) == ("chat", setup.chat_id, answer.usage.prompt_tokens)
    assert stored.retrieval_ms is not None
    other = httpx.get(f"{live_server.url}/api/v1/usage", headers={"Authorization": f"Bearer {live_server.key('x')}"})
    assert other.json()["data"]["groups"] == []
