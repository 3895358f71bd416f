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
the same ``Dealer.retrieval`` as the threads do. Results come back as the plain dicts ``Dealer``
builds anyway.

The question's vector travels with the request, or, for a lone new question to the builtin
model, the child computes it (``embed_and_retrieve``: the model's ONNX graph, ``QuestionGraph``,
loaded once per child without torch). That is one process hop fewer than asking an embedding
process first: on a quiet server, where each hop wakes a sleeping process, it saved 1.1 ms of a
new question's retrieval (``tests.bench.chat_load``'s baseline). Under load the embedding
processes keep the questions (the caller decides, ``Components.search_question``): there,
questions asked together share one model call, and a search child busy embedding held up the
searches queued behind it (retrieval p90 under ``chat_load`` 0.55 → 0.9 s). The child embeds
on the thread the call woke and searches on a second thread, which runs the text leg on the
other core until the vector arrives (``QuestionBeingEmbedded``): about half a millisecond of a
lone question (``tests.bench.embed_search_overlap``).

Searches that must reach a model on the serving process's loop (a rerank model) cannot run
here; the caller keeps those in its threads.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from rag.llm.onnx_encoder import OnnxSentenceEncoder, QuestionGraph
from rag.nlp.search import Dealer, EmbeddedQuestion, QuestionBeingEmbedded
from rag.utils.child_process import ChildPool, settle_in_child
from rag.utils.token_utils import num_tokens

SEARCH_NICENESS = 10  # how much lower than the serving process's priority the children's is


# -- inside a child -------------------------------------------------------------------------------

_child_dealer: Dealer | None = None  # this child process's Dealer, set once by _open_child
_child_encoders: dict[QuestionGraph, OnnxSentenceEncoder | None] = {}  # loaded (or refused) graphs
_child_searcher = ThreadPoolExecutor(1, thread_name_prefix="ragline-search")  # started on first use


class QuestionGraphRefused(RuntimeError):
    """A search child cannot compute a ``QuestionGraph``'s vectors (see ``OnnxSentenceEncoder.from_graph``)."""


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


def _child_encoder(graph: QuestionGraph) -> OnnxSentenceEncoder | None:
    if graph not in _child_encoders:
        _child_encoders[graph] = OnnxSentenceEncoder.from_graph(graph)
    return _child_encoders[graph]


def _child_load_graph(graph: QuestionGraph) -> bool:
    return _child_encoder(graph) is not None


def _child_embed_and_retrieve(question: str, graph: QuestionGraph, args: tuple, kwargs: dict
                              ) -> tuple[dict[str, Any], EmbeddedQuestion, float]:
    """The question is embedded on this thread, which the call has just woken, while the search
    starts on the child's other thread and runs its text leg on the other core (onnxruntime and
    SQLite let go of the GIL) until it needs the vector."""
    encoder = _child_encoder(graph)
    if encoder is None:
        raise QuestionGraphRefused(graph.graph)
    tokens = num_tokens(question)
    vector: Future = Future()
    search = _child_searcher.submit(_child_dealer.retrieval, question,
                                    QuestionBeingEmbedded(question, vector, encoder.dimension, tokens), *args, **kwargs)
    started = time.perf_counter()
    try:
        vector.set_result(encoder.encode([question])[0])
    except BaseException as error:  # the search must not wait for a vector that never comes
        vector.set_exception(error)
        raise
    embedding_ms = (time.perf_counter() - started) * 1000
    return search.result(), EmbeddedQuestion(question, vector.result(), tokens), embedding_ms


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

    @property
    def searches_in_flight(self) -> int:
        """Calls sent to the children and not answered yet (0: every child is free)."""
        return self._children.calls_in_flight

    async def warm_up(self) -> list[int]:
        """Start every child now instead of on the first questions; returns the children's pids."""
        return await self._children.warm_up()

    async def retrieval(self, question: str, query_vector: np.ndarray, query_tokens: int,
                        *args: Any, **kwargs: Any) -> dict[str, Any]:
        """``Dealer.retrieval(question, <the vector>, *args, **kwargs)`` in a child."""
        vector = np.asarray(query_vector, dtype=np.float32)
        return await self._children.run(_child_retrieval, question, vector, query_tokens, args, kwargs)

    async def load_question_graph(self, graph: QuestionGraph) -> bool:
        """Load ``graph`` in every child now rather than on its first question; False when a
        child refused it (its questions then go to the embedding processes)."""
        loaded = await self._children.run_in_every_child(_child_load_graph, graph)
        return len(loaded) == self.processes and all(loaded.values())

    async def embed_and_retrieve(self, question: str, graph: QuestionGraph, *args: Any, **kwargs: Any
                                 ) -> tuple[dict[str, Any], EmbeddedQuestion, float]:
        """``retrieval`` of a question the child embeds itself with ``graph``: the result, the
        embedded question (its vector and tokens, for the caller to remember and account) and the
        embedding's milliseconds.
        Raises ``QuestionGraphRefused`` when the child cannot use ``graph``."""
        return await self._children.run(_child_embed_and_retrieve, question, graph, args, kwargs)

    def close(self) -> None:
        """Stop the children once their current searches end."""
        self._children.close()
