"""SQLite writers of one process queue on a Python lock (``SerializedSqliteDatabase``)."""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from peewee import IntegerField, Model

from api.db.database import SerializedSqliteDatabase


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
