"""Searches of the embedded index in child processes, below the serving process's priority.

A search is mostly Python between short C calls (query analysis, FTS5 and numpy calls,
fusion, building the page's rows). In a thread of the serving process each of those steps
holds the GIL, so whenever the event loop wakes (a token from the model, a database reply)
it first waits for a search to let go, and a search thread that the kernel has deprioritised
(niced, on a saturated machine) lets go late. Under 200 concurrent chat streams that wait was
most of the server's overhead in time to first token. A child process has a GIL of its own,
and its niceness then works: the kernel runs the loop first and the searches with what is left.

Each child opens the doc store itself (the SQLite index files are shared through the
filesystem; every search catches up with the writes made since, tombstones included) and runs
the same ``Dealer.retrieval`` as the threads do. The question's vector is computed in the
serving process, where questions asked together share one model call, and travels with the
request; results come back as the plain dicts ``Dealer`` builds anyway.

Searches that must reach a model on the serving process's loop (a rerank model) cannot run
here; the caller keeps those in its threads.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import multiprocessing.connection
import os
import threading
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Any

import numpy as np
from threadpoolctl import threadpool_limits

from rag.nlp.search import Dealer, EmbeddedQuestion

log = logging.getLogger(__name__)

SEARCH_NICENESS = 10  # how much lower than the serving process's priority the children's is


# -- inside a child -------------------------------------------------------------------------------

_child_dealer: Dealer | None = None  # this child process's Dealer, set once by _open_child


def _open_child(engine: str, data_dir: str, es_hosts: list[str] | None, niceness: int) -> None:
    """Process initializer: one BLAS thread, a lower priority, an exit with the parent, then
    this child's own doc store.

    One BLAS thread: a search's matrix products are small (5,000 chunks × 384 dims is half a
    millisecond on one core), and OpenBLAS's own threads spin while they wait, at the
    parent's priority: under chat load they burned most of a core. (Niceness is per thread on
    Linux: it holds for the thread that searches and those it starts.) Without the watch, a
    child outlives a killed parent: it holds both ends of the pipe it reads its work from, so
    it never sees EOF.
    """
    global _child_dealer
    import rag  # noqa: F401  - the offline environment, before any library reads it
    from rag.utils.doc_store import create_doc_store

    threadpool_limits(1, user_api="blas")
    try:
        os.nice(niceness)
    except (AttributeError, OSError):
        pass
    threading.Thread(target=_exit_with_parent, name="ragline-search-orphan-watch", daemon=True).start()
    _child_dealer = Dealer(create_doc_store(engine, Path(data_dir), es_hosts))


def _exit_with_parent() -> None:
    parent = multiprocessing.parent_process()
    if parent is not None:
        multiprocessing.connection.wait([parent.sentinel])
        os._exit(0)


def _child_pid() -> int:
    return os.getpid()


def _child_blas_threads() -> list[int]:
    from threadpoolctl import threadpool_info

    return [pool["num_threads"] for pool in threadpool_info() if pool["user_api"] == "blas"]


def _child_retrieval(question: str, vector: np.ndarray, tokens: int, args: tuple, kwargs: dict) -> dict[str, Any]:
    return _child_dealer.retrieval(question, EmbeddedQuestion(question, vector, tokens), *args, **kwargs)


# -- in the serving process -----------------------------------------------------------------------


class SearchProcesses:
    """A pool of ``processes`` search children, started on first use (or by ``warm_up``).

    A child that dies (killed, out of memory) breaks a ``ProcessPoolExecutor`` for good; the
    pool then starts a fresh set of children and runs the search once more, so one lost child
    costs one slow search, never every later one.
    """

    def __init__(self, processes: int, engine: str, data_dir: Path, es_hosts: Sequence[str] | None = None,
                 niceness: int = SEARCH_NICENESS) -> None:
        if processes < 1:
            raise ValueError("SearchProcesses needs at least one process")
        self.processes = processes
        self._initargs = (engine, str(data_dir), list(es_hosts or []) or None, niceness)
        self._executor: ProcessPoolExecutor | None = None

    def _pool(self) -> ProcessPoolExecutor:
        if self._executor is None:
            # spawn, not fork: the serving process has threads (and their locks) a fork would copy
            self._executor = ProcessPoolExecutor(self.processes, mp_context=multiprocessing.get_context("spawn"),
                                                 initializer=_open_child, initargs=self._initargs)
        return self._executor

    async def warm_up(self) -> list[int]:
        """Start every child now (a spawned child takes about a second) instead of on the first
        questions; returns the children's pids."""
        loop = asyncio.get_running_loop()
        pool = self._pool()
        pids = await asyncio.gather(*(loop.run_in_executor(pool, _child_pid) for _ in range(self.processes)))
        return sorted(set(pids))

    async def retrieval(self, question: str, query_vector: np.ndarray, query_tokens: int,
                        *args: Any, **kwargs: Any) -> dict[str, Any]:
        """``Dealer.retrieval(question, <the vector>, *args, **kwargs)`` in a child."""
        call = (_child_retrieval, question, np.asarray(query_vector, dtype=np.float32), query_tokens, args, kwargs)
        loop = asyncio.get_running_loop()
        pool = self._pool()
        try:
            return await loop.run_in_executor(pool, *call)
        except BrokenProcessPool:
            log.warning("a search process died; starting a new set and searching again")
            self._discard(pool)
            return await loop.run_in_executor(self._pool(), *call)

    def _discard(self, broken: ProcessPoolExecutor) -> None:
        """Forget ``broken`` unless a concurrent search has replaced it already."""
        if self._executor is broken:
            self._executor = None
        broken.shutdown(wait=False, cancel_futures=True)

    def close(self) -> None:
        """Stop the children once their current searches end."""
        if self._executor is not None:
            self._executor.shutdown(wait=True, cancel_futures=True)
            self._executor = None
