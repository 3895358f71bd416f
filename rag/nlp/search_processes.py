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

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from rag.nlp.search import Dealer, EmbeddedQuestion
from rag.utils.child_process import ChildPool, settle_in_child

SEARCH_NICENESS = 10  # how much lower than the serving process's priority the children's is


# -- inside a child -------------------------------------------------------------------------------

_child_dealer: Dealer | None = None  # this child process's Dealer, set once by _open_child


def _open_child(engine: str, data_dir: str, es_hosts: list[str] | None, niceness: int) -> None:
    """Process initializer: settled as a quiet child (``settle_in_child``), then this child's
    own doc store, which reads a quiet index's term postings ahead: searching is all a child
    does, so the CPU that costs is not taken from the serving loop."""
    global _child_dealer
    settle_in_child(niceness)
    from rag.utils.doc_store import create_doc_store

    _child_dealer = Dealer(create_doc_store(engine, Path(data_dir), es_hosts, warm_postings=True))


def _child_blas_threads() -> list[int]:
    from threadpoolctl import threadpool_info

    return [pool["num_threads"] for pool in threadpool_info() if pool["user_api"] == "blas"]


def _child_retrieval(question: str, vector: np.ndarray, tokens: int, args: tuple, kwargs: dict) -> dict[str, Any]:
    return _child_dealer.retrieval(question, EmbeddedQuestion(question, vector, tokens), *args, **kwargs)


# -- in the serving process -----------------------------------------------------------------------


class SearchProcesses:
    """A pool of ``processes`` search children (``ChildPool``: started on first use or by
    ``warm_up``, replaced when one dies)."""

    def __init__(self, processes: int, engine: str, data_dir: Path, es_hosts: Sequence[str] | None = None,
                 niceness: int = SEARCH_NICENESS) -> None:
        self._children = ChildPool(processes, _open_child,
                                   (engine, str(data_dir), list(es_hosts or []) or None, niceness))

    @property
    def processes(self) -> int:
        return self._children.processes

    async def warm_up(self) -> list[int]:
        """Start every child now instead of on the first questions; returns the children's pids."""
        return await self._children.warm_up()

    async def retrieval(self, question: str, query_vector: np.ndarray, query_tokens: int,
                        *args: Any, **kwargs: Any) -> dict[str, Any]:
        """``Dealer.retrieval(question, <the vector>, *args, **kwargs)`` in a child."""
        vector = np.asarray(query_vector, dtype=np.float32)
        return await self._children.run(_child_retrieval, question, vector, query_tokens, args, kwargs)

    def close(self) -> None:
        """Stop the children once their current searches end."""
        self._children.close()
