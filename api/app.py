"""``create_app(settings)``: the Quart app with its blueprints, hooks, error handlers and lifespan.

Request hooks do the per-request work exactly once: a request id, the tenant behind the API
key, and one JSON log line plus metrics when the response leaves.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from quart import Quart, Response, g, has_request_context, jsonify, request, websocket
from quart.json.provider import DefaultJSONProvider
from werkzeug.exceptions import HTTPException

from api.apps import BLUEPRINTS
from api.apps.llm_app import run_job
from api.components import EXTENSION_KEY, Components, build_components
from api.db.migrate import upgrade
from api.db.services import job_service, tenant_service
from api.errors import ApiError, RetCode
from api.observability import LoopLagMonitor
from api.settings import Settings
from api.utils.api_utils import error_body, error_status, uses_plain_http
from api.utils.auth import (
    PUBLIC_BLUEPRINTS,
    PUBLIC_PATHS,
    RAGFLOW_UNAUTHORIZED_MESSAGE,
    RAGFLOW_V022_MISSING_KEY_MESSAGE,
    presented_key,
)
from api.utils.compat import (
    DEFAULT_DIALECT,
    DIALECT_HEADER,
    auth_line_of_route,
    dialect_of_body,
    dialect_of_query,
    may_signal_dialect,
    parse_dialect_header,
    unsupported_feature_message,
)
from api.utils.http_request import LimitedRequest
from rag.svr.task_executor import TaskExecutor

log = logging.getLogger("ragline.app")
access_log = logging.getLogger("ragline.access")

REQUEST_ID_PATTERN = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")


def create_app(settings: Settings, parts: Components | None = None) -> Quart:
    """Build the app. ``parts`` lets a test hand in components it built itself."""
    parts = parts or build_components(settings)
    app = Quart("ragline")
    app.request_class = LimitedRequest
    app.config.update(MAX_CONTENT_LENGTH=settings.max_content_length, RESPONSE_TIMEOUT=None)
    app.json = GuardedJSONProvider(app)
    app.json.sort_keys = False
    app.json.ensure_ascii = False
    app.extensions[EXTENSION_KEY] = parts
    for blueprint in BLUEPRINTS:
        app.register_blueprint(blueprint)
    _install_request_hooks(app, parts)
    _install_error_handlers(app)
    _install_lifespan(app, parts)
    return app


class GuardedJSONProvider(DefaultJSONProvider):
    """Quart's JSON, except that a body nested deeper than Python's recursion limit is bad JSON
    (a ``ValueError``, which every body parser already turns into a 4xx), not a RecursionError
    that escapes as a 500."""

    def loads(self, s: str | bytes, **kwargs: Any) -> Any:
        try:
            return super().loads(s, **kwargs)
        except RecursionError:
            raise ValueError("JSON nested too deeply") from None


def build_executor(parts: Components, concurrency: int) -> TaskExecutor:
    """The task-queue workers: document parsing, and the gateway's background jobs."""
    return TaskExecutor(parts, concurrency=concurrency, handlers={job_service.KIND_LLM_JOB: run_job})


def _install_lifespan(app: Quart, parts: Components) -> None:
    lag_monitor = LoopLagMonitor(parts.metrics, parts.settings.loop_lag_interval)
    workers = parts.settings.ingest_workers
    executor = build_executor(parts, workers) if workers else None

    @app.before_serving
    async def start() -> None:
        loop = asyncio.get_running_loop()
        loop.set_default_executor(
            ThreadPoolExecutor(max_workers=parts.settings.worker_threads, thread_name_prefix="ragline-worker")
        )
        applied = await loop.run_in_executor(None, upgrade, parts.db)
        if applied:
            log.info("database migrated", extra={"fields": {"applied": applied}})
        issued = await parts.db.run(tenant_service.bootstrap_default_tenant)
        if issued is not None:
            _announce_bootstrap_key(issued)
        lag_monitor.start()
        if executor is not None:
            executor.start()

    @app.after_serving
    async def stop() -> None:
        if executor is not None:
            await executor.stop(grace=parts.settings.graceful_timeout)
        await lag_monitor.stop()
        await parts.aclose()


def _announce_bootstrap_key(issued: tenant_service.IssuedKey) -> None:
    print(
        f"Ragline: created tenant '{issued.tenant_name}'. Its API key (shown once, keep it):\n"
        f"  {issued.key}\n"
        f"  curl -H 'Authorization: Bearer {issued.key}' http://HOST:PORT/api/v1/datasets",
        flush=True,
    )


def _install_request_hooks(app: Quart, parts: Components) -> None:
    @app.before_request
    async def identify() -> None:
        incoming = request.headers.get("X-Request-ID", "")
        g.request_id = incoming if REQUEST_ID_PATTERN.match(incoming) else uuid.uuid4().hex
        g.started = time.perf_counter()
        g.tenant_id = None
        if request.url_rule is None or request.path in PUBLIC_PATHS or request.blueprint in PUBLIC_BLUEPRINTS:
            return
        key = presented_key(request.headers.get("Authorization"), None)  # ?token= is the WebSocket's only
        if not key and not uses_plain_http(request.path):
            raise _missing_key_error(parts)
        g.tenant_id = await _tenant_of(parts, key)
        g.dialect = await _client_dialect(parts)

    @app.before_websocket
    async def identify_socket() -> None:
        g.request_id = uuid.uuid4().hex
        g.tenant_id = None
        if websocket.url_rule is None:
            return
        key = presented_key(websocket.headers.get("Authorization"), websocket.args.get("token"))
        g.tenant_id = await parts.tenant_resolver.resolve(key)

    @app.after_request
    async def account(response: Response) -> Response:
        request_id = g.get("request_id") or uuid.uuid4().hex
        response.headers["X-Request-ID"] = request_id
        elapsed = time.perf_counter() - g.get("started", time.perf_counter())
        route = request.url_rule.rule if request.url_rule is not None else "<unmatched>"
        parts.metrics.observe_request(route, request.method, response.status_code, elapsed)
        access_log.info(
            "request",
            extra={"fields": {
                "request_id": request_id, "tenant": g.get("tenant_id"), "method": request.method,
                "route": route, "path": request.path, "status": response.status_code,
                "duration_ms": round(elapsed * 1000, 2),
            }},
        )
        return response


async def _tenant_of(parts: Components, key: str) -> str:
    """The key's tenant. A wrong key on a RAGFlow route is 109 as v0.22 says it, or 401 as v0.27
    says it when the client at this address has shown v0.27 (a bad key has no tenant to ask)."""
    try:
        return await parts.tenant_resolver.resolve(key)
    except ApiError as error:
        if (error.code == RetCode.AUTHENTICATION_ERROR and not uses_plain_http(request.path)
                and _auth_answer_line(parts) == "0.27"):
            raise ApiError(RetCode.UNAUTHORIZED, RAGFLOW_UNAUTHORIZED_MESSAGE) from None
        raise


def _missing_key_error(parts: Components) -> ApiError:
    """No key on a RAGFlow route: v0.27 answers 401; v0.22 answers code 0 with ``data: false``
    and a sentence naming the header (its clients and test suites rely on that exact answer)."""
    if _auth_answer_line(parts) == "0.27":
        return ApiError(RetCode.UNAUTHORIZED, RAGFLOW_UNAUTHORIZED_MESSAGE)
    return ApiError(RetCode.SUCCESS, RAGFLOW_V022_MISSING_KEY_MESSAGE)


def _auth_answer_line(parts: Components) -> str | None:
    """Whose words an auth failure here is answered in: the route's own, where RAGFlow v0.27
    answers the same on every line, else the line this client address last showed."""
    return auth_line_of_route(request.method, request.path) or parts.dialects.known(_address_key())


def _address_key() -> str:
    return f"address:{request.remote_addr}"


async def _client_dialect(parts: Components) -> str:
    """The RAGFlow API line this request's client speaks (see ``api.utils.compat``), remembered
    per tenant. Only bodies that can carry a signal are read (Quart caches the parsed JSON)."""
    said = parse_dialect_header(request.headers.get(DIALECT_HEADER))
    if said is None and may_signal_dialect(request.method, request.path):
        body = await request.get_json(force=True, silent=True) if request.method != "PATCH" else None
        said = dialect_of_body(request.method, request.path, body)
    if said is None:
        said = dialect_of_query(request.method, request.path, request.args.keys())
    line = await _tenant_line(parts, g.tenant_id, said)
    parts.dialects.remember(_address_key(), line)  # key-less and bad-key answers from here follow it
    return line


async def _tenant_line(parts: Components, tenant_id: str, said: str | None) -> str:
    """The tenant's line: what this request said (persisted when it changed), else what its
    client showed before, in this process or (first request after a restart) on its row."""
    if said is not None:
        if parts.dialects.remember(tenant_id, said):
            await parts.db.run(tenant_service.set_api_line, tenant_id, said)
        return said
    known = parts.dialects.known(tenant_id)
    if known is None:
        stored = await parts.db.run(tenant_service.api_line_of, tenant_id)
        known = stored if stored in ("0.22", "0.27") else DEFAULT_DIALECT
        parts.dialects.remember(tenant_id, known)
    return known


def _install_error_handlers(app: Quart) -> None:
    @app.errorhandler(ApiError)
    async def api_error(error: ApiError) -> tuple[Response, int]:
        path = request.path if has_request_context() else websocket.path
        return jsonify(error_body(error.code, error.message)), error_status(error, path)

    @app.errorhandler(HTTPException)
    async def http_error(error: HTTPException) -> tuple[Response, int]:
        status = error.code or 500
        method, path = (request.method, request.path) if has_request_context() else ("GET", websocket.path)
        unsupported = unsupported_feature_message(path) if status in (404, 405) else None
        if unsupported is not None:
            return jsonify(error_body(RetCode.NOT_FOUND, unsupported)), 200
        messages = {
            404: f"No route for {method} {path}.",
            405: f"Method {method} is not allowed on {path}.",
            413: f"The request body is larger than the limit of {app.config['MAX_CONTENT_LENGTH']} bytes.",
        }
        return jsonify(error_body(status, messages.get(status, error.description or error.name))), status

    @app.errorhandler(Exception)
    async def unexpected(error: Exception) -> tuple[Response, int]:
        log.exception("unhandled error", extra={"fields": {"request_id": g.get("request_id")}})
        message = f"Internal error; quote request id {g.get('request_id')} when reporting it."
        return jsonify(error_body(RetCode.EXCEPTION_ERROR, message)), 500
