"""Usage rows in the metadata database and their aggregates."""

from __future__ import annotations

import pytest

from api.db.models import Usage
from api.db.services.usage_service import MS_PER_DAY, UsageRow, UsageService


async def test_rows_and_totals(usage_service: UsageService) -> None:
    rows = [
        UsageRow("t1", "a@OpenAI", prompt_tokens=10, completion_tokens=5, cost=0.5, dialog_id="d1"),
        UsageRow("t1", "a@OpenAI", prompt_tokens=1, completion_tokens=1, cost=0.25, dialog_id="d2", attempts=3),
        UsageRow("t1", "b@Ollama", prompt_tokens=7, completion_tokens=0, cost=None, dialog_id="d1"),
        UsageRow("t2", "a@OpenAI", prompt_tokens=100, completion_tokens=100, cost=9.0),
    ]
    for row in rows:
        await usage_service.record(row)

    stored = await usage_service.db.run(usage_service.rows, "t1")
    assert [r.attempts for r in stored] == [1, 3, 1]

    by_model = await usage_service.totals("t1", group_by="model")
    assert by_model == [
        {"model": "a@OpenAI", "calls": 2, "prompt_tokens": 11, "completion_tokens": 6, "total_tokens": 17,
         "cost": pytest.approx(0.75), "calls_without_price": 0, "errors": 0, "avg_latency_ms": None,
         "currency": "USD"},
        {"model": "b@Ollama", "calls": 1, "prompt_tokens": 7, "completion_tokens": 0, "total_tokens": 7,
         "cost": None, "calls_without_price": 1, "errors": 0, "avg_latency_ms": None, "currency": "USD"},
    ]
    by_chat = {row["chat"]: row["calls"] for row in await usage_service.totals("t1", group_by="chat")}
    assert by_chat == {"d1": 2, "d2": 1}


async def test_totals_by_day_and_time_window(usage_service: UsageService) -> None:
    await usage_service.record(UsageRow("t1", "a@OpenAI", prompt_tokens=1))
    await usage_service.record(UsageRow("t1", "a@OpenAI", prompt_tokens=2))
    await usage_service.db.run(lambda: Usage.update(create_time=3 * MS_PER_DAY + 5).where(Usage.prompt_tokens == 1)
                               .execute())
    by_day = await usage_service.totals("t1", group_by="day")
    assert by_day[0]["day"] == 3 * MS_PER_DAY and by_day[0]["prompt_tokens"] == 1
    assert len(by_day) == 2
    recent = await usage_service.totals("t1", from_ms=4 * MS_PER_DAY)
    assert recent[0]["prompt_tokens"] == 2
