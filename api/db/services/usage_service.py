"""Usage accounting: one row per model call, and the totals ``/api/v1/usage`` reports.

LLMBundle hands a ``UsageRow`` to a sink (``async record(row)``, or ``record_soon(row)`` where
a caller is waiting for the call's result). ``UsageService`` is the sink that writes the ``usage``
table through MetaDB's worker pool, so the loop never waits on the database; ``MemoryUsageSink``
keeps rows in a list for tests and benchmarks.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import asdict, dataclass
from typing import Any, Literal, Protocol

from peewee import fn

from api.db.compiled import insert_new
from api.db.database import MetaDB
from api.db.models import Usage

logger = logging.getLogger(__name__)

MS_PER_DAY = 86_400_000
GroupBy = Literal["model", "chat", "day", "arm"]
CLEAN_OUTCOMES = ("ok", "cached")  # every other outcome is an error of the call


@dataclass
class UsageRow:
    """What one call cost. ``cost`` is None when the model's price is unknown."""

    tenant_id: str
    model: str
    kind: str = "chat"
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost: float | None = None
    latency_ms: float | None = None
    ttft_ms: float | None = None
    attempts: int = 1
    outcome: str = "ok"
    dialog_id: str | None = None
    conversation_id: str | None = None
    message_id: str | None = None
    retrieval_ms: float | None = None
    arm: str | None = None  # the A/B arm that served (or failed) the call, when the model was an A/B group


class UsageSink(Protocol):
    async def record(self, row: UsageRow) -> None: ...

    def record_soon(self, row: UsageRow) -> None:
        """Write ``row`` without making the caller wait for the write; never raises."""


class MemoryUsageSink:
    """Keeps rows in memory (tests, benchmarks, scripts without a database)."""

    def __init__(self) -> None:
        self.rows: list[UsageRow] = []

    async def record(self, row: UsageRow) -> None:
        self.rows.append(row)

    def record_soon(self, row: UsageRow) -> None:
        self.rows.append(row)


class UsageService:
    """The database sink and the aggregates over it."""

    def __init__(self, db: MetaDB) -> None:
        self.db = db
        self._pending: set[asyncio.Future[None]] = set()  # held: the loop keeps only weak references

    async def record(self, row: UsageRow) -> None:
        await self.db.write(lambda: insert_new(Usage, asdict(row)))

    def record_soon(self, row: UsageRow) -> None:
        """Queue the row's write and return at once.

        For calls whose result a request is waiting on: a new question's embedding reached
        retrieval only after its usage row had committed, behind whatever the write queue held
        (in a chat, the turn's own write). The row is not lost: ``totals`` and shutdown
        (``settled``) wait for every write queued here.
        """
        write = asyncio.ensure_future(self.record(row))
        self._pending.add(write)
        write.add_done_callback(lambda done: self._written(done, row))

    def _written(self, write: asyncio.Future[None], row: UsageRow) -> None:
        self._pending.discard(write)
        error = None if write.cancelled() else write.exception()
        if error is not None:
            logger.error("could not record usage of %s for tenant %s", row.model, row.tenant_id, exc_info=error)

    async def settled(self) -> None:
        """Return once every row handed to ``record_soon`` so far is written (or failed)."""
        while self._pending:
            await asyncio.gather(*list(self._pending), return_exceptions=True)

    def rows(self, tenant_id: str) -> list[Usage]:
        """Rows of a tenant, oldest first (sync; call through ``db.call``/``db.run``)."""
        return list(Usage.select().where(Usage.tenant_id == tenant_id).order_by(Usage.create_time))

    async def totals(
        self, tenant_id: str, from_ms: int | None = None, to_ms: int | None = None, group_by: GroupBy = "model",
        chat_id: str | None = None,
    ) -> list[dict[str, Any]]:
        """Calls, tokens, cost, errors and mean latency per model, per chat (dialog), per day or
        per A/B arm, within [from, to), of one chat when ``chat_id`` is given; including the
        calls whose rows were still being written (``record_soon``)."""
        await self.settled()
        return await self.db.run(self._totals, tenant_id, from_ms, to_ms, group_by, chat_id)

    @staticmethod
    def _totals(tenant_id: str, from_ms: int | None, to_ms: int | None, group_by: GroupBy,
                chat_id: str | None = None) -> list[dict[str, Any]]:
        key = {
            "model": Usage.model,
            "chat": Usage.dialog_id,
            "day": (Usage.create_time / MS_PER_DAY).cast("INTEGER"),
            "arm": Usage.arm,
        }[group_by]
        query = Usage.select(
            key.alias("key"),
            fn.COUNT(Usage.id).alias("calls"),
            fn.SUM(Usage.prompt_tokens).alias("prompt_tokens"),
            fn.SUM(Usage.completion_tokens).alias("completion_tokens"),
            fn.SUM(Usage.cost).alias("cost"),
            fn.SUM(Usage.cost.is_null().cast("INTEGER")).alias("calls_without_price"),
            fn.SUM(Usage.outcome.not_in(CLEAN_OUTCOMES).cast("INTEGER")).alias("errors"),
            fn.AVG(Usage.latency_ms).alias("avg_latency_ms"),
        ).where(Usage.tenant_id == tenant_id)
        if group_by == "arm":
            query = query.where(Usage.arm.is_null(False))
        if chat_id is not None:
            query = query.where(Usage.dialog_id == chat_id)
        if from_ms is not None:
            query = query.where(Usage.create_time >= from_ms)
        if to_ms is not None:
            query = query.where(Usage.create_time < to_ms)
        rows = query.group_by(key).order_by(key).dicts()
        totals = []
        for row in rows:
            prompt, completion = int(row["prompt_tokens"] or 0), int(row["completion_tokens"] or 0)
            key_value = row["key"]
            if group_by == "day" and key_value is not None:
                key_value = int(key_value) * MS_PER_DAY
            totals.append(
                {
                    group_by: key_value,
                    "calls": row["calls"],
                    "prompt_tokens": prompt,
                    "completion_tokens": completion,
                    "total_tokens": prompt + completion,
                    "cost": row["cost"],
                    "calls_without_price": int(row["calls_without_price"] or 0),
                    "errors": int(row["errors"] or 0),
                    "avg_latency_ms": None if row["avg_latency_ms"] is None else round(float(row["avg_latency_ms"]), 3),
                    "currency": "USD",
                }
            )
        return totals
