"""Resolving a request's API key to its tenant: done once per request, in the app's hook.

Lookups are cached for a short time so a burst of requests with one key costs one database
round trip, not hundreds; the cache is per app and bounded.
"""

from __future__ import annotations

import time

from api.db.database import MetaDB
from api.db.services import tenant_service
from api.errors import ApiError, RetCode

PUBLIC_PATHS = frozenset({"/healthz", "/metrics", "/api/v1/system/healthz"})
# The web UI's static files (api/apps/ui_app.py): they hold no data; their scripts send the key.
PUBLIC_BLUEPRINTS = frozenset({"ui"})
# What RAGFlow (v0.27) answers on its /api/v1 routes when no key is presented, with code 401;
# its clients and test suites compare the message verbatim.
RAGFLOW_UNAUTHORIZED_MESSAGE = "<Unauthorized '401: Unauthorized'>"
# What RAGFlow v0.22 answers there instead, with code 0 and ``data: false``.
RAGFLOW_V022_MISSING_KEY_MESSAGE = "`Authorization` can't be empty"
CACHE_SECONDS = 30.0
CACHE_MAX_ENTRIES = 10_000


def presented_key(authorization: str | None, query_token: str | None) -> str:
    """The key from ``Authorization: Bearer <key>`` (or a bare key), else the ``token`` query."""
    if authorization:
        scheme, _, value = authorization.strip().partition(" ")
        return value.strip() if scheme.lower() == "bearer" else authorization.strip()
    return (query_token or "").strip()


class TenantResolver:
    def __init__(self, db: MetaDB) -> None:
        self.db = db
        self._cache: dict[str, tuple[str, float]] = {}

    async def resolve(self, key: str) -> str:
        """The tenant id of ``key``; raises the authentication error (109) otherwise."""
        if not key:
            raise ApiError(RetCode.AUTHENTICATION_ERROR, "Authentication error: API key is missing!")
        digest = tenant_service.hash_key(key)
        cached = self._cache.get(digest)
        if cached is not None and cached[1] > time.monotonic():
            return cached[0]
        tenant_id = await self.db.run(tenant_service.tenant_for_key, key)
        if tenant_id is None:
            raise ApiError(RetCode.AUTHENTICATION_ERROR, "Authentication error: API key is invalid!")
        if len(self._cache) >= CACHE_MAX_ENTRIES:
            self._cache.clear()
        self._cache[digest] = (tenant_id, time.monotonic() + CACHE_SECONDS)
        return tenant_id

    def forget(self, digest: str) -> None:
        """Drop a revoked key's cached tenant so it stops working now, not in CACHE_SECONDS."""
        self._cache.pop(digest, None)
