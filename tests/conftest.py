"""Fixtures every test module may use: settings on a temp dir, databases, the app, a live server.

Database-backed tests run on SQLite always and on PostgreSQL and MariaDB/MySQL whenever they
answer (``TEST_POSTGRES_URL`` / ``TEST_MYSQL_URL``); each test gets a database of its own,
created and dropped around it.
"""

from __future__ import annotations

import asyncio
import os
import socket
import threading
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import pytest

import rag  # noqa: F401  - sets the offline environment before any model library loads
from api.app import create_app
from api.components import Components, build_components
from api.db.services import tenant_service
from api.settings import Settings, load_settings
from rag.llm.embedding_model import BuiltinEmbedding

BUILTIN_EMBEDDING = "all-MiniLM-L6-v2@Builtin"

pytest_plugins = ["tests.fixtures.stub_llm"]

POSTGRES_URL = os.environ.get("TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
MYSQL_URL = os.environ.get("TEST_MYSQL_URL", "mysql://root@127.0.0.1:3306/test")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_for_url(url: str, seconds: float = 60) -> None:
    """Block until ``url`` answers 200 (a server or stub started as a process or thread)."""
    import time

    import httpx

    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{url} did not answer within {seconds:.0f} s")


def sql_traced(db, fn: Callable[[], object]) -> tuple[object, list[str]]:
    """``fn()``'s result on ``db``'s SQLite connection (``MetaDB.call``) and the SQL statements it sent."""
    statements: list[str] = []

    def traced() -> object:
        db.database.connection().set_trace_callback(statements.append)
        try:
            return fn()
        finally:
            db.database.connection().set_trace_callback(None)

    return db.call(traced), statements


def _answers(url: str) -> bool:
    parsed = urlparse(url)
    try:
        with socket.create_connection((parsed.hostname or "127.0.0.1", parsed.port or 0), timeout=1):
            return True
    except OSError:
        return False


def _server_admin(url: str) -> tuple[Callable[[str], None], str]:
    """A function running one admin statement on the server of ``url``, and the URL sans db."""
    parsed = urlparse(url)
    base = url[: url.rfind("/")]
    if parsed.scheme.startswith("postgres"):
        import psycopg2

        def run(sql: str) -> None:
            conn = psycopg2.connect(url.replace("postgresql://", "postgres://", 1))
            conn.autocommit = True
            with conn.cursor() as cursor:
                cursor.execute(sql)
            conn.close()
    else:
        import pymysql

        def run(sql: str) -> None:
            conn = pymysql.connect(host=parsed.hostname, port=parsed.port or 3306, user=parsed.username or "root",
                                   password=parsed.password or "", autocommit=True)
            with conn.cursor() as cursor:
                cursor.execute(sql)
            conn.close()
    return run, base


@pytest.fixture
def fresh_database_url(tmp_path: Path) -> Iterator[Callable[[str], str]]:
    """Make a brand-new empty database on a backend ('sqlite', 'postgres', 'mysql'); dropped after."""
    dropped: list[Callable[[], None]] = []

    def make(backend: str) -> str:
        if backend == "sqlite":
            return f"sqlite:///{tmp_path / f'meta-{uuid.uuid4().hex[:8]}.db'}"
        server_url = POSTGRES_URL if backend == "postgres" else MYSQL_URL
        if not _answers(server_url):
            pytest.skip(f"{backend} does not answer at {server_url}")
        run, base = _server_admin(server_url)
        name = f"ragline_t_{uuid.uuid4().hex[:12]}"
        run(f"CREATE DATABASE {name}")
        dropped.append(lambda: run(f"DROP DATABASE IF EXISTS {name}"))
        return f"{base}/{name}"

    yield make
    for drop in dropped:
        drop()


@pytest.fixture(params=["sqlite", "postgres", "mysql"])
def db_backend(request: pytest.FixtureRequest) -> str:
    """Parametrize a test over every metadata backend."""
    return request.param


@pytest.fixture
def make_settings(tmp_path: Path) -> Callable[..., Settings]:
    """Settings from the YAML defaults only (the caller's environment is ignored) on a temp dir."""

    def make(**overrides) -> Settings:
        overrides.setdefault("data_dir", tmp_path / "data")
        overrides.setdefault("port", free_port())
        # Searches run in the compute threads unless a test asks for search processes: a spawned
        # child costs about a second, per app (tests/retrieval/test_search_processes.py covers them).
        overrides.setdefault("search_processes", 0)
        overrides.setdefault("embed_processes", 0)  # likewise (tests/llm/test_embedding_processes.py)
        return load_settings(environ={}, **overrides)

    return make


@pytest.fixture
def settings(make_settings: Callable[..., Settings]) -> Settings:
    return make_settings()


@pytest.fixture(scope="session")
def builtin_embedding() -> BuiltinEmbedding:
    """The builtin MiniLM model, shared by every test: it loads (lazily) once per session."""
    return BuiltinEmbedding()


@pytest.fixture
def make_parts(builtin_embedding: BuiltinEmbedding) -> Iterator[Callable[[Settings], Components]]:
    """Build components for some settings, with the session's builtin embedding model."""
    built: list[Components] = []

    def make(settings: Settings) -> Components:
        parts = build_components(settings)
        parts.registry.register(BUILTIN_EMBEDDING, builtin_embedding, kind="embedding")
        built.append(parts)
        return parts

    yield make
    for parts in built:
        parts.close()


@pytest.fixture
def parts(settings: Settings, make_parts: Callable[[Settings], Components]) -> Components:
    return make_parts(settings)


@pytest.fixture
async def app(settings: Settings, parts: Components) -> AsyncIterator:
    """The app with its lifespan run (migrations, thread pool, background samplers)."""
    quart_app = create_app(settings, parts)
    async with quart_app.test_app() as test_app:
        yield test_app


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def make_key(parts: Components) -> Callable[[str], str]:
    """Issue an API key for a tenant (created if needed) straight through the service layer."""

    def make(tenant: str = "acme") -> str:
        return parts.db.call(tenant_service.create_key_for, tenant).key

    return make


@pytest.fixture
def auth(make_key: Callable[[str], str]) -> dict[str, str]:
    return {"Authorization": f"Bearer {make_key('acme')}"}


@dataclass
class LiveServer:
    url: str
    settings: Settings
    parts: Components
    loop: asyncio.AbstractEventLoop
    stop: asyncio.Event

    def key(self, tenant: str = "acme") -> str:
        return self.parts.db.call(tenant_service.create_key_for, tenant).key


def _app_despite_cpython_ast_race(settings: Settings, parts: Components):
    """``create_app``, built in the calling thread, and once more after CPython 3.11's AST race.

    Werkzeug compiles URL rules with ``ast.parse``, and on 3.11 the AST converter keeps its
    recursion depth per interpreter, not per thread: another thread's ``ast.parse`` meanwhile
    fails this one with "SystemError: AST constructor recursion depth mismatch" (see CPython
    issues around gh-106905). Seen once in a full run, in a live server's thread, which then
    never started.
    """
    try:
        return create_app(settings, parts)
    except SystemError as error:
        if "recursion depth mismatch" not in str(error):
            raise
        return create_app(settings, parts)


def _serve_in_thread(settings: Settings, parts: Components) -> tuple[threading.Thread, LiveServer]:
    from hypercorn.asyncio import serve

    from api.server import hypercorn_config, new_event_loop

    ready = threading.Event()
    holder: dict = {}
    app = _app_despite_cpython_ast_race(settings, parts)

    @app.before_serving
    async def _ready() -> None:
        ready.set()

    def run() -> None:
        loop = new_event_loop(settings.event_loop)  # the loop `ragline serve` runs on
        asyncio.set_event_loop(loop)
        stop = asyncio.Event()
        holder["server"] = LiveServer(f"http://{settings.host}:{settings.port}", settings, parts, loop, stop)
        loop.run_until_complete(serve(app, hypercorn_config(settings), shutdown_trigger=stop.wait))
        loop.run_until_complete(loop.shutdown_default_executor())
        loop.close()

    thread = threading.Thread(target=run, name="live-server", daemon=True)
    thread.start()
    if not ready.wait(30):
        raise RuntimeError("live server did not start within 30 s")
    return thread, holder["server"]


@pytest.fixture
def live_server(settings: Settings, parts: Components) -> Iterator[LiveServer]:
    """A real hypercorn server on a free 127.0.0.1 port, in a thread with its own loop."""
    thread, server = _serve_in_thread(settings, parts)
    _wait_until_listening(settings.host, settings.port)
    yield server
    server.loop.call_soon_threadsafe(server.stop.set)
    thread.join(30)


def _wait_until_listening(host: str, port: int, timeout: float = 30) -> None:
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {host}:{port}")
