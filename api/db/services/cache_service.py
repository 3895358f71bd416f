"""The response cache: an exact repeat of a model call is answered from the database.

Opt-in per chat assistant (``llm_setting.response_cache``) and per gateway request
(``cache: true``). The key hashes the tenant, the model, every prompt message (system prompt,
knowledge and history included) and the validated generation parameters, so only the very
same call finds an answer, and never another tenant's: the tenant is in the key and every
lookup also filters on the row's tenant. A sampled call (temperature > 0) is meant to vary, so
it bypasses the cache unless the caller asks for it (``cache_sampled``). Entries live for the
server's ``response_cache_ttl`` seconds (0 switches the cache off).

A cached answer costs nothing: it carries the original call's token counts for the caller to
see, and is accounted as a usage row of zero tokens and zero cost with outcome ``cached``.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from peewee import IntegrityError

from api.db.models import ResponseCache, now_ms

if TYPE_CHECKING:
    from api.db.database import MetaDB
    from api.observability import Metrics

HIT, MISS, BYPASS = "hit", "miss", "bypass"
PURGE_INTERVAL_SECONDS = 60.0


@dataclass(frozen=True)
class CachePolicy:
    """What a request asked for: ``enabled`` uses the cache, ``sampled`` also for temperature > 0."""

    enabled: bool = False
    sampled: bool = False

    @classmethod
    def of_settings(cls, llm_setting: dict[str, Any] | None) -> CachePolicy:
        """A chat assistant's policy, from its ``llm_setting`` (``response_cache``, ``response_cache_sampled``)."""
        setting = llm_setting or {}
        return cls(bool(setting.get("response_cache")), bool(setting.get("response_cache_sampled")))

    def bypasses(self, gen_conf: dict[str, Any]) -> bool:
        """True when a sampled call must reach the model anyway."""
        return float(gen_conf.get("temperature") or 0) > 0 and not self.sampled


@dataclass(frozen=True)
class CachedAnswer:
    """A stored answer and what producing it cost the first time."""

    text: str
    model: str
    prompt_tokens: int
    completion_tokens: int
    cost: float | None


def cache_key(tenant_id: str, model: str, messages: list[dict[str, Any]], gen_conf: dict[str, Any]) -> str:
    """SHA-256 of everything that decides the answer, in a canonical JSON form."""
    material = json.dumps({"tenant": tenant_id, "model": model, "messages": messages, "params": gen_conf},
                          sort_keys=True, ensure_ascii=False, separators=(",", ":"), default=str)
    return hashlib.sha256(material.encode("utf-8")).hexdigest()


class ResponseCacheStore:
    """Lookups and stores through the metadata database's worker threads, counted in the metrics."""

    def __init__(self, db: MetaDB, ttl_seconds: float, metrics: Metrics | None = None) -> None:
        self.db = db
        self.ttl_seconds = ttl_seconds
        self.metrics = metrics
        self._last_purge = 0.0

    @property
    def active(self) -> bool:
        return self.ttl_seconds > 0

    def count(self, outcome: str) -> None:
        if self.metrics is not None:
            self.metrics.response_cache.labels(outcome=outcome).inc()

    async def lookup(self, tenant_id: str, key: str) -> CachedAnswer | None:
        """The live answer stored under ``key`` for this tenant; counts a hit or a miss."""
        found = await self.db.run(_read, tenant_id, key)
        self.count(HIT if found is not None else MISS)
        if found is not None:
            await self.db.write(_count_hit, key)
        return found

    async def store(self, tenant_id: str, key: str, answer: CachedAnswer) -> None:
        """Keep ``answer`` for the TTL (replacing an expired one); expired rows are purged now and then."""
        purge = time.monotonic() - self._last_purge >= PURGE_INTERVAL_SECONDS
        if purge:
            self._last_purge = time.monotonic()
        await self.db.write(_write, tenant_id, key, answer, now_ms() + int(self.ttl_seconds * 1000), purge)


def _read(tenant_id: str, key: str) -> CachedAnswer | None:
    row = ResponseCache.get_or_none((ResponseCache.key == key) & (ResponseCache.tenant_id == tenant_id)
                                    & (ResponseCache.expires_time > now_ms()))
    if row is None:
        return None
    return CachedAnswer(row.answer, row.model, row.prompt_tokens, row.completion_tokens, row.cost)


def _count_hit(key: str) -> None:
    ResponseCache.update(hits=ResponseCache.hits + 1).where(ResponseCache.key == key).execute()


def _write(tenant_id: str, key: str, answer: CachedAnswer, expires: int, purge: bool) -> None:
    with ResponseCache._meta.database.atomic():
        if purge:
            ResponseCache.delete().where(ResponseCache.expires_time <= now_ms()).execute()
        ResponseCache.delete().where(ResponseCache.key == key).execute()
        try:
            with ResponseCache._meta.database.atomic():
                ResponseCache.create(tenant_id=tenant_id, key=key, model=answer.model, answer=answer.text,
                                     prompt_tokens=answer.prompt_tokens, completion_tokens=answer.completion_tokens,
                                     cost=answer.cost, expires_time=expires)
        except IntegrityError:  # the same call, answered at the same time elsewhere, stored first
            pass
