"""SQLite writers of one process queue on a Python lock (``SerializedSqliteDatabase``)."""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from peewee import IntegerField, Model

from api.db.database import SerializedSqliteDatabase
from tests.conftest import sql_traced


@pytest.fixture
def database(tmp_path: Path):
    db = SerializedSqliteDatabase(str(tmp_path / "w.db"), pragmas={"journal_mode": "wal", "busy_timeout": 30_000},
                                  check_same_thread=False, timeout=30, lock_type="IMMEDIATE")

    class Row(Model):
        value = IntegerField()

        class Meta:
            database = db

    db.create_tables([Row])
    yield db, Row
    db.close()


def test_concurrent_transactions_and_autocommit_writes_all_land(database) -> None:
    db, row = database

    def write(worker: int) -> None:
        db.connect(reuse_if_open=True)
        for i in range(25):
            if i % 2:
                with db.atomic():
                    current = row.select().count()  # a read-then-write: needs the lock up front
                    row.create(value=current)
            else:
                row.create(value=-worker)  # autocommit: takes the lock for one statement

    with ThreadPoolExecutor(16) as pool:
        list(pool.map(write, range(16)))
    assert row.select().count() == 16 * 25
    assert not db._writer.locked()


def test_a_failed_transaction_gives_the_lock_back(database) -> None:
    db, row = database
    with pytest.raises(RuntimeError), db.atomic():
        row.create(value=1)
        raise RuntimeError("boom")
    assert not db._writer.locked() and row.select().count() == 0
    done = threading.Event()

    def other_writer() -> None:
        db.connect(reuse_if_open=True)
        with db.atomic():
            row.create(value=2)
        done.set()

    thread = threading.Thread(target=other_writer)
    thread.start()
    thread.join(5)
    assert done.is_set() and [r.value for r in row.select()] == [2]


def test_reads_do_not_wait_for_a_writer(database) -> None:
    db, row = database
    row.create(value=7)
    with db.atomic():
        row.create(value=8)
        seen: list[int] = []

        def reader() -> None:
            db.connect(reuse_if_open=True)
            seen.append(row.select().count())

        thread = threading.Thread(target=reader)
        thread.start()
        thread.join(5)
        assert seen == [1]  # WAL: the reader sees the last commit while the writer holds the lock


async def test_writers_of_one_loop_take_turns_on_the_loop_not_in_the_pool(tmp_path: Path) -> None:
    """``MetaDB.write`` on SQLite lets one writer into the worker pool at a time, so a burst of
    writes cannot occupy every worker thread while reads wait."""
    from api.db.database import MetaDB

    db = MetaDB("sqlite:///" + str(tmp_path / "m.db"))
    inside, most_inside = 0, 0

    def slow_write() -> None:
        nonlocal inside, most_inside
        inside += 1
        most_inside = max(most_inside, inside)
        threading.Event().wait(0.01)
        inside -= 1

    try:
        await asyncio.gather(*(db.write(slow_write) for _ in range(8)))
        read = await db.run(lambda: 42)
    finally:
        db.close()
    assert most_inside == 1 and read == 42


async def test_a_burst_of_writes_commits_in_batches_and_a_failing_write_fails_alone(tmp_path: Path,
                                                                                  monkeypatch) -> None:
    """Writes that queue while a batch runs go together as one transaction; one that raises is
    rolled back and raised to its own caller only; one whose caller gave up before its batch
    started never runs."""
    from api.db.database import MetaDB

    db = MetaDB("sqlite:///" + str(tmp_path / "m.db"))
    db.call(lambda: db.database.execute_sql("CREATE TABLE t (v INTEGER)"))
    batches: list[int] = []
    real_batch = db.write_batch

    def counted(writes):
        batches.append(len(writes))
        threading.Event().wait(0.02)  # long enough for the rest of the burst to queue
        return real_batch(writes)

    monkeypatch.setattr(db, "write_batch", counted)

    def insert(value: int) -> int:
        db.database.execute_sql("INSERT INTO t (v) VALUES (?)", (value,))
        if value == 13:
            raise ValueError("unlucky")
        return value

    try:
        outcomes = await asyncio.gather(*(db.write(insert, v) for v in range(40)), return_exceptions=True)
        running = asyncio.ensure_future(db.write(insert, 3000))
        await asyncio.sleep(0.005)  # its batch is in the pool now
        dropped = asyncio.ensure_future(db.write(insert, 1000))
        queued = asyncio.ensure_future(db.write(insert, 2000))
        await asyncio.sleep(0)
        dropped.cancel()
        await asyncio.gather(running, queued)
        stored = db.call(lambda: sorted(v for (v,) in db.database.execute_sql("SELECT v FROM t").fetchall()))
    finally:
        db.close()
    assert [o for o in outcomes if isinstance(o, Exception)] and str(outcomes[13]) == "unlucky"
    assert [o for i, o in enumerate(outcomes) if i != 13] == [v for v in range(40) if v != 13]
    assert len(batches) < 40 and sum(batches) >= 40  # one write alone, then the rest together
    assert 13 not in stored and [v for v in stored if v < 40] == [v for v in range(40) if v != 13]
    assert 2000 in stored and 3000 in stored and 1000 not in stored


def traced_batch(tmp_path: Path, writes_of) -> tuple[list[tuple[bool, object]], list[str], list[int]]:
    """``MetaDB.write_batch`` of the writes ``writes_of(db)`` makes: the outcomes, the SQL
    statements the batch sent, and the values stored afterwards."""
    from api.db.database import MetaDB

    db = MetaDB("sqlite:///" + str(tmp_path / "b.db"))
    try:
        db.call(lambda: db.database.execute_sql("CREATE TABLE t (v INTEGER)"))
        outcomes, statements = sql_traced(db, lambda: db.write_batch(writes_of(db)))
        stored = db.call(lambda: [v for (v,) in db.database.execute_sql("SELECT v FROM t ORDER BY v").fetchall()])
    finally:
        db.close()
    return outcomes, statements, stored


def inserting(failing: set[int], values: range):
    def writes_of(db):
        def insert(value: int) -> int:
            db.database.execute_sql("INSERT INTO t (v) VALUES (?)", (value,))
            if value in failing:
                raise ValueError(f"unlucky {value}")
            return value
        return [lambda value=value: insert(value) for value in values]
    return writes_of


def test_a_batch_that_succeeds_commits_once_without_savepoints(tmp_path: Path) -> None:
    outcomes, statements, stored = traced_batch(tmp_path, inserting(set(), range(5)))
    assert outcomes == [(True, v) for v in range(5)] and stored == list(range(5))
    assert not [s for s in statements if "SAVEPOINT" in s.upper()]
    assert sum(s.upper().startswith("COMMIT") for s in statements) == 1


def test_a_failing_write_is_rolled_back_alone_after_the_batch_runs_again_in_savepoints(tmp_path: Path) -> None:
    outcomes, statements, stored = traced_batch(tmp_path, inserting({2}, range(5)))
    assert [ok for ok, _ in outcomes] == [True, True, False, True, True]
    assert str(outcomes[2][1]) == "unlucky 2" and stored == [0, 1, 3, 4]
    assert any("SAVEPOINT" in s.upper() for s in statements)


def test_a_lone_failing_write_runs_once_and_stores_nothing(tmp_path: Path) -> None:
    outcomes, statements, stored = traced_batch(tmp_path, inserting({7}, range(7, 8)))
    assert [ok for ok, _ in outcomes] == [False] and str(outcomes[0][1]) == "unlucky 7"
    assert stored == [] and sum(s.upper().startswith("INSERT") for s in statements) == 1
