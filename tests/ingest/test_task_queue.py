"""The task queue on every metadata backend: atomic claims, leases, fencing, enqueue and cancel."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator

import peewee
import psycopg2.errors
import pymysql.err
import pytest

from api.db.database import MetaDB
from api.db.migrate import upgrade
from api.db.models import Document, Knowledgebase, Task, now_ms
from api.db.services import task_service
from api.db.services.task_service import Standing


@pytest.fixture
def queue_db(fresh_database_url: Callable[[str], str], db_backend: str) -> Iterator[MetaDB]:
    db = MetaDB(fresh_database_url(db_backend), max_connections=16)
    upgrade(db)
    yield db
    db.close()


@pytest.fixture
def sqlite_db(fresh_database_url: Callable[[str], str]) -> Iterator[MetaDB]:
    db = MetaDB(fresh_database_url("sqlite"), max_connections=4)
    upgrade(db)
    yield db
    db.close()


def _age(db: MetaDB, task_id: str, ms: int) -> None:
    """Pretend the holder's last heartbeat was ``ms`` ago (a killed worker)."""
    db.call(lambda: Task.update(claimed_time=now_ms() - ms).where(Task.id == task_id).execute())


def test_each_task_is_claimed_by_exactly_one_of_many_concurrent_workers(queue_db: MetaDB) -> None:
    tasks = queue_db.call(task_service.enqueue_parse, "t1", "kb1", [f"doc{n}" for n in range(30)])
    claims: list[tuple[str, str]] = []
    failures: list[BaseException] = []
    start = threading.Barrier(6)

    def worker(name: str) -> None:
        start.wait()
        try:
            while (task := queue_db.call(task_service.claim, name, ["parse"], 60_000)) is not None:
                claims.append((task.id, name))
                time.sleep(0.01)  # "work" on it, so the others get their turn
        except BaseException as error:  # a claim that raises (a deadlock, say) is a failed claim
            failures.append(error)

    threads = [threading.Thread(target=worker, args=(f"w{n}",)) for n in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)

    assert failures == []
    assert sorted(task_id for task_id, _ in claims) == sorted(t.id for t in tasks)
    rows = queue_db.call(lambda: {t.id: t for t in Task.select()})
    for task_id, name in claims:
        assert rows[task_id].status == "running"
        assert rows[task_id].claimed_by == name
        assert rows[task_id].attempts == 1
    assert len({name for _, name in claims}) > 1  # the work really was shared


def test_a_claim_chosen_as_a_deadlock_victim_asks_again(queue_db: MetaDB, db_backend: str,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    if db_backend == "sqlite":
        pytest.skip("SQLite has one writer at a time: its claims cannot deadlock")
    [task] = queue_db.call(task_service.enqueue_parse, "t1", "kb1", ["doc1"])
    driver_error = pymysql.err.OperationalError(1213, "Deadlock found") if db_backend == "mysql" \
        else psycopg2.errors.DeadlockDetected("deadlock detected")
    real_claim = task_service._claim_skip_locked_once
    attempts: list[int] = []

    def victim_once(*args):
        attempts.append(1)
        if len(attempts) == 1:
            # What peewee raises: its OperationalError around the driver's.
            raise peewee.OperationalError(driver_error, *driver_error.args)
        return real_claim(*args)

    monkeypatch.setattr(task_service, "_claim_skip_locked_once", victim_once)
    claimed = queue_db.call(task_service.claim, "w1", ["parse"], 60_000)

    assert claimed.id == task.id and claimed.attempts == 1
    assert len(attempts) == 2


def test_a_claim_that_fails_otherwise_is_not_retried(queue_db: MetaDB, db_backend: str,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    if db_backend == "sqlite":
        pytest.skip("the retry is for MySQL and PostgreSQL")
    attempts: list[int] = []

    def broken(*args):
        attempts.append(1)
        raise peewee.OperationalError(RuntimeError("server has gone away"), 2006, "server has gone away")

    monkeypatch.setattr(task_service, "_claim_skip_locked_once", broken)
    with pytest.raises(peewee.OperationalError):
        queue_db.call(task_service.claim, "w1", ["parse"], 60_000)
    assert len(attempts) == 1


def test_a_reparse_that_changes_no_count_still_settles(queue_db: MetaDB) -> None:
    """Re-parsing an unchanged document writes the counts it already has. MySQL reports such an
    UPDATE as 0 changed rows unless the connection asks for matched rows; a settle that read
    that as "the dataset is gone" rolled back and left the task running, to be parsed again."""
    queue_db.call(lambda: Knowledgebase.create(id="kb1", tenant_id="t1", name="kb", name_key="kb", embd_id="m",
                                               chunk_num=3, token_num=30))
    queue_db.call(lambda: Document.create(id="doc1", tenant_id="t1", kb_id="kb1", name="a.txt", chunk_num=3,
                                          token_num=30))
    [task] = queue_db.call(task_service.enqueue_parse, "t1", "kb1", ["doc1"])
    assert queue_db.call(task_service.claim, "w1", ["parse"], 60_000).id == task.id
    doc = queue_db.call(Document.get_by_id, "doc1")

    outcome = task_service.Outcome(chunk_num=3, token_num=30, duration=0.1, message="Done: 3 chunks")
    assert queue_db.call(task_service.finish_parse, task.id, "w1", "doc1", outcome) is Standing.OK

    assert queue_db.call(Task.get_by_id, task.id).status == task_service.DONE
    assert queue_db.call(Document.get_by_id, doc.id).run == task_service.DOC_DONE
    assert queue_db.call(Knowledgebase.get_by_id, "kb1").chunk_num == 3


def test_an_expired_lease_is_claimed_again_and_fences_out_the_old_holder(queue_db: MetaDB) -> None:
    queue_db.call(lambda: Document.create(id="doc1", tenant_id="t1", kb_id="kb1", name="a.txt"))
    [task] = queue_db.call(task_service.enqueue_parse, "t1", "kb1", ["doc1"])
    assert queue_db.call(task_service.claim, "dead", ["parse"], 60_000).id == task.id
    assert queue_db.call(task_service.claim, "alive", ["parse"], 60_000) is None  # lease still fresh

    _age(queue_db, task.id, 61_000)
    again = queue_db.call(task_service.claim, "alive", ["parse"], 60_000)

    assert again.id == task.id and again.claimed_by == "alive" and again.attempts == 2
    assert queue_db.call(task_service.heartbeat, task.id, "dead") is False
    assert queue_db.call(task_service.report_progress, task.id, "dead", "doc1", 0.5, "x") is Standing.LOST
    assert queue_db.call(task_service.heartbeat, task.id, "alive") is True


def test_claim_takes_the_oldest_task_of_the_requested_kinds_only(sqlite_db: MetaDB) -> None:
    now = now_ms()
    sqlite_db.call(lambda: Task.create(tenant_id="t", kind="llm_job", create_time=now - 5000))
    newer = sqlite_db.call(lambda: Task.create(tenant_id="t", kind="parse", doc_id="d2", create_time=now - 1000))
    older = sqlite_db.call(lambda: Task.create(tenant_id="t", kind="parse", doc_id="d1", create_time=now - 2000))

    assert sqlite_db.call(task_service.claim, "w", ["parse"]).id == older.id
    assert sqlite_db.call(task_service.claim, "w", ["parse"]).id == newer.id
    assert sqlite_db.call(task_service.claim, "w", ["parse"]) is None
    assert sqlite_db.call(task_service.queue_depth) == {"queued": 1, "running": 2}


def test_enqueue_cancels_the_documents_unfinished_tasks_and_leaves_finished_ones(sqlite_db: MetaDB) -> None:
    [first] = sqlite_db.call(task_service.enqueue_parse, "t1", "kb1", ["doc1"])
    sqlite_db.call(lambda: Task.update(status="done").where(Task.id == first.id).execute())
    [running] = sqlite_db.call(task_service.enqueue_parse, "t1", "kb1", ["doc1"])
    sqlite_db.call(task_service.claim, "w", ["parse"])
    sqlite_db.call(task_service.enqueue_parse, "t1", "kb1", ["doc1"])
    [latest] = sqlite_db.call(task_service.enqueue_parse, "t1", "kb1", ["doc1", "doc1"])

    statuses = sqlite_db.call(lambda: Counter(t.status for t in Task.select().where(Task.doc_id == "doc1")))
    assert statuses == {"done": 1, "cancelled": 2, "queued": 1}
    assert latest.payload == {"kb_id": "kb1"}
    assert sqlite_db.call(task_service.superseded, running.id, "doc1") is True
    assert sqlite_db.call(task_service.claim, "w", ["parse"]).id == latest.id


def test_cancel_touches_only_the_tenants_unfinished_tasks_of_those_documents(sqlite_db: MetaDB) -> None:
    mine = sqlite_db.call(task_service.enqueue_parse, "t1", "kb1", ["doc1", "doc2"])
    other = sqlite_db.call(task_service.enqueue_parse, "t2", "kb2", ["doc1"])

    assert sqlite_db.call(task_service.cancel_parse, "t1", ["doc1"]) == 1

    status = sqlite_db.call(lambda: {t.id: t.status for t in Task.select()})
    assert status[mine[0].id] == "cancelled"
    assert status[mine[1].id] == "queued"
    assert status[other[0].id] == "queued"


def test_release_hands_the_task_back_without_counting_the_attempt(sqlite_db: MetaDB) -> None:
    [task] = sqlite_db.call(task_service.enqueue_parse, "t1", "kb1", ["doc1"])
    sqlite_db.call(task_service.claim, "w1", ["parse"])

    assert sqlite_db.call(task_service.release, task.id, "someone-else") is False
    assert sqlite_db.call(task_service.release, task.id, "w1") is True

    again = sqlite_db.call(task_service.claim, "w2", ["parse"])
    assert (again.id, again.attempts, again.claimed_by) == (task.id, 1, "w2")


def test_many_workers_claiming_several_tasks_at_once_never_share_one(queue_db: MetaDB) -> None:
    tasks = queue_db.call(task_service.enqueue_parse, "t1", "kb1", [f"doc{n}" for n in range(40)])
    claims: list[tuple[str, str]] = []
    start = threading.Barrier(4)

    def worker(name: str) -> None:
        start.wait()
        while claimed := queue_db.call(task_service.claim_many, name, ["parse"], 60_000, 3):
            assert len(claimed) <= 3
            claims.extend((task.id, name) for task in claimed)
            time.sleep(0.01)

    threads = [threading.Thread(target=worker, args=(f"w{n}",)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)

    assert sorted(task_id for task_id, _ in claims) == sorted(t.id for t in tasks)  # each exactly once
    rows = queue_db.call(lambda: {t.id: t for t in Task.select()})
    assert all((rows[t].status, rows[t].claimed_by, rows[t].attempts) == ("running", name, 1) for t, name in claims)


def test_claim_many_takes_the_oldest_first_and_renews_only_its_own_leases(sqlite_db: MetaDB) -> None:
    tasks = sqlite_db.call(task_service.enqueue_parse, "t1", "kb1", ["d1", "d2", "d3"])
    for age, task in zip((3000, 2000, 1000), tasks, strict=True):
        sqlite_db.call(lambda t=task, a=age: Task.update(create_time=now_ms() - a).where(Task.id == t.id).execute())

    first_two = sqlite_db.call(task_service.claim_many, "w1", ["parse"], 60_000, 2)
    last = sqlite_db.call(task_service.claim_many, "w2", ["parse"], 60_000, 5)

    assert [t.id for t in first_two] == [tasks[0].id, tasks[1].id]
    assert [t.id for t in last] == [tasks[2].id]
    assert sqlite_db.call(task_service.claim_many, "w3", ["parse"], 60_000, 5) == []
    for task in tasks:
        _age(sqlite_db, task.id, 30_000)
    assert sqlite_db.call(task_service.heartbeat_many, [t.id for t in tasks], "w1") == 2
    fresh = sqlite_db.call(lambda: {t.id: now_ms() - t.claimed_time < 10_000 for t in Task.select()})
    assert fresh == {tasks[0].id: True, tasks[1].id: True, tasks[2].id: False}
