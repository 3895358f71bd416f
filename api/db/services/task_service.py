"""The ``task`` table as a queue: enqueue, cancel, claim with a lease, heartbeat, settle.

Synchronous functions, run in the worker pool (``MetaDB.run``) or a CLI thread. Several worker
processes on several machines may share one database, so every transition is a conditional
write that only one claimant can win:

- ``claim`` takes the oldest claimable task atomically: ``SELECT ... FOR UPDATE SKIP LOCKED``
  on MySQL/PostgreSQL (claimants never wait on each other's rows), an ``IMMEDIATE``
  transaction with a conditional ``UPDATE`` on SQLite (one writer at a time anyway).
- A claim is a lease: ``claimed_time`` is the holder's last heartbeat. A running task whose
  heartbeat is older than the lease belongs to a dead worker and is claimable again;
  ``attempts`` counts claims, so a task that kills its worker every time is eventually failed.
- Every write a worker makes about its task is fenced by ``claimed_by``: a worker that lost
  its lease (or whose task was cancelled) finds its writes refused and stops.
"""

from __future__ import annotations

from peewee import MySQLDatabase, OperationalError, SqliteDatabase, fn

from api.db.models import Document, Knowledgebase, Task, bound_database, now_ms

# The worker's own words for a task's standing and a parse's outcome (``rag.svr.task_store``,
# the protocol ``ingest_store`` implements with these functions): one definition for both sides.
from rag.svr.task_store import DEFAULT_LEASE_MS, KIND_PARSE, Outcome, Standing

QUEUED, RUNNING, DONE, FAILED, CANCELLED = "queued", "running", "done", "failed", "cancelled"
UNFINISHED = (QUEUED, RUNNING)
CLAIM_ATTEMPTS = 5  # a claim chosen as a deadlock's victim asks again, this many times in all
MYSQL_DEADLOCK, PG_DEADLOCK = 1213, "40P01"
DOC_RUNNING, DOC_CANCEL, DOC_DONE, DOC_FAIL = "RUNNING", "CANCEL", "DONE", "FAIL"


def enqueue_parse(tenant_id: str, kb_id: str, doc_ids: list[str]) -> list[Task]:
    """Queue one parse task per document, cancelling its unfinished ones first.

    Cancel and create happen in one transaction, so a worker that sees its task cancelled can
    rely on the replacing task already existing (``superseded``), and a document never has two
    live parse tasks. Callers set the document's ``run``/``progress`` in the same transaction.
    """
    doc_ids = list(dict.fromkeys(doc_ids))
    with Task._meta.database.atomic():
        cancel_parse(tenant_id, doc_ids)
        now = now_ms()
        return [
            Task.create(tenant_id=tenant_id, kind=KIND_PARSE, doc_id=doc_id, payload={"kb_id": kb_id},
                        status=QUEUED, create_time=now, update_time=now)
            for doc_id in doc_ids
        ]


def cancel_parse(tenant_id: str, doc_ids: list[str]) -> int:
    """Mark the documents' unfinished parse tasks cancelled; returns how many.

    A running worker notices at its next check-in and stops; the caller sets ``run=CANCEL``.
    """
    if not doc_ids:
        return 0
    return (
        Task.update(status=CANCELLED, error="cancelled", update_time=now_ms())
        .where((Task.tenant_id == tenant_id) & (Task.kind == KIND_PARSE) & (Task.doc_id.in_(doc_ids))
               & (Task.status.in_(UNFINISHED)))
        .execute()
    )


def _claimable(kinds: list[str], lease_ms: int, now: int):
    expired = (Task.status == RUNNING) & (Task.claimed_time < now - lease_ms)
    return (Task.kind.in_(kinds)) & ((Task.status == QUEUED) | expired)


def claim(worker_id: str, kinds: list[str], lease_ms: int = DEFAULT_LEASE_MS) -> Task | None:
    """Take the oldest queued task (or one whose lease expired) for ``worker_id``, or None.

    The returned task is ``running``, ``claimed_by`` the worker, ``attempts`` already counting
    this claim. Exactly one claimant wins each task, however many processes ask at once.
    """
    tasks = claim_many(worker_id, kinds, lease_ms, limit=1)
    return tasks[0] if tasks else None


def claim_many(worker_id: str, kinds: list[str], lease_ms: int = DEFAULT_LEASE_MS, limit: int = 1) -> list[Task]:
    """Up to ``limit`` of the oldest claimable tasks for ``worker_id``, oldest first, in one transaction.

    A worker that keeps many small documents in flight refills several slots at once: one
    write transaction instead of one per task (SQLite has one writer at a time).
    """
    if limit < 1:
        return []
    database = bound_database(Task)
    if isinstance(database, SqliteDatabase):
        return _claim_sqlite(worker_id, kinds, lease_ms, limit)
    return _claim_skip_locked(worker_id, kinds, lease_ms, limit)


def _oldest_claimable(kinds: list[str], lease_ms: int, limit: int, lock: str | None = None) -> list[str]:
    """Ids of the ``limit`` oldest claimable tasks.

    Asked as two queries, queued and expired, because each then walks an index in age order
    (``task(status, create_time)``) and stops after ``limit`` rows. As one query with an OR,
    every claim sorted the whole queue: 3 ms per claim at 5,000 queued documents, inside the
    write lock every other writer waits for.
    """
    now = now_ms()
    kind = Task.kind.in_(kinds)
    queued = (Task.status == QUEUED) & kind
    expired = (Task.status == RUNNING) & (Task.claimed_time < now - lease_ms) & kind
    found: list[tuple[int, str]] = []
    for condition in (queued, expired):
        query = Task.select(Task.id, Task.create_time).where(condition).order_by(Task.create_time, Task.id).limit(limit)
        if lock:
            query = query.for_update(lock)
        found.extend((task.create_time, task.id) for task in query)
    return [task_id for _, task_id in sorted(found)[:limit]]


def _claimed(ids: list[str]) -> list[Task]:
    return list(Task.select().where(Task.id.in_(ids)).order_by(Task.create_time, Task.id)) if ids else []


def _claim_sqlite(worker_id: str, kinds: list[str], lease_ms: int, limit: int) -> list[Task]:
    # IMMEDIATE takes the write lock at BEGIN: no other claimant can read the same candidates
    # and update them between our SELECT and UPDATE; the UPDATE stays conditional regardless.
    with Task._meta.database.atomic():
        ids = _oldest_claimable(kinds, lease_ms, limit)
        if not ids:
            return []
        now = now_ms()
        (Task.update(status=RUNNING, claimed_by=worker_id, claimed_time=now, attempts=Task.attempts + 1,
                     update_time=now)
         .where(Task.id.in_(ids) & _claimable(kinds, lease_ms, now)).execute())
        won = [task.id for task in Task.select(Task.id).where(
            Task.id.in_(ids) & (Task.claimed_by == worker_id) & (Task.claimed_time == now) & (Task.status == RUNNING))]
        return _claimed(won)


def _claim_skip_locked(worker_id: str, kinds: list[str], lease_ms: int, limit: int) -> list[Task]:
    """Claim in a transaction, again when the database chose it as a deadlock's victim.

    Under InnoDB's default REPEATABLE READ, a locking scan keeps a lock on every row and gap
    it passes (the expired-lease scan passes every running task), and each claimant's
    ``UPDATE`` of ``status`` must insert into a gap another holds: six claimants deadlocked
    several times per 30 tasks. So MySQL claims in READ COMMITTED (no gap locks, rows that do
    not match released). A victim that is left was rolled back whole, claimed nothing, and
    simply asks again.
    """
    for attempt in range(1, CLAIM_ATTEMPTS + 1):
        try:
            return _claim_skip_locked_once(worker_id, kinds, lease_ms, limit)
        except OperationalError as error:
            if attempt == CLAIM_ATTEMPTS or not _is_deadlock(error):
                raise
    raise AssertionError("unreachable: the last attempt returns or raises")


def _is_deadlock(error: OperationalError) -> bool:
    """True for MySQL/MariaDB's 1213 and PostgreSQL's 40P01 (deadlock detected).

    peewee keeps the driver's exception as ``orig``: PyMySQL's ``args`` start with the error
    number; psycopg2 raises ``errors.DeadlockDetected``, whose ``pgcode`` is the SQLSTATE.
    """
    original = getattr(error, "orig", error)
    return (original.args[:1] == (MYSQL_DEADLOCK,) or getattr(original, "pgcode", None) == PG_DEADLOCK
            or type(original).__name__ == "DeadlockDetected")


def _claim_skip_locked_once(worker_id: str, kinds: list[str], lease_ms: int, limit: int) -> list[Task]:
    database = bound_database(Task)
    isolation = {"isolation_level": "READ COMMITTED"} if isinstance(database, MySQLDatabase) else {}
    with database.atomic(**isolation):  # peewee sets it right before its BEGIN
        ids = _oldest_claimable(kinds, lease_ms, limit, lock="FOR UPDATE SKIP LOCKED")
        if not ids:
            return []
        now = now_ms()
        Task.update(status=RUNNING, claimed_by=worker_id, claimed_time=now, attempts=Task.attempts + 1,
                    update_time=now).where(Task.id.in_(ids)).execute()
        return _claimed(ids)


def _held_by(worker_id: str):
    return (Task.claimed_by == worker_id) & (Task.status == RUNNING)


def _ours(task_id: str, worker_id: str):
    return (Task.id == task_id) & _held_by(worker_id)


def heartbeat(task_id: str, worker_id: str, progress: float | None = None) -> bool:
    """Renew the lease; False when the task is no longer ours (lost, cancelled or settled)."""
    changes = {"claimed_time": now_ms()}
    if progress is not None:
        changes["progress"] = progress
    return Task.update(**changes).where(_ours(task_id, worker_id)).execute() == 1


def heartbeat_many(task_ids: list[str], worker_id: str) -> int:
    """Renew the leases of all the tasks ``worker_id`` holds in one write; how many are still ours."""
    if not task_ids:
        return 0
    return Task.update(claimed_time=now_ms()).where(Task.id.in_(task_ids) & _held_by(worker_id)).execute()


def standing(task_id: str, worker_id: str) -> Standing:
    """Why (or whether) the worker may go on with its task; reads only."""
    task = Task.get_or_none(Task.id == task_id)
    if task is None or task.claimed_by != worker_id:
        return Standing.LOST
    if task.status == CANCELLED:
        return Standing.CANCELLED
    if task.status != RUNNING:
        return Standing.LOST
    doc = Document.get_or_none(Document.id == task.doc_id)
    if doc is None or not Knowledgebase.select().where(Knowledgebase.id == doc.kb_id).exists():
        return Standing.GONE
    return Standing.CANCELLED if doc.run == DOC_CANCEL else Standing.OK


def report_progress(task_id: str, worker_id: str, doc_id: str, progress: float, message: str) -> Standing:
    """Check in: renew the lease and show progress on the document, unless we must stop.

    Two fenced writes, and the reads of ``standing`` only when one of them is refused (a check-in
    of thousands of small documents is on the queue's hot path). The document write is skipped
    when its run is CANCEL, so a cancel is never overwritten.
    """
    with Task._meta.database.atomic():
        if not heartbeat(task_id, worker_id, progress):
            return standing(task_id, worker_id)
        shown = Document.update(progress=progress, progress_msg=message, update_time=now_ms()).where(
            (Document.id == doc_id) & (Document.run != DOC_CANCEL)
        ).execute()
        return Standing.OK if shown == 1 else standing(task_id, worker_id)


def begin_parse(task_id: str, worker_id: str, doc: Document) -> Standing:
    """Mark the (just loaded) document RUNNING with its start time (a retried task restarts the clock)."""
    with Task._meta.database.atomic():
        if doc.run == DOC_CANCEL:
            return Standing.CANCELLED
        now = now_ms()
        if not heartbeat(task_id, worker_id):
            return standing(task_id, worker_id)
        started = Document.update(run=DOC_RUNNING, progress=0.0, progress_msg="Starting", process_begin_at=now,
                                  update_time=now).where((Document.id == doc.id) & (Document.run != DOC_CANCEL)
                                                         ).execute()
        return Standing.OK if started == 1 else standing(task_id, worker_id)


class _Refused(Exception):
    """Rolls back a settle transaction whose fenced write found the task no longer ours."""


def _set_doc_counts(doc: Document, chunk_num: int, token_num: int, **fields) -> bool:
    """Write the document's counts and adjust its dataset's by the difference (no double count);
    False when the dataset is gone."""
    Document.update(chunk_num=chunk_num, token_num=token_num, update_time=now_ms(), **fields).where(
        Document.id == doc.id
    ).execute()
    return Knowledgebase.update(
        chunk_num=Knowledgebase.chunk_num + (chunk_num - doc.chunk_num),
        token_num=Knowledgebase.token_num + (token_num - doc.token_num),
    ).where(Knowledgebase.id == doc.kb_id).execute() == 1


def finish_parse(task_id: str, worker_id: str, doc_id: str, outcome: Outcome) -> Standing:
    """Settle a successful parse: document DONE with its counts, dataset counters, task done.

    All or nothing: when the task is no longer ours or the document was cancelled or deleted
    meanwhile, nothing is written and the reason is returned, so the caller removes its chunks.
    The fenced writes themselves tell; ``standing`` reads only to name the reason.
    """
    try:
        with Task._meta.database.atomic():
            doc = Document.get_or_none(Document.id == doc_id)
            if doc is None or doc.run == DOC_CANCEL:
                raise _Refused
            settled = Task.update(status=DONE, progress=1.0, result={"chunk_num": outcome.chunk_num},
                                  update_time=now_ms()).where(_ours(task_id, worker_id)).execute()
            if settled != 1 or not _set_doc_counts(doc, outcome.chunk_num, outcome.token_num, run=DOC_DONE,
                                                   progress=1.0, progress_msg=outcome.message,
                                                   process_duration=outcome.duration):
                raise _Refused
    except _Refused:
        return standing(task_id, worker_id)
    return Standing.OK


def fail_parse(task_id: str, worker_id: str, doc_id: str, reason: str, chunks_removed: bool) -> Standing:
    """Settle a failed parse: document FAIL with ``reason``; counts zeroed if chunks were removed."""
    with Task._meta.database.atomic():
        settled = Task.update(status=FAILED, error=reason, update_time=now_ms()).where(
            _ours(task_id, worker_id)
        ).execute()
        if settled != 1:
            return standing(task_id, worker_id)
        doc = Document.get_or_none(Document.id == doc_id)
        if doc is None:
            return Standing.GONE
        fields = {"run": DOC_FAIL, "progress_msg": reason}
        if chunks_removed:
            _set_doc_counts(doc, 0, 0, **fields)
        else:
            Document.update(update_time=now_ms(), **fields).where(Document.id == doc_id).execute()
        return Standing.OK


def release(task_id: str, worker_id: str) -> bool:
    """Hand a task back to the queue when its worker stops cleanly; the claim does not count."""
    return Task.update(status=QUEUED, claimed_by=None, claimed_time=None, attempts=Task.attempts - 1,
                       update_time=now_ms()).where(_ours(task_id, worker_id)).execute() == 1


def running_claims(claimant_prefix: str) -> list[tuple[str, str]]:
    """(task id, claimed_by) of running tasks whose claimant id starts with ``claimant_prefix``."""
    query = Task.select(Task.id, Task.claimed_by).where(
        (Task.status == RUNNING) & (Task.claimed_by.startswith(claimant_prefix))
    )
    return [(task.id, task.claimed_by) for task in query]


def expire_claim(task_id: str, claimed_by: str) -> bool:
    """End a dead claimant's lease now, so the next ``claim`` takes the task (counting an attempt)."""
    return Task.update(claimed_time=0).where(_ours(task_id, claimed_by)).execute() == 1


def superseded(task_id: str, doc_id: str) -> bool:
    """Whether another unfinished parse task now owns the document (a re-parse replaced ours)."""
    return Task.select().where((Task.kind == KIND_PARSE) & (Task.doc_id == doc_id) & (Task.id != task_id)
                               & (Task.status.in_(UNFINISHED))).exists()


def settle_cancelled(task_id: str, doc_id: str, chunks_removed: bool) -> None:
    """After a worker stopped for a cancel: task cancelled, document CANCEL with true counts.

    Does nothing to the document when a re-parse superseded the task: the new task owns it.
    """
    with Task._meta.database.atomic():
        Task.update(status=CANCELLED, error="cancelled", update_time=now_ms()).where(
            (Task.id == task_id) & (Task.status.in_(UNFINISHED))
        ).execute()
        doc = Document.get_or_none(Document.id == doc_id)
        if doc is None or superseded(task_id, doc_id):
            return
        fields = {"run": DOC_CANCEL, "progress_msg": "Cancelled"}
        if chunks_removed:
            _set_doc_counts(doc, 0, 0, **fields)
        else:
            Document.update(update_time=now_ms(), **fields).where(Document.id == doc_id).execute()


def settle_gone(task_id: str) -> None:
    """The document or dataset was deleted under a running task: nothing left to do."""
    Task.update(status=CANCELLED, error="document deleted", update_time=now_ms()).where(
        (Task.id == task_id) & (Task.status.in_(UNFINISHED))
    ).execute()


def queue_depth(kinds: list[str] | None = None) -> dict[str, int]:
    """Unfinished tasks by status (``queued``/``running``), for metrics and the CLI."""
    query = Task.select(Task.status, fn.COUNT(Task.id)).where(Task.status.in_(UNFINISHED))
    if kinds:
        query = query.where(Task.kind.in_(kinds))
    depth = {QUEUED: 0, RUNNING: 0}
    depth.update(dict(query.group_by(Task.status).tuples()))
    return depth
