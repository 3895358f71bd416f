"""Liveness, component health, Prometheus metrics and key management."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel, ConfigDict, Field
from quart import Blueprint, Response, g, jsonify, request

from api.components import components
from api.db.models import Tenant
from api.db.services import task_service, tenant_service
from api.errors import data_error
from api.utils.api_utils import json_body, ok
from api.utils.auth import presented_key

bp = Blueprint("system", __name__)

HEALTH_CHECK_TIMEOUT = 5.0


@bp.get("/healthz")
async def healthz() -> Response:
    return jsonify({"status": "ok"})


async def _timed_check(check) -> dict[str, Any]:
    started = time.perf_counter()
    try:
        await asyncio.wait_for(check(), HEALTH_CHECK_TIMEOUT)
        status, detail = "ok", None
    except Exception as error:  # noqa: BLE001 - any failure is this component's status
        status, detail = "error", f"{type(error).__name__}: {error}"[:300]
    result: dict[str, Any] = {"status": status, "latency_ms": round((time.perf_counter() - started) * 1000, 2)}
    if detail:
        result["error"] = detail
    return result


@bp.get("/api/v1/system/healthz")
async def system_healthz() -> Response:
    checks = components().health_checks()
    results = await asyncio.gather(*(_timed_check(check) for check in checks.values()))
    by_name = dict(zip(checks, results, strict=True))
    overall = "ok" if all(r["status"] == "ok" for r in results) else "degraded"
    return ok({"status": overall, "components": by_name})


@bp.get("/metrics")
async def metrics() -> Response:
    parts = components()
    for state, count in (await parts.db.run(task_service.queue_depth)).items():
        parts.metrics.task_queue.labels(state=state).set(count)
    body = generate_latest(parts.metrics.registry)
    return Response(body, content_type=CONTENT_TYPE_LATEST)


class TokenRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field("", max_length=128)


@bp.post("/api/v1/system/tokens")
async def create_token() -> Response:
    """A new key for the caller's own tenant (keys for other tenants come from the CLI)."""
    body = await json_body(TokenRequest)
    tenant_id = g.tenant_id

    def issue() -> tenant_service.IssuedKey:
        return tenant_service.issue_key(Tenant.get_by_id(tenant_id), body.name)

    issued = await components().db.run(issue)
    return ok({"token": issued.key, "tenant_id": issued.tenant_id, "name": body.name})


@bp.get("/api/v1/system/tokens")
async def list_tokens() -> Response:
    """The caller's tenant's keys: id, label, prefix, creation time, and which one is in use,
    so a person (or script) can tell which to revoke. Keys themselves are never shown again."""
    digest = tenant_service.hash_key(presented_key(request.headers.get("Authorization"), None))
    keys = await components().db.run(tenant_service.list_keys, g.tenant_id, digest)
    return ok(keys)


@bp.delete("/api/v1/system/tokens/<token_id>")
async def revoke_token(token_id: str) -> Response:
    """Revoke one of the caller's tenant's keys; it stops working at once (the resolver's
    cache forgets it). Another tenant's key is "not found", and the last key is refused."""
    parts = components()
    try:
        digest = await parts.db.run(tenant_service.revoke_key, g.tenant_id, token_id)
    except tenant_service.LastKeyError as error:
        raise data_error(str(error)) from None
    if digest is None:
        raise data_error(f"No API key with id {token_id!r} in this tenant.")
    parts.tenant_resolver.forget(digest)
    return ok(True)
