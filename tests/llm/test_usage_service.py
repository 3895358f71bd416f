"""Usage rows in the metadata database and their aggregates."""

from __future__ import annotations

import asyncio
import logging

import numpy as np
import pytest

from api.db.models import Usage
from api.db.services.llm_service import LLMBundle
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


class OneVector:
    """A sync embedding model: the same unit vector for every text, one token per text."""

    def encode(self, texts: list[str]) -> tuple[np.ndarray, int]:
        return np.ones((len(texts), 4), dtype=np.float32) / 2, len(texts)

    def encode_queries(self, text: str) -> tuple[np.ndarray, int]:
        return np.ones(4, dtype=np.float32) / 2, 1


class GatedUsage(UsageService):
    """Writes a row only once ``gate`` opens (or fails it when ``error`` is set)."""

    def __init__(self, db, error: Exception | None = None) -> None:
        super().__init__(db)
        self.gate = asyncio.Event()
        self.error = error

    async def record(self, row: UsageRow) -> None:
        await self.gate.wait()
        if self.error is not None:
            raise self.error
        await super().record(row)


async def test_an_embedding_returns_before_its_usage_row_is_written(meta_db, registry) -> None:
    usage = GatedUsage(meta_db)
    bundle = LLMBundle(registry, "t1", "one@Builtin", usage, kind="embedding", model=OneVector())
    vector, tokens = await asyncio.wait_for(bundle.encode_queries("what do cells do"), 5)
    assert vector.shape == (4,) and tokens == 1  # back while the row's write is still held

    totals = asyncio.ensure_future(usage.totals("t1"))
    await asyncio.sleep(0.05)
    assert not totals.done()  # the totals wait for the rows being written: none is missed
    usage.gate.set()
    assert [(t["model"], t["calls"], t["prompt_tokens"]) for t in await totals] == [("one@Builtin", 1, 1)]


async def test_a_usage_row_that_cannot_be_written_is_logged_not_raised(meta_db, registry, caplog) -> None:
    usage = GatedUsage(meta_db, error=RuntimeError("disk full"))
    bundle = LLMBundle(registry, "t1", "one@Builtin", usage, kind="embedding", model=OneVector())
    vectors, _ = await asyncio.wait_for(bundle.encode(["a", "b"]), 5)
    assert vectors.shape == (2, 4)
    usage.gate.set()
    with caplog.at_level(logging.ERROR):
        await asyncio.wait_for(usage.settled(), 5)
    assert "could not record usage of one@Builtin for tenant t1" in caplog.text
    assert await usage.totals("t1") == []
