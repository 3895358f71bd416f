"""Many documents in flight per executor: full model calls from few workers, bounded backlog, one model thread.

No timed asserts: model calls are counted and sized on fake models; where a test needs documents
to pile up it holds the first model call until they have (with a generous timeout).
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable

import numpy as np
import pytest

from api.components import Components
from api.db.migrate import upgrade
from api.db.models import Document
from rag.svr.task_executor import TaskExecutor
from tests.ingest.worker_support import FakeEmbedding, document, prose, queue, seed_documents, tasks_of


class Recording(FakeEmbedding):
    """Records each call's size and calling thread; ``hold(call)`` may block a call (model thread)."""

    def __init__(self, hold: Callable[[int], None] | None = None) -> None:
        super().__init__(on_encode=hold)
        self.sizes: list[int] = []
        self.threads: set[int] = set()

    def encode(self, texts: list[str]) -> tuple[np.ndarray, int]:
        self.sizes.append(len(texts))
        self.threads.add(threading.get_ident())
        return super().encode(texts)


@pytest.fixture
def ready(parts: Components) -> Components:
    upgrade(parts.db)
    return parts


def _waiting_for_vectors(parts: Components, doc_ids: list[str]) -> int:
    """Documents whose progress says they reached the embedding stage and are not done."""
    def count() -> int:
        return (Document.select().where(Document.id.in_(doc_ids) & Document.progress_msg.startswith("Embedding")
                                        & (Document.run == "RUNNING")).count())
    return parts.db.call(count)


def _until_at_least(parts: Components, doc_ids: list[str], wanted: int, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while _waiting_for_vectors(parts, doc_ids) < wanted and time.monotonic() < deadline:
        time.sleep(0.02)


async def _run_until_done(executor: TaskExecutor, parts: Components, doc_ids: list[str]) -> None:
    executor.start()
    try:
        async with asyncio.timeout(60):
            while not await asyncio.to_thread(  # noqa: ASYNC110 - polls the database
                    lambda: all(document(parts, d).run in ("DONE", "FAIL") for d in doc_ids)):
                await asyncio.sleep(0.05)
    finally:
        await executor.stop()


def _one_chunk_files(count: int) -> dict[str, bytes]:
    return {f"note{n}.txt": f"Note {n}: the river meets the ocean at dawn.".encode() for n in range(count)}


async def test_one_worker_keeps_enough_small_documents_in_flight_to_fill_model_calls(ready: Components) -> None:
    tenant_id, kb_id, doc_ids = seed_documents(ready, _one_chunk_files(40))
    queue(ready, tenant_id, kb_id, doc_ids)
    # The first call waits until 16 more documents queue behind it, as they would behind a slow model.
    model = Recording(hold=lambda call: call == 1 and _until_at_least(ready, doc_ids, 17))
    executor = TaskExecutor(ready, concurrency=1, poll_interval=0.02, embed_batch_size=16, embed_parallelism=1,
                            embedder=lambda _t, _n: model, checkin_interval=0)  # progress shows the stage

    await _run_until_done(executor, ready, doc_ids)

    assert all(document(ready, d).run == "DONE" and document(ready, d).chunk_num == 1 for d in doc_ids)
    assert sum(model.sizes) == 40
    assert max(model.sizes) == 16  # one worker, yet a full call merged from 16 one-chunk documents


async def test_no_document_is_started_while_two_batches_of_chunks_wait_for_the_model(ready: Components) -> None:
    files = {f"long{n}.md": prose(10, 40 + n).encode() for n in range(8)}
    tenant_id, kb_id, doc_ids = seed_documents(ready, files)
    queue(ready, tenant_id, kb_id, doc_ids)
    executor: TaskExecutor
    seen: list[tuple[int, int]] = []

    def observe(_call: int) -> None:  # on the model thread, while the pipelines keep going
        time.sleep(0.01)
        seen.append((executor._flow.unembedded, len(executor._jobs)))

    model = Recording(hold=observe)
    executor = TaskExecutor(ready, concurrency=1, poll_interval=0.02, embed_batch_size=4, embed_parallelism=1,
                            embedder=lambda _t, _n: model)

    await _run_until_done(executor, ready, doc_ids)

    assert executor.embed_backlog == 2 * 4  # one model thread: one batch running, one filling
    most_chunks = max(document(ready, d).chunk_num for d in doc_ids)
    assert all(document(ready, d).run == "DONE" for d in doc_ids)
    assert most_chunks > executor.embed_backlog  # each document alone exceeds the backlog
    # Admission stops at the backlog: at most one document's chunks beyond it, never all eight.
    assert max(unembedded for unembedded, _ in seen) < executor.embed_backlog + most_chunks
    assert max(in_flight for _, in_flight in seen) <= 4


async def test_a_local_model_runs_on_the_batchers_few_threads_however_many_documents_are_in_flight(
    ready: Components, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """torch keeps a thread team and scratch memory per calling thread: a fixed few callers."""
    tenant_id, kb_id, doc_ids = seed_documents(ready, _one_chunk_files(24))
    queue(ready, tenant_id, kb_id, doc_ids)
    model = Recording(hold=lambda _call: time.sleep(0.01))
    # The default embedder: the tenant's LLMBundle, whose sync model would run in any pool thread.
    monkeypatch.setattr(ready.registry, "model", lambda _name, _kind="chat": model)
    executor = TaskExecutor(ready, concurrency=4, poll_interval=0.02, embed_batch_size=4, embed_parallelism=2)

    await _run_until_done(executor, ready, doc_ids)

    assert all(document(ready, d).run == "DONE" for d in doc_ids)
    assert len(model.sizes) > 2 and 1 <= len(model.threads) <= 2
    assert threading.get_ident() not in model.threads


async def test_stop_hands_every_document_in_flight_back_to_the_queue(ready: Components) -> None:
    tenant_id, kb_id, doc_ids = seed_documents(ready, _one_chunk_files(12))
    queue(ready, tenant_id, kb_id, doc_ids)
    release = threading.Event()
    model = Recording(hold=lambda _call: release.wait(10))
    executor = TaskExecutor(ready, concurrency=2, poll_interval=0.02, embed_batch_size=4,
                            embedder=lambda _t, _n: model, checkin_interval=0)  # progress shows the stage

    executor.start()
    try:
        async with asyncio.timeout(20):
            while await asyncio.to_thread(_waiting_for_vectors, ready, doc_ids) < 6:  # noqa: ASYNC110 - polls the DB
                await asyncio.sleep(0.02)
        await executor.stop(grace=0.1)
    finally:
        release.set()

    tasks = [task for d in doc_ids for task in tasks_of(ready, d)]
    assert {(t.status, t.attempts, t.claimed_by) for t in tasks} == {("queued", 0, None)}

    model.on_encode = None
    again = TaskExecutor(ready, concurrency=2, poll_interval=0.02, embedder=lambda _t, _n: model)
    await _run_until_done(again, ready, doc_ids)
    assert all(document(ready, d).run == "DONE" and document(ready, d).chunk_num == 1 for d in doc_ids)
