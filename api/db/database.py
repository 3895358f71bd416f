"""The metadata database handle: one per process, built from the settings and handed down.

Queries are ordinary synchronous peewee code. Request handlers never run them on the event
loop: ``MetaDB.run`` sends a function to the app's bounded worker pool and gives it a
connection for the duration. We chose worker threads over ``playhouse.pwasyncio`` because the
same service functions also serve the task workers and the CLI, which are synchronous; one
code path, one set of tests.
"""

from __future__ import annotations

import asyncio
import functools
import re
import threading
import weakref
from collections.abc import Callable
from pathlib import Path
from typing import ParamSpec, TypeVar
from urllib.parse import unquote, urlparse

from peewee import Database, DatabaseProxy, SqliteDatabase
from playhouse.pool import PooledMySQLDatabase, PooledPostgresqlDatabase
from pymysql.constants import CLIENT

from api.db.models import ALL_MODELS

P = ParamSpec("P")
T = TypeVar("T")

SQLITE_PRAGMAS = {
    "journal_mode": "wal",
    "synchronous": "normal",
    "foreign_keys": 1,
    "busy_timeout": 30_000,
    "cache_size": -16_000,
}


WRITE_STATEMENT = re.compile(r"\s*(INSERT|UPDATE|DELETE|REPLACE|CREATE|DROP|ALTER)\b", re.IGNORECASE)


class SerializedSqliteDatabase(SqliteDatabase):
    """SQLite whose writers queue on a lock in this process instead of in SQLite's busy handler.

    SQLite lets one writer in at a time; the others retry in its busy handler, which sleeps
    1, 2, 5 ... up to 100 ms between tries. Under a burst of answers being stored the lock
    was free most of the time while its waiters slept, and every worker thread ended up
    asleep in ``BEGIN``, with reads queued behind them. A Python lock wakes the next writer
    the moment the last one commits. Writers in other processes still meet in the busy handler.
    """

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._writer = threading.Lock()
        self._holder = threading.local()

    def _take(self) -> None:
        self._writer.acquire()
        self._holder.held = True

    def _give(self) -> None:
        if getattr(self._holder, "held", False):
            self._holder.held = False
            self._writer.release()

    def begin(self, lock_type: str | None = None) -> None:
        self._take()
        try:
            super().begin(lock_type)
        except BaseException:
            self._give()
            raise

    def commit(self) -> None:
        super().commit()  # a failed commit keeps the lock: peewee rolls back next, which gives it
        self._give()

    def rollback(self) -> None:
        try:
            super().rollback()
        finally:
            self._give()

    def execute_sql(self, sql: str, params=None):
        """A write outside a transaction (autocommit) takes the lock for its one statement."""
        if getattr(self._holder, "held", False) or self.in_transaction() or not WRITE_STATEMENT.match(sql):
            return super().execute_sql(sql, params)
        with self._writer:
            return super().execute_sql(sql, params)


def _server_params(url: str) -> dict:
    parsed = urlparse(url)
    params: dict = {"host": parsed.hostname or "127.0.0.1"}
    if parsed.port:
        params["port"] = parsed.port
    if parsed.username:
        params["user"] = unquote(parsed.username)
    if parsed.password:
        params["password"] = unquote(parsed.password)
    return params


def _database_name(url: str) -> str:
    return urlparse(url).path.lstrip("/")


def connect_database(url: str, max_connections: int = 32) -> Database:
    """Open (lazily) the database a URL names: sqlite, mysql or postgres(ql)."""
    scheme = url.split("://", 1)[0].split("+", 1)[0]
    if scheme == "sqlite":
        # sqlite:///relative.db and sqlite:////absolute/path.db, as SQLAlchemy spells them.
        path = url.split("://", 1)[1][1:]
        if path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        # IMMEDIATE: a transaction that reads then writes takes the write lock up front; a
        # deferred one fails at once with "database is locked" when another writer got there first.
        return SerializedSqliteDatabase(path, pragmas=SQLITE_PRAGMAS, check_same_thread=False, timeout=30,
                                        lock_type="IMMEDIATE")
    pool = {"max_connections": max_connections, "stale_timeout": 300, "timeout": 30}
    if scheme == "mysql":
        # FOUND_ROWS: an UPDATE's count is the rows it matched, as on SQLite and PostgreSQL, not
        # the rows whose values changed; the fenced writes read "0" as "no longer ours / gone".
        return PooledMySQLDatabase(_database_name(url), charset="utf8mb4", client_flag=CLIENT.FOUND_ROWS, **pool,
                                   **_server_params(url))
    if scheme in ("postgres", "postgresql"):
        return PooledPostgresqlDatabase(_database_name(url), **pool, **_server_params(url))
    raise ValueError(f"unsupported database URL scheme {scheme!r}")


class MetaDB:
    """The metadata database plus the way to reach it from async code without blocking.

    Models are bound to a ``DatabaseProxy`` that points at this database, so two MetaDB
    objects in one process (tests) must not be used at once; each test builds its own.
    """

    _bound: MetaDB | None = None

    def __init__(self, url: str, max_connections: int = 32) -> None:
        if MetaDB._bound is not None:
            raise RuntimeError(
                f"the models are still bound to {MetaDB._bound.url}; close that MetaDB before opening "
                f"{url} (peewee binds models process-wide, so two open at once would mix their queries)"
            )
        self.url = url
        self.database = connect_database(url, max_connections=max_connections)
        self._write_queues: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, WriteQueue] = (
            weakref.WeakKeyDictionary())
        database_proxy.initialize(self.database)
        MetaDB._bound = self

    @property
    def backend(self) -> str:
        return "sqlite" if isinstance(self.database, SqliteDatabase) else self.url.split("://", 1)[0]

    def call(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """Run ``fn`` synchronously with a connection held (worker threads, CLI).

        A SQLite connection stays open in its thread (opening one and setting its pragmas
        costs more than most queries); a pooled server connection goes back to the pool.
        """
        if isinstance(self.database, SqliteDatabase):
            self.database.connect(reuse_if_open=True)
            return fn(*args, **kwargs)
        with self.database.connection_context():
            return fn(*args, **kwargs)

    async def run(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """Run ``fn`` in the worker pool with a connection held; the loop stays free."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(None, functools.partial(self.call, fn, *args, **kwargs))

    async def write(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """``run`` for a function that writes, for the writes every answer makes.

        SQLite takes one writer at a time, so writers of this loop queue here, on the loop,
        instead of each holding a worker thread blocked on the write lock: 200 answers being
        stored at once otherwise fill the pool, and the reads of new requests queue behind them.
        The writes that queued while one batch ran go to the pool together and commit as one
        transaction (a failing one rolls back alone and raises to its caller only:
        ``write_batch``), so a burst costs one pool hop and one commit instead of one per write: one
        at a time, the turn and usage writes of ~80 answers/s kept a question's history step
        waiting 0.7 s. MySQL and PostgreSQL lock rows, so their writers go straight to the pool.
        """
        if not isinstance(self.database, SqliteDatabase):
            return await self.run(fn, *args, **kwargs)
        loop = asyncio.get_running_loop()
        queue = self._write_queues.get(loop)
        if queue is None:
            queue = self._write_queues[loop] = WriteQueue(self)
        return await queue.submit(functools.partial(fn, *args, **kwargs))

    def write_batch(self, writes: list[Callable[[], object]]) -> list[tuple[bool, object]]:
        """Run ``writes`` in one transaction: (succeeded, result or error) each.

        The writes run first with no savepoint of their own: a write's SAVEPOINT and RELEASE
        went through peewee in a worker thread holding the GIL the event loop needs. Only when
        one fails is the transaction rolled back and the batch run again, each write in its own
        savepoint (``_write_each``), so the failing one fails alone; the writes are database
        work only, so running them again after the rollback is running them once.
        """
        try:
            with self.database.atomic():
                return [(True, write()) for write in writes]
        except Exception as error:  # noqa: BLE001 - it belongs to a write's caller, or to all of them
            if len(writes) == 1:
                return [(False, error)]
        return self._write_each(writes)

    def _write_each(self, writes: list[Callable[[], object]]) -> list[tuple[bool, object]]:
        """``writes`` in one transaction, each in a savepoint: a failing one rolls back alone."""
        outcomes: list[tuple[bool, object]] = []
        with self.database.atomic():
            for write in writes:
                try:
                    with self.database.atomic():
                        outcomes.append((True, write()))
                except Exception as error:  # noqa: BLE001 - it belongs to that write's caller
                    outcomes.append((False, error))
        return outcomes

    def ping(self) -> None:
        self.call(lambda: self.database.execute_sql("SELECT 1").fetchone())

    def close(self) -> None:
        if MetaDB._bound is self:
            MetaDB._bound = None
        if not self.database.is_closed():
            self.database.close()
        close_all = getattr(self.database, "close_all", None)
        if close_all is not None:
            close_all()


class WriteQueue:
    """One loop's SQLite writes: at most one batch in the worker pool at a time; the writes that
    arrive meanwhile wait here and go together as the next batch (``MetaDB.write_batch``)."""

    # Writes per transaction. It also paces how fast new answers start, and so how busy the loop
    # is at saturation, which is what its lag follows: under chat_load 8 kept the loop-lag p99 at
    # 19 ms for 110-115 answers/s; 16 gave 35 ms for 120/s, 32 46 ms for 130/s, 256 85 ms. Once the
    # per-answer statements were compiled (api/db/compiled.py), 8 gave 134/s at 21.7-23.5 ms and
    # 6 gives 124-132/s at 19.4-19.5 ms. (Resuming a batch's callers one per loop turn instead of
    # all in one did not lower the lag, and cost throughput.)
    MAX_BATCH = 6

    def __init__(self, db: MetaDB) -> None:
        self.db = db
        self.waiting: list[tuple[Callable[[], object], asyncio.Future]] = []
        self.drainer: asyncio.Future | None = None  # held: the loop keeps only weak references to tasks

    async def submit(self, write: Callable[[], T]) -> T:
        future = asyncio.get_running_loop().create_future()
        self.waiting.append((write, future))
        if self.drainer is None or self.drainer.done():
            self.drainer = asyncio.ensure_future(self._drain())
        return await future

    async def _drain(self) -> None:
        batch: list[tuple[Callable[[], object], asyncio.Future]] = []
        try:
            while self.waiting:
                # a write whose caller gave up before its batch started is dropped, as a caller
                # cancelled while waiting for the write lock never wrote
                live = [(write, future) for write, future in self.waiting if not future.done()]
                batch, self.waiting = live[: self.MAX_BATCH], live[self.MAX_BATCH :]
                if not batch:
                    continue
                try:
                    outcomes = await self.db.run(self.db.write_batch, [write for write, _ in batch])
                except Exception as error:  # the transaction itself failed: so did every write in it
                    outcomes = [(False, error)] * len(batch)
                self._settle(batch, outcomes)
        except BaseException:  # this loop is going away: nobody is left to answer the callers
            for _, future in [*batch, *self.waiting]:
                future.cancel()
            self.waiting = []
            raise

    @staticmethod
    def _settle(batch: list[tuple[Callable[[], object], asyncio.Future]],
                outcomes: list[tuple[bool, object]]) -> None:
        for (_, future), (succeeded, value) in zip(batch, outcomes, strict=True):
            if future.done():  # its caller was cancelled; the write happened all the same
                continue
            if succeeded:
                future.set_result(value)
            else:
                future.set_exception(value)


database_proxy = DatabaseProxy()
for _model in ALL_MODELS:
    _model._meta.set_database(database_proxy)
