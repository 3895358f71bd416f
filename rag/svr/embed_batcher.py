"""Coalesces the encode requests of concurrent ingestion pipelines into full model calls.

A corpus of small files gives one or two chunks per document; a model call per document
spends most of its time on per-call overhead (tokenizer set-up, thread hand-off, a network
round trip for remote models). Pipelines of one executor therefore hand their batches to
this batcher, which merges whatever is waiting for the same model (up to ``max_batch``
texts) into one call. No request waits for company: while the calls run, the next requests
queue up and form the next batches, so batching grows with load and costs nothing when idle.

Up to ``threads`` calls run at once. A sync (local) model runs on the batcher's own model
threads, each computing its call alone (torch with one intra-op thread), never on whichever
thread of a shared pool is free:

- torch keeps an OpenMP thread team and scratch memory per *calling* thread, so resident
  memory grows with every thread that ever called the model (measured with MiniLM: one
  calling thread +100 MB, eight +740 MB), i.e. it would grow with the number of pipelines;
- on this project's 2-core machines, two calls on one core each embedded SciFact chunks
  25-30 % faster, in 20 % less CPU, than one call at a time split over both cores: a split
  call waits at every operator's barrier for its slower half, and any other work on either
  core (parsing, indexing) stalls both halves.

``pinned(model)`` gives the same guarantee to a model called through a wrapper (``LLMBundle``).
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import os
from collections import deque
from collections.abc import Callable, Hashable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import numpy as np

T = TypeVar("T")


def one_intra_op_thread() -> None:
    """Thread initializer: torch computes this thread's calls on this thread alone.

    ``torch.set_num_threads`` also sets the default of threads that first use torch later; in
    a process that embeds on model threads that default is the right one too (parallelism
    comes from the calling threads).
    """
    import torch

    torch.set_num_threads(1)


class ModelThreads:
    """``threads`` lazily started threads that run the sync model calls of their owner."""

    def __init__(self, threads: int = 1, name: str = "ragline-embed",
                 initializer: Callable[[], None] | None = one_intra_op_thread) -> None:
        if threads < 1:
            raise ValueError("ModelThreads needs at least one thread")
        self.threads = threads
        self.name = name
        self.initializer = initializer
        self._pool: ThreadPoolExecutor | None = None

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=self.threads, thread_name_prefix=self.name,
                                            initializer=self.initializer)
        return await asyncio.get_running_loop().run_in_executor(self._pool, functools.partial(fn, *args))

    def close(self) -> None:
        """Let the threads end once their current calls return (a call cannot be interrupted)."""
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None


class PinnedModel:
    """A sync model whose ``encode`` is a coroutine that runs it on ``ModelThreads``.

    Put in place of the model inside a wrapper that would otherwise call it with
    ``asyncio.to_thread`` (any pool thread); every other attribute is the model's own.
    """

    def __init__(self, model: Any, threads: ModelThreads) -> None:
        self.model = model
        self.threads = threads

    async def encode(self, texts: list[str]) -> Any:
        return await self.threads.run(self.model.encode, texts)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.model, name)


def is_async(model: Any) -> bool:
    return inspect.iscoroutinefunction(model.encode)


async def encode_with(model: Any, texts: list[str], threads: ModelThreads | None = None) -> np.ndarray:
    """``model.encode(texts)``: awaited when it is a coroutine function, else run on ``threads``
    (a worker thread of the default pool when none are given)."""
    if is_async(model):
        vectors, _ = await model.encode(texts)
    elif threads is not None:
        vectors, _ = await threads.run(model.encode, texts)
    else:
        vectors, _ = await asyncio.to_thread(model.encode, texts)
    return np.asarray(vectors, dtype=np.float32)


def default_model_threads() -> int:
    """One model thread per core."""
    return os.cpu_count() or 1


class EmbeddingBatcher:
    """``await encode(key, model, texts)`` → vectors; requests with the same ``key`` share calls.

    ``key`` names a model as one tenant uses it (usage is accounted per tenant). At most
    ``threads`` calls per key run at once (0: one per core). When a merged call fails, each
    request in it is retried alone, so one bad input fails only its document.
    """

    def __init__(self, max_batch: int = 64, threads: int = 1) -> None:
        self.max_batch = max_batch
        self.threads = ModelThreads(threads or default_model_threads())
        self._pending: dict[Hashable, deque[tuple[list[str], asyncio.Future]]] = {}
        self._arrived: dict[Hashable, asyncio.Event] = {}
        self._runners: dict[Hashable, asyncio.Task] = {}

    @property
    def parallel_calls(self) -> int:
        return self.threads.threads

    def pinned(self, model: Any) -> Any:
        """``model`` made to run on this batcher's model threads however it is called (async as is)."""
        if is_async(model) or isinstance(model, PinnedModel):
            return model
        return PinnedModel(model, self.threads)

    async def encode(self, key: Hashable, model: Any, texts: list[str]) -> np.ndarray:
        future: asyncio.Future = asyncio.get_running_loop().create_future()
        self._pending.setdefault(key, deque()).append((list(texts), future))
        self._arrived.setdefault(key, asyncio.Event()).set()
        if key not in self._runners:
            self._runners[key] = asyncio.create_task(self._run(key, model))
        return await future

    async def close(self) -> None:
        """Stop the runners; requests still waiting are cancelled."""
        runners = list(self._runners.values())
        for runner in runners:
            runner.cancel()
        await asyncio.gather(*runners, return_exceptions=True)
        self.threads.close()

    async def _run(self, key: Hashable, model: Any) -> None:
        """Start a call whenever requests wait and fewer than ``parallel_calls`` run; end when
        nothing waits and nothing runs."""
        pending, arrived = self._pending[key], self._arrived[key]
        calls: set[asyncio.Task] = set()
        try:
            await asyncio.sleep(0)  # let requests made in the same loop turn join the first call
            while pending or calls:
                while pending and len(calls) < self.parallel_calls:
                    calls.add(asyncio.create_task(self._serve(model, self._take(pending))))
                arrived.clear()
                waiting_for_more = asyncio.ensure_future(arrived.wait())
                done, _ = await asyncio.wait({*calls, waiting_for_more}, return_when=asyncio.FIRST_COMPLETED)
                waiting_for_more.cancel()
                calls -= done
        finally:
            del self._runners[key]
            for call in calls:
                call.cancel()
            await asyncio.gather(*calls, return_exceptions=True)
            for _, future in pending:
                future.cancel()
            pending.clear()

    def _take(self, pending: deque) -> list[tuple[list[str], asyncio.Future]]:
        batch, size = [], 0
        while pending and (not batch or size + len(pending[0][0]) <= self.max_batch):
            texts, future = pending.popleft()
            if not future.done():  # its pipeline was cancelled meanwhile
                batch.append((texts, future))
                size += len(texts)
        return batch

    async def _serve(self, model: Any, batch: list[tuple[list[str], asyncio.Future]]) -> None:
        if not batch:
            return
        try:
            vectors = await encode_with(model, [text for texts, _ in batch for text in texts], self.threads)
        except asyncio.CancelledError:
            for _, future in batch:
                future.cancel()
            raise
        except Exception as error:
            if len(batch) == 1:
                _settle(batch[0][1], error=error)
                return
            for request in batch:
                await self._serve(model, [request])
            return
        offset = 0
        for texts, future in batch:
            _settle(future, result=vectors[offset:offset + len(texts)])
            offset += len(texts)


def _settle(future: asyncio.Future, result: Any = None, error: BaseException | None = None) -> None:
    if future.done():
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)
