"""Coalesces the encode requests of concurrent ingestion pipelines into full model calls.

A corpus of small files gives one or two chunks per document; a model call per document
spends most of its time on per-call overhead (tokenizer set-up, thread hand-off, a network
round trip for remote models). Pipelines of one executor therefore hand their batches to
this batcher, which merges whatever is waiting for the same model (up to ``max_batch``
texts) into one call. No request waits for company: while one call runs, the next requests
queue up and form the next batch, so batching grows with load and costs nothing when idle.

A sync (local) model always runs on the batcher's one model thread, never on whichever thread
of a shared pool is free: torch keeps an OpenMP thread team and scratch memory per *calling*
thread, so resident memory grows with every thread that ever called the model (measured with
MiniLM: one calling thread +100 MB, eight +740 MB), i.e. with the number of pipelines.
``pinned(model)`` gives the same guarantee to a model called through a wrapper (``LLMBundle``).
"""

from __future__ import annotations

import asyncio
import functools
import inspect
from collections import deque
from collections.abc import Callable, Hashable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import numpy as np

T = TypeVar("T")


class ModelThread:
    """One lazily started thread that runs every sync model call of its owner, in turn."""

    def __init__(self, name: str = "ragline-embed") -> None:
        self.name = name
        self._pool: ThreadPoolExecutor | None = None

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix=self.name)
        return await asyncio.get_running_loop().run_in_executor(self._pool, functools.partial(fn, *args))

    def close(self) -> None:
        """Let the thread end once its current call returns (a call cannot be interrupted)."""
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None


class PinnedModel:
    """A sync model whose ``encode`` is a coroutine that runs it on a ``ModelThread``.

    Put in place of the model inside a wrapper that would otherwise call it with
    ``asyncio.to_thread`` (any pool thread); every other attribute is the model's own.
    """

    def __init__(self, model: Any, thread: ModelThread) -> None:
        self.model = model
        self.thread = thread

    async def encode(self, texts: list[str]) -> Any:
        return await self.thread.run(self.model.encode, texts)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.model, name)


def is_async(model: Any) -> bool:
    return inspect.iscoroutinefunction(model.encode)


async def encode_with(model: Any, texts: list[str], thread: ModelThread | None = None) -> np.ndarray:
    """``model.encode(texts)``: awaited when it is a coroutine function, else run on ``thread``
    (a worker thread of the default pool when none is given)."""
    if is_async(model):
        vectors, _ = await model.encode(texts)
    elif thread is not None:
        vectors, _ = await thread.run(model.encode, texts)
    else:
        vectors, _ = await asyncio.to_thread(model.encode, texts)
    return np.asarray(vectors, dtype=np.float32)


class EmbeddingBatcher:
    """``await encode(key, model, texts)`` → vectors; requests with the same ``key`` share calls.

    ``key`` names a model as one tenant uses it (usage is accounted per tenant). When a merged
    call fails, each request in it is retried alone, so one bad input fails only its document.
    """

    def __init__(self, max_batch: int = 64) -> None:
        self.max_batch = max_batch
        self.thread = ModelThread()
        self._pending: dict[Hashable, deque[tuple[list[str], asyncio.Future]]] = {}
        self._runners: dict[Hashable, asyncio.Task] = {}

    def pinned(self, model: Any) -> Any:
        """``model`` made to run on this batcher's model thread however it is called (async as is)."""
        if is_async(model) or isinstance(model, PinnedModel):
            return model
        return PinnedModel(model, self.thread)

    async def encode(self, key: Hashable, model: Any, texts: list[str]) -> np.ndarray:
        future: asyncio.Future = asyncio.get_running_loop().create_future()
        self._pending.setdefault(key, deque()).append((list(texts), future))
        if key not in self._runners:
            self._runners[key] = asyncio.create_task(self._run(key, model))
        return await future

    async def close(self) -> None:
        """Stop the runners; requests still waiting are cancelled."""
        runners = list(self._runners.values())
        for runner in runners:
            runner.cancel()
        await asyncio.gather(*runners, return_exceptions=True)
        self.thread.close()

    async def _run(self, key: Hashable, model: Any) -> None:
        pending = self._pending[key]
        try:
            await asyncio.sleep(0)  # let requests made in the same loop turn join the first call
            while pending:
                batch = self._take(pending)
                await self._serve(model, batch)
        finally:
            del self._runners[key]
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
        try:
            vectors = await encode_with(model, [text for texts, _ in batch for text in texts], self.thread)
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
