"""EmbeddingBatcher: concurrent small requests share model calls; a bad input fails only its own."""

from __future__ import annotations

import asyncio
import threading
import time

import numpy as np
import pytest

from api.components import Components
from api.db.migrate import upgrade
from rag.svr.embed_batcher import EmbeddingBatcher
from rag.svr.task_executor import TaskExecutor
from tests.ingest.worker_support import (
    AsyncFakeEmbedding,
    FakeEmbedding,
    document,
    fake_vectors,
    queue,
    seed_documents,
)


class Recording(FakeEmbedding):
    """Records each call's texts; refuses any text containing "poison"."""

    def __init__(self) -> None:
        super().__init__()
        self.batches: list[list[str]] = []

    def encode(self, texts: list[str]) -> tuple[np.ndarray, int]:
        self.batches.append(list(texts))
        if any("poison" in text for text in texts):
            raise ValueError("the provider refused an input")
        return super().encode(texts)


@pytest.mark.parametrize("model_class", [FakeEmbedding, AsyncFakeEmbedding])
async def test_concurrent_requests_share_calls_and_each_gets_its_own_vectors(model_class) -> None:
    batcher, model = EmbeddingBatcher(max_batch=8), model_class()
    requests = [[f"doc {n} chunk {k}" for k in range(1 + n % 3)] for n in range(12)]

    results = await asyncio.gather(*(batcher.encode("k", model, texts) for texts in requests))

    for texts, vectors in zip(requests, results, strict=True):
        np.testing.assert_allclose(vectors, fake_vectors(texts))
    assert model.calls < len(requests)


async def test_a_refused_input_fails_only_its_own_request() -> None:
    batcher, model = EmbeddingBatcher(max_batch=16), Recording()

    results = await asyncio.gather(
        batcher.encode("k", model, ["fine one"]),
        batcher.encode("k", model, ["poison pill"]),
        batcher.encode("k", model, ["fine two", "fine three"]),
        return_exceptions=True,
    )

    assert isinstance(results[1], ValueError)
    np.testing.assert_allclose(results[0], fake_vectors(["fine one"]))
    np.testing.assert_allclose(results[2], fake_vectors(["fine two", "fine three"]))
    assert model.batches[0] == ["fine one", "poison pill", "fine two", "fine three"]  # merged first


async def test_requests_never_exceed_the_batch_size_unless_alone() -> None:
    batcher, model = EmbeddingBatcher(max_batch=4), Recording()

    await asyncio.gather(batcher.encode("k", model, [f"big {n}" for n in range(6)]),
                         *(batcher.encode("k", model, [f"small {n}"]) for n in range(6)))

    assert all(len(batch) <= 4 or batch[0].startswith("big") for batch in model.batches)
    assert sum(len(batch) for batch in model.batches) == 12


async def test_many_small_documents_are_embedded_in_shared_calls(parts: Components) -> None:
    upgrade(parts.db)
    files = {f"note{n}.txt": f"Note {n}: the river meets the ocean at dawn.".encode() for n in range(12)}
    tenant_id, kb_id, doc_ids = seed_documents(parts, files)
    queue(parts, tenant_id, kb_id, doc_ids)
    model = FakeEmbedding(on_encode=lambda _call: time.sleep(0.05))  # a call costs time, like a real model
    executor = TaskExecutor(parts, concurrency=6, poll_interval=0.02, embedder=lambda _t, _n: model)

    executor.start()
    try:
        async with asyncio.timeout(30):
            while not all(document(parts, d).run == "DONE" for d in doc_ids):  # noqa: ASYNC110 - polls the DB
                await asyncio.sleep(0.05)
    finally:
        await executor.stop()

    assert all(document(parts, d).chunk_num == 1 for d in doc_ids)
    assert model.calls < len(doc_ids)


class Overlapping(FakeEmbedding):
    """Each call waits (up to 5 s) for ``company`` calls to be running at once, and records
    the most that ever ran together and torch's intra-op threads on the calling thread."""

    def __init__(self, company: int) -> None:
        super().__init__()
        self.barrier = threading.Barrier(company, timeout=5)
        self.running = self.most_running = 0
        self.lock = threading.Lock()
        self.torch_threads: set[int] = set()

    def encode(self, texts: list[str]) -> tuple[np.ndarray, int]:
        import torch

        with self.lock:
            self.running += 1
            self.most_running = max(self.most_running, self.running)
            self.torch_threads.add(torch.get_num_threads())
        try:
            self.barrier.wait()
        except threading.BrokenBarrierError:
            pass
        finally:
            with self.lock:
                self.running -= 1
        return super().encode(texts)


async def test_calls_run_on_as_many_model_threads_as_asked_each_on_one_core() -> None:
    batcher, model = EmbeddingBatcher(max_batch=2, threads=2), Overlapping(company=2)
    requests = [[f"doc {n} chunk {k}" for k in range(2)] for n in range(6)]

    results = await asyncio.gather(*(batcher.encode("k", model, texts) for texts in requests))
    await batcher.close()

    for texts, vectors in zip(requests, results, strict=True):
        np.testing.assert_allclose(vectors, fake_vectors(texts))
    assert model.most_running == 2 and not model.barrier.broken
    assert model.torch_threads == {1}


async def test_one_model_thread_runs_one_call_at_a_time() -> None:
    batcher, model = EmbeddingBatcher(max_batch=2, threads=1), Overlapping(company=1)

    await asyncio.gather(*(batcher.encode("k", model, [f"text {n}"]) for n in range(8)))
    await batcher.close()

    assert model.most_running == 1 and model.calls >= 4


async def test_a_request_arriving_while_a_call_runs_starts_on_the_free_thread() -> None:
    """With a thread free, a new request does not wait for the running call to end."""
    batcher, model = EmbeddingBatcher(max_batch=8, threads=2), Overlapping(company=2)
    first = asyncio.ensure_future(batcher.encode("k", model, ["first"]))
    await asyncio.sleep(0.05)  # the first call is running, waiting for company
    second = await batcher.encode("k", model, ["second"])
    await first
    await batcher.close()

    np.testing.assert_allclose(second, fake_vectors(["second"]))
    assert model.most_running == 2 and not model.barrier.broken
