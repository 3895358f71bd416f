"""TaskExecutor end to end in-process: parse → chunk → embed → index → settle, and every way it stops."""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Callable

import pytest

from api.components import Components
from api.db.models import Task, now_ms
from api.db.services import document_service, task_service
from api.settings import Settings
from rag.svr import task_executor
from rag.svr.task_executor import TaskExecutor
from rag.utils.doc_store_conn import MatchTextExpr, index_name, make_chunk_row
from tests.ingest.worker_support import (
    AsyncFakeEmbedding,
    FakeEmbedding,
    dataset,
    document,
    expected_chunk_ids,
    fake_vectors,
    migrated_parts,
    prose,
    queue,
    seed_documents,
    stored_chunk_ids,
    tasks_of,
)


@pytest.fixture
def ready(parts: Components) -> Components:
    """The conftest components on a migrated database."""
    from api.db.migrate import upgrade

    upgrade(parts.db)
    return parts


def executor_for(parts: Components, model: FakeEmbedding, **options) -> TaskExecutor:
    """An executor that checks in at every stage (``checkin_interval=0``) unless told otherwise."""
    options.setdefault("embed_batch_size", 4)
    options.setdefault("checkin_interval", 0)
    return TaskExecutor(parts, worker_id="test-worker", embedder=lambda _tenant, _name: model, **options)


async def drain(executor: TaskExecutor) -> int:
    processed = 0
    while await executor.run_once():
        processed += 1
    return processed


def assert_indexed(parts: Components, tenant_id: str, kb_id: str, doc_id: str, name: str, data: bytes) -> None:
    """DONE, with exactly the expected chunks stored once each and counted on the document."""
    expected = expected_chunk_ids(doc_id, name, data)
    stored = stored_chunk_ids(parts, tenant_id, kb_id, doc_id)
    doc = document(parts, doc_id)
    assert (doc.run, doc.progress) == ("DONE", 1.0), doc.progress_msg
    assert sorted(stored) == sorted(expected)
    assert doc.chunk_num == len(expected)
    assert doc.token_num > 0 and doc.progress_msg.startswith("Task done:")


@pytest.mark.parametrize("model_class", [FakeEmbedding, AsyncFakeEmbedding])
async def test_parsing_indexes_every_chunk_once_and_counts_it(ready: Components, model_class) -> None:
    files = {"a.md": prose(12, 1).encode(), "b.txt": prose(5, 2).encode()}
    tenant_id, kb_id, doc_ids = seed_documents(ready, files)
    queue(ready, tenant_id, kb_id, doc_ids)
    model = model_class()

    assert await drain(executor_for(ready, model)) == 2

    for doc_id, (name, data) in zip(doc_ids, files.items(), strict=True):
        assert_indexed(ready, tenant_id, kb_id, doc_id, name, data)
    kb = dataset(ready, kb_id)
    assert kb.chunk_num == sum(document(ready, d).chunk_num for d in doc_ids)
    assert kb.token_num == sum(document(ready, d).token_num for d in doc_ids)
    assert model.calls > 2  # batched: several encode calls for the larger document
    assert [t.status for d in doc_ids for t in tasks_of(ready, d)] == ["done", "done"]


async def test_a_text_files_title_line_makes_every_chunk_findable_by_it(ready: Components) -> None:
    body = prose(8, 3).split("\n\n", 1)[1]  # the prose without its Markdown heading
    data = f"Okapi field notes\n\n{body}".encode()
    tenant_id, kb_id, (doc_id,) = seed_documents(ready, {"notes.txt": data})
    queue(ready, tenant_id, kb_id, [doc_id])

    assert await drain(executor_for(ready, FakeEmbedding())) == 1

    stored = stored_chunk_ids(ready, tenant_id, kb_id, doc_id)
    assert len(stored) > 3
    found = ready.doc_store.search(["id", "content_with_weight"], [], {"doc_id": doc_id},
                                   [MatchTextExpr(["title_tks^1", "content_ltks^1"], "okapi", 100)], None, 0, 100,
                                   [index_name(tenant_id)], [kb_id])
    assert sorted(row["id"] for row in found.rows) == sorted(stored)
    assert sum("Okapi" in row["content_with_weight"] for row in found.rows) == 1  # the text itself is unchanged


async def test_pipeline_works_on_every_metadata_backend(make_settings: Callable[..., Settings],
                                                        fresh_database_url: Callable[[str], str],
                                                        db_backend: str) -> None:
    parts = migrated_parts(make_settings(database_url=fresh_database_url(db_backend)))
    try:
        files = {f"d{n}.md": prose(4, n).encode() for n in range(3)}
        tenant_id, kb_id, doc_ids = seed_documents(parts, files)
        queue(parts, tenant_id, kb_id, doc_ids)
        executor = executor_for(parts, FakeEmbedding(), concurrency=2, poll_interval=0.05)
        executor.start()
        await _until(lambda: all(document(parts, d).run == "DONE" for d in doc_ids))
        await executor.stop()
        for doc_id, (name, data) in zip(doc_ids, files.items(), strict=True):
            assert_indexed(parts, tenant_id, kb_id, doc_id, name, data)
    finally:
        parts.close()


async def test_reparse_replaces_the_chunks_and_the_dataset_counts(ready: Components) -> None:
    data = prose(10, 3).encode()
    tenant_id, kb_id, [doc_id] = seed_documents(ready, {"a.md": data})
    queue(ready, tenant_id, kb_id, [doc_id])
    await drain(executor_for(ready, FakeEmbedding()))
    first = set(stored_chunk_ids(ready, tenant_id, kb_id, doc_id))

    ready.db.call(document_service.update, tenant_id, kb_id, doc_id, {"parser_config": {"chunk_token_num": 64}},
                  ready.doc_store)
    queue(ready, tenant_id, kb_id, [doc_id])
    await drain(executor_for(ready, FakeEmbedding()))

    stored = stored_chunk_ids(ready, tenant_id, kb_id, doc_id)
    from rag.app.naive import parse_and_chunk
    from rag.utils.doc_store_conn import chunk_id

    expected = {chunk_id(doc_id, c.content) for c in parse_and_chunk("a.md", data, {"chunk_token_num": 64})}
    assert sorted(stored) == sorted(expected) and not first & expected
    doc, kb = document(ready, doc_id), dataset(ready, kb_id)
    assert (doc.run, doc.chunk_num) == ("DONE", len(expected))
    assert (kb.chunk_num, kb.token_num) == (doc.chunk_num, doc.token_num)


async def test_a_bad_file_fails_with_its_reason_while_the_rest_of_the_batch_succeeds(ready: Components) -> None:
    good = prose(6, 4).encode()
    files = {"good.md": good, "binary.txt": b"\x00\x01\x02\xff" * 64, "broken.docx": b"PK\x03\x04 not a zip"}
    tenant_id, kb_id, doc_ids = seed_documents(ready, files)
    queue(ready, tenant_id, kb_id, doc_ids)

    await drain(executor_for(ready, FakeEmbedding()))

    assert_indexed(ready, tenant_id, kb_id, doc_ids[0], "good.md", good)
    for doc_id in doc_ids[1:]:
        doc = document(ready, doc_id)
        assert doc.run == "FAIL" and doc.progress < 1.0
        assert doc.progress_msg and not doc.progress_msg.startswith("Parsing failed")  # a typed, readable reason
        assert doc.chunk_num == 0 and stored_chunk_ids(ready, tenant_id, kb_id, doc_id) == []
        assert [t.status for t in tasks_of(ready, doc_id)] == ["failed"]
    assert "binary" in document(ready, doc_ids[1]).progress_msg.lower()
    assert dataset(ready, kb_id).chunk_num == document(ready, doc_ids[0]).chunk_num


class _CancellingStore:
    """The real chunk store, but the first insert is followed by a user's cancel."""

    def __init__(self, parts: Components, cancel: Callable[[], None]) -> None:
        self._store, self._cancel, self.inserts = parts.doc_store, cancel, 0

    def insert(self, *args, **kwargs):
        errors = self._store.insert(*args, **kwargs)
        self.inserts += 1
        if self.inserts == 1:
            self._cancel()
        return errors

    def __getattr__(self, name: str):
        return getattr(self._store, name)


async def test_cancel_during_indexing_removes_the_partial_chunks(ready: Components,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(task_executor, "INSERT_BATCH", 3)
    tenant_id, kb_id, [doc_id] = seed_documents(ready, {"a.md": prose(10, 5).encode()})
    queue(ready, tenant_id, kb_id, [doc_id])
    store = _CancellingStore(ready, lambda: ready.db.call(document_service.cancel_parsing, tenant_id, kb_id, [doc_id]))
    monkeypatch.setattr(ready, "doc_store", store)

    await drain(executor_for(ready, FakeEmbedding()))

    doc = document(ready, doc_id)
    assert store.inserts == 1
    assert (doc.run, doc.chunk_num, doc.progress_msg) == ("CANCEL", 0, "Cancelled")
    assert stored_chunk_ids(ready, tenant_id, kb_id, doc_id) == []
    assert [t.status for t in tasks_of(ready, doc_id)] == ["cancelled"]


async def test_cancelling_a_reparse_before_indexing_keeps_the_previous_chunks(ready: Components) -> None:
    data = prose(8, 6).encode()
    tenant_id, kb_id, [doc_id] = seed_documents(ready, {"a.md": data})
    queue(ready, tenant_id, kb_id, [doc_id])
    await drain(executor_for(ready, FakeEmbedding()))
    before = document(ready, doc_id).chunk_num

    queue(ready, tenant_id, kb_id, [doc_id])
    cancel = lambda call: call == 2 and ready.db.call(document_service.cancel_parsing, tenant_id, kb_id, [doc_id])  # noqa: E731
    await drain(executor_for(ready, FakeEmbedding(on_encode=cancel)))

    doc = document(ready, doc_id)
    assert (doc.run, doc.chunk_num) == ("CANCEL", before)
    assert sorted(stored_chunk_ids(ready, tenant_id, kb_id, doc_id)) == sorted(expected_chunk_ids(doc_id, "a.md", data))
    assert dataset(ready, kb_id).chunk_num == before


async def test_a_reparse_supersedes_the_running_task_which_stops_without_touching_the_document(
    ready: Components,
) -> None:
    data = prose(8, 7).encode()
    tenant_id, kb_id, [doc_id] = seed_documents(ready, {"a.md": data})
    queue(ready, tenant_id, kb_id, [doc_id])
    requeue = lambda call: call == 1 and queue(ready, tenant_id, kb_id, [doc_id])  # noqa: E731

    assert await executor_for(ready, FakeEmbedding(on_encode=requeue)).run_once()
    assert document(ready, doc_id).run == "RUNNING"
    assert [t.status for t in tasks_of(ready, doc_id)] == ["cancelled", "queued"]

    await drain(executor_for(ready, FakeEmbedding()))
    assert_indexed(ready, tenant_id, kb_id, doc_id, "a.md", data)


async def test_a_document_deleted_mid_parse_leaves_no_chunks_behind(ready: Components,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    tenant_id, kb_id, [doc_id] = seed_documents(ready, {"a.md": prose(10, 8).encode()})
    queue(ready, tenant_id, kb_id, [doc_id])
    delete = lambda: ready.db.call(document_service.delete_many, tenant_id, kb_id, [doc_id],  # noqa: E731
                                   ready.doc_store, ready.storage)
    monkeypatch.setattr(task_executor, "INSERT_BATCH", 3)
    monkeypatch.setattr(ready, "doc_store", _CancellingStore(ready, delete))

    await drain(executor_for(ready, FakeEmbedding()))

    assert stored_chunk_ids(ready, tenant_id, kb_id, doc_id) == []
    assert [t.status for t in tasks_of(ready, doc_id)] == ["cancelled"]
    assert dataset(ready, kb_id).chunk_num == 0


async def test_a_task_whose_worker_died_is_redone_without_duplicates(ready: Components) -> None:
    data = prose(10, 9).encode()
    tenant_id, kb_id, [doc_id] = seed_documents(ready, {"a.md": data})
    queue(ready, tenant_id, kb_id, [doc_id])
    dead = ready.db.call(task_service.claim, "dead-worker", ["parse"], 60_000)
    # The dead worker got as far as writing a chunk the finished parse must not keep.
    stale = make_chunk_row(doc_id, kb_id, "a.md", "half-written chunk", fake_vectors(["x"])[0])
    ready.doc_store.create_idx(index_name(tenant_id), kb_id, len(fake_vectors(["x"])[0]))
    ready.doc_store.insert([stale], index_name(tenant_id), kb_id)
    executor = executor_for(ready, FakeEmbedding(), lease_ms=60_000)

    assert await executor.run_once() is False  # the lease is still the dead worker's
    ready.db.call(lambda: Task.update(claimed_time=now_ms() - 61_000).where(Task.id == dead.id).execute())
    assert await executor.run_once() is True

    assert_indexed(ready, tenant_id, kb_id, doc_id, "a.md", data)
    [task] = tasks_of(ready, doc_id)
    assert (task.status, task.attempts, task.claimed_by) == ("done", 2, "test-worker")
    assert dataset(ready, kb_id).chunk_num == document(ready, doc_id).chunk_num


async def test_a_task_that_keeps_killing_its_worker_is_failed_after_max_attempts(ready: Components) -> None:
    tenant_id, kb_id, [doc_id] = seed_documents(ready, {"a.md": prose(3, 10).encode()})
    queue(ready, tenant_id, kb_id, [doc_id])
    ready.db.call(lambda: Task.update(status="running", attempts=3, claimed_by="dead",
                                      claimed_time=now_ms() - 120_000).execute())

    assert await executor_for(ready, FakeEmbedding(), max_attempts=3).run_once()

    doc = document(ready, doc_id)
    assert doc.run == "FAIL" and "Gave up after 3 attempts" in doc.progress_msg
    assert [(t.status, t.attempts) for t in tasks_of(ready, doc_id)] == [("failed", 4)]


async def test_stop_hands_a_running_task_back_to_the_queue(ready: Components) -> None:
    tenant_id, kb_id, [doc_id] = seed_documents(ready, {"a.md": prose(3, 11).encode()})
    queue(ready, tenant_id, kb_id, [doc_id])
    entered, release = threading.Event(), threading.Event()

    def block(_call: int) -> None:
        entered.set()
        release.wait(10)

    executor = executor_for(ready, FakeEmbedding(on_encode=block), poll_interval=0.05)
    executor.start()
    try:
        await _until(entered.is_set)
        await executor.stop(grace=0.1)
    finally:
        release.set()
    [task] = tasks_of(ready, doc_id)
    assert (task.status, task.attempts, task.claimed_by) == ("queued", 0, None)

    await drain(executor_for(ready, FakeEmbedding()))
    assert document(ready, doc_id).run == "DONE"


async def test_progress_is_reported_per_stage(ready: Components) -> None:
    tenant_id, kb_id, [doc_id] = seed_documents(ready, {"a.md": prose(10, 12).encode()})
    queue(ready, tenant_id, kb_id, [doc_id])
    seen: list[tuple[float, str]] = []

    def record(_call: int) -> None:
        doc = document(ready, doc_id)
        seen.append((doc.progress, doc.progress_msg))

    await drain(executor_for(ready, FakeEmbedding(on_encode=record)))

    progresses = [p for p, _ in seen]
    assert progresses == sorted(progresses) and len(set(progresses)) == len(progresses) > 2
    assert 0.2 <= progresses[0] and progresses[-1] < 0.9
    assert all(message.startswith("Embedding chunks") for _, message in seen)
    assert document(ready, doc_id).progress == 1.0


async def test_a_quick_document_checks_in_at_most_once_per_interval(ready: Components, monkeypatch) -> None:
    """Stages passed within ``checkin_interval`` of the last check-in write nothing; the
    document still ends DONE with its counts."""
    tenant_id, kb_id, [doc_id] = seed_documents(ready, {"a.md": prose(10, 12).encode()})
    queue(ready, tenant_id, kb_id, [doc_id])
    check_ins: list[str] = []
    real = task_service.report_progress

    def counting(task_id, worker_id, doc, progress, message):
        check_ins.append(message)
        return real(task_id, worker_id, doc, progress, message)

    monkeypatch.setattr(task_service, "report_progress", counting)
    model = FakeEmbedding()
    await drain(executor_for(ready, model, checkin_interval=60))
    assert model.calls > 2 and check_ins == []  # several batches, no check-in among them
    doc = document(ready, doc_id)
    assert (doc.run, doc.progress) == ("DONE", 1.0) and doc.chunk_num > 0

    check_ins.clear()
    queue(ready, tenant_id, kb_id, [doc_id])
    await drain(executor_for(ready, FakeEmbedding()))  # checkin_interval=0: every stage
    assert len(check_ins) > model.calls and any(m.startswith("Embedding") for m in check_ins)


async def test_the_event_loop_stays_responsive_while_a_slow_sync_model_embeds(ready: Components) -> None:
    tenant_id, kb_id, [doc_id] = seed_documents(ready, {"a.md": prose(6, 13).encode()})
    queue(ready, tenant_id, kb_id, [doc_id])
    slow = FakeEmbedding(on_encode=lambda _call: __import__("time").sleep(0.2))
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1

    counting = asyncio.create_task(ticker())
    await drain(executor_for(ready, slow))
    counting.cancel()
    # Blocking encode calls on the loop would leave ~no ticks during >= 0.4 s of embedding.
    assert slow.calls >= 2 and ticks >= 10 * slow.calls


async def _until(predicate: Callable[[], bool]) -> None:
    async with asyncio.timeout(20):
        while not await asyncio.to_thread(predicate):  # noqa: ASYNC110 - polls the database
            await asyncio.sleep(0.05)




async def test_tasks_of_a_dead_process_on_this_host_are_reclaimed_without_waiting_for_the_lease(
    ready: Components,
) -> None:
    files = {"a.md": prose(4, 14).encode(), "b.md": prose(3, 15).encode()}
    tenant_id, kb_id, doc_ids = seed_documents(ready, files)
    queue(ready, tenant_id, kb_id, doc_ids)
    gone = await asyncio.create_subprocess_exec("true")
    await gone.wait()  # its pid no longer exists
    dead = ready.db.call(task_service.claim, f"{socket.gethostname()[:32]}:{gone.pid}:abc", ["parse"], 60_000)
    ready.db.call(task_service.claim, "elsewhere:1:abc", ["parse"], 60_000)
    executor = executor_for(ready, FakeEmbedding(), lease_ms=60_000)

    assert await executor.expire_dead_claims() == 1
    assert await executor.run_once() is True
    assert await executor.run_once() is False  # the other host's claim still holds its lease

    name = dict(zip(doc_ids, files, strict=True))[dead.doc_id]
    assert_indexed(ready, tenant_id, kb_id, dead.doc_id, name, files[name])
    assert [t.attempts for t in tasks_of(ready, dead.doc_id)] == [2]
