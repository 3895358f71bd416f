"""Set-up shared by the pools of child processes the serving process starts (searches, embeddings).

Such a child does CPU work the serving process hands it; it must never compete with the event
loop it serves, and never outlive it.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import multiprocessing.connection
import os
import threading
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any, TypeVar

from threadpoolctl import threadpool_limits

log = logging.getLogger(__name__)
T = TypeVar("T")
STARTUP_TIMEOUT = 120.0  # seconds every child of a pool gets to start (imports, a model's weights)


def settle_in_child(niceness: int) -> None:
    """Pool initializer: the offline environment, one BLAS thread, a lower priority and an exit
    with the parent.

    One BLAS thread: a child's matrix products are small, and OpenBLAS's own threads spin while
    they wait, at the parent's priority: under chat load they burned most of a core. (Niceness
    is per thread on Linux: it holds for the thread that works and those it starts.) Without
    the watch, a child outlives a killed parent: it holds both ends of the pipe it reads its
    work from, so it never sees EOF.
    """
    import rag  # noqa: F401  - the offline environment, before any library reads it

    threadpool_limits(1, user_api="blas")
    try:
        os.nice(niceness)
    except (AttributeError, OSError):
        pass
    threading.Thread(target=_exit_with_parent, name="ragline-child-orphan-watch", daemon=True).start()


def _announce_then(announced: Any, initializer: Callable[..., None], initargs: tuple) -> None:
    """Initializer of a ``ChildPool`` child: tell the pool this child's pid, then set up."""
    announced.put(os.getpid())
    initializer(*initargs)


def _exit_with_parent() -> None:
    parent = multiprocessing.parent_process()
    if parent is not None:
        multiprocessing.connection.wait([parent.sentinel])
        os._exit(0)


class ChildPool:
    """``processes`` spawned children that run the functions handed to ``run``; started on first
    use (or by ``warm_up``).

    A child that dies (killed, out of memory) breaks a ``ProcessPoolExecutor`` for good; the
    pool then starts a fresh set of children and runs the call once more, so one lost child
    costs one slow call, never every later one.
    """

    def __init__(self, processes: int, initializer: Callable[..., None], initargs: tuple = ()) -> None:
        if processes < 1:
            raise ValueError("a pool of child processes needs at least one process")
        self.processes = processes
        self._initializer = initializer
        self._initargs = initargs
        self._executor: ProcessPoolExecutor | None = None
        self._announced: Any = None  # the current children's pids, each sent once as it starts
        self._pids: list[int] = []

    def executor(self) -> ProcessPoolExecutor:
        if self._executor is None:
            # spawn, not fork: the serving process has threads (and their locks) a fork would copy
            context = multiprocessing.get_context("spawn")
            self._announced, self._pids = context.SimpleQueue(), []
            self._executor = ProcessPoolExecutor(self.processes, mp_context=context, initializer=_announce_then,
                                                 initargs=(self._announced, self._initializer, self._initargs))
        return self._executor

    async def warm_up(self) -> list[int]:
        """Start every child now (a spawned child takes a second or more) instead of on the
        first calls; returns the children's pids.

        The pids come from the children as they start: the answers of the calls that start them
        would not do, since a child that is up first may answer several of them.
        """
        loop = asyncio.get_running_loop()
        pool = self.executor()
        await asyncio.gather(*(loop.run_in_executor(pool, os.getpid) for _ in range(self.processes)))
        async with asyncio.timeout(STARTUP_TIMEOUT):
            while True:
                while not self._announced.empty():  # a poll of the pipe: never blocks
                    self._pids.append(self._announced.get())
                if len(self._pids) >= self.processes:
                    return sorted(self._pids)
                await asyncio.sleep(0.02)

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """``fn(*args)`` in a child (``fn`` and the arguments must pickle)."""
        loop = asyncio.get_running_loop()
        pool = self.executor()
        try:
            return await loop.run_in_executor(pool, fn, *args)
        except BrokenProcessPool:
            log.warning("a child process died; starting a new set and running the call again")
            self._discard(pool)
            return await loop.run_in_executor(self.executor(), fn, *args)

    def _discard(self, broken: ProcessPoolExecutor) -> None:
        """Forget ``broken`` unless a concurrent call has replaced it already."""
        if self._executor is broken:
            self._executor = None
            self._announced.close()
        broken.shutdown(wait=False, cancel_futures=True)

    def close(self) -> None:
        """Stop the children once their current calls end."""
        if self._executor is not None:
            self._executor.shutdown(wait=True, cancel_futures=True)
            self._executor = None
            self._announced.close()
