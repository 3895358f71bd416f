"""Searches of the embedded index in child processes (``SearchProcesses``): the same answers as
a search in a thread, the writes made since seen, below the server's priority, and a killed
child replaced without failing a question."""

from __future__ import annotations

import asyncio
import os
import queue
import signal
import sys
import threading
from concurrent.futures import Future
from pathlib import Path

import numpy as np
import pytest

from api.db.migrate import upgrade
from api.db.models import Usage
from rag.llm.embedding_model import BuiltinEmbedding
from rag.llm.onnx_encoder import QuestionGraph
from rag.nlp.search import Dealer, EmbeddedQuestion
from rag.nlp.search_processes import SEARCH_NICENESS, QuestionGraphRefused, SearchProcesses
from rag.utils.doc_store import create_doc_store
from rag.utils.doc_store_conn import DocStoreConnection, index_name, make_chunk_row
from tests.conftest import BUILTIN_EMBEDDING

TENANT, KB = "t1", "kb1"
DIM = 8
TEXTS = [
    "Aspirin reduces the risk of heart attack.",
    "Statins lower cholesterol in the blood.",
    "The heart pumps blood through the body.",
    "Volcanoes erupt molten rock.",
]
OPTIONS = {"similarity_threshold": 0.0, "vector_similarity_weight": 0.3}


def vector(i: int) -> np.ndarray:
    vec = np.full(DIM, 0.05, dtype=np.float32)
    vec[i % DIM] = 1.0
    return vec / np.linalg.norm(vec)


def question(text: str, i: int) -> EmbeddedQuestion:
    return EmbeddedQuestion(text, vector(i), 3)


@pytest.fixture
def store(tmp_path: Path) -> DocStoreConnection:
    built = create_doc_store("sqlite", tmp_path, None)
    rows = [make_chunk_row(f"d{i}", KB, f"d{i}.txt", text, vector(i)) for i, text in enumerate(TEXTS)]
    assert built.insert(rows, index_name(TENANT), KB) == []
    yield built
    built.close()


@pytest.fixture
async def searches(tmp_path: Path, store: DocStoreConnection):
    pool = SearchProcesses(1, "sqlite", tmp_path)
    yield pool
    pool.close()


async def search(pool: SearchProcesses, text: str, i: int) -> dict:
    query = question(text, i)
    return await pool.retrieval(text, query.vector, query.tokens, [TENANT], [KB], 1, 10, **OPTIONS)


async def test_a_child_answers_exactly_as_a_thread_does(searches, store) -> None:
    in_child = await search(searches, "heart blood", 2)
    in_thread = Dealer(store).retrieval("heart blood", question("heart blood", 2), [TENANT], [KB], 1, 10, **OPTIONS)
    assert in_child["total"] > 0
    assert in_child == in_thread


async def test_a_child_sees_the_writes_made_after_it_opened_the_index(searches, store) -> None:
    assert all(c["doc_id"] != "new" for c in (await search(searches, "glacier ice", 5))["chunks"])
    store.insert([make_chunk_row("new", KB, "new.txt", "Glacier ice melts in spring.", vector(5))], index_name(TENANT), KB)
    found = await search(searches, "glacier ice", 5)
    assert found["chunks"][0]["doc_id"] == "new"
    store.delete({"doc_id": "new"}, index_name(TENANT), KB)
    assert all(c["doc_id"] != "new" for c in (await search(searches, "glacier ice", 5))["chunks"])


@pytest.mark.skipif(sys.platform != "linux", reason="niceness is read from /proc")
async def test_children_run_below_the_serving_process_priority(searches) -> None:
    pids = await searches.warm_up()
    assert len(pids) == 1
    assert os.getpriority(os.PRIO_PROCESS, pids[0]) == min(os.getpriority(os.PRIO_PROCESS, 0) + SEARCH_NICENESS, 19)


async def test_a_killed_child_is_replaced_and_the_question_still_answered(searches) -> None:
    [pid] = await searches.warm_up()
    os.kill(pid, signal.SIGKILL)
    found = await search(searches, "volcanoes", 3)
    assert found["chunks"][0]["doc_id"] == "d3"
    assert pid not in await searches.warm_up()


def test_at_least_one_process() -> None:
    with pytest.raises(ValueError):
        SearchProcesses(0, "sqlite", Path("."))


class RecordingDealer(Dealer):
    """The components' own Dealer, counting the searches that ran in this process."""

    def __init__(self, store: DocStoreConnection) -> None:
        super().__init__(store)
        self.calls = 0

    def retrieval(self, *args, **kwargs) -> dict:
        self.calls += 1
        return super().retrieval(*args, **kwargs)


class KeepOrder:
    """A sync rerank model that scores by position and records the process it ran in."""

    def __init__(self) -> None:
        self.pids: list[int] = []

    def similarity(self, query: str, texts: list[str]) -> tuple[np.ndarray, int]:
        self.pids.append(os.getpid())
        return np.linspace(1.0, 0.5, len(texts)), 1


async def test_components_search_in_a_process_unless_a_rerank_model_needs_this_one(make_settings, make_parts) -> None:
    parts = make_parts(make_settings(search_processes=1))
    assert parts.search_processes is not None
    rows = [make_chunk_row(f"d{i}", KB, f"d{i}.txt", text, vector(i)) for i, text in enumerate(TEXTS)]
    assert parts.doc_store.insert(rows, index_name(TENANT), KB) == []
    parts.dealer = RecordingDealer(parts.doc_store)

    found = await parts.search("heart blood", question("heart blood", 2), TENANT, [KB], 1, 10, **OPTIONS)
    assert found["total"] > 0 and parts.dealer.calls == 0  # answered by the child

    reranker = KeepOrder()
    reranked = await parts.search("heart blood", question("heart blood", 2), TENANT, [KB], 1, 10,
                                  rerank_mdl=reranker, **OPTIONS)
    assert parts.dealer.calls == 1 and reranker.pids == [os.getpid()]
    assert {c["chunk_id"] for c in reranked["chunks"]} == {c["chunk_id"] for c in found["chunks"]}


def test_search_processes_only_for_the_embedded_index(make_settings) -> None:
    from api.components import build_search_processes

    assert build_search_processes(make_settings(search_processes=0)) is None
    assert build_search_processes(make_settings(search_processes=2)).processes == 2
    assert build_search_processes(make_settings(search_processes=-1)).processes == (os.cpu_count() or 1)
    assert build_search_processes(make_settings(search_processes=2, doc_engine="elasticsearch",
                                                es_hosts="http://127.0.0.1:9")) is None


async def test_a_child_searches_with_one_blas_thread(searches) -> None:
    from rag.nlp.search_processes import _child_blas_threads

    await searches.warm_up()
    assert set(await searches._children.run(_child_blas_threads)) == {1}


# -- a new question embedded by the search process itself ------------------------------------------

NEW_QUESTION = "What pumps blood around the body?"


def minilm_rows(model: BuiltinEmbedding) -> list[dict]:
    vectors, _ = model.encode(TEXTS)
    return [make_chunk_row(f"d{i}", KB, f"d{i}.txt", text, vectors[i]) for i, text in enumerate(TEXTS)]


@pytest.fixture
def graph(builtin_embedding: BuiltinEmbedding) -> QuestionGraph:
    builtin_embedding.warm_up()
    assert builtin_embedding.question_graph is not None
    return builtin_embedding.question_graph


def refused(graph: QuestionGraph, directory: Path) -> QuestionGraph:
    """A copy of the graph with probe vectors no process reproduces (as if exported by another
    onnxruntime; a copy, since a child keeps what it loaded by file)."""
    import dataclasses
    import shutil

    copy = shutil.copy(graph.graph, directory / "other.onnx")
    return dataclasses.replace(graph, graph=str(copy), probe_vectors=(-graph.probes()).tobytes())


async def test_a_child_embeds_a_new_question_as_the_model_does_and_searches(
        tmp_path: Path, builtin_embedding: BuiltinEmbedding, graph: QuestionGraph) -> None:
    store = create_doc_store("sqlite", tmp_path, None)
    assert store.insert(minilm_rows(builtin_embedding), index_name(TENANT), KB) == []
    pool = SearchProcesses(1, "sqlite", tmp_path)
    try:
        assert await pool.load_question_graph(graph)
        found, query, embedding_ms = await pool.embed_and_retrieve(NEW_QUESTION, graph, [TENANT], [KB], 1, 10,
                                                                   **OPTIONS)
        assert embedding_ms > 0
        expected_vector, expected_tokens = builtin_embedding.encode_queries(NEW_QUESTION)
        np.testing.assert_allclose(query.vector, expected_vector, atol=1e-6)
        assert query.tokens == expected_tokens and query.question == NEW_QUESTION
        in_thread = Dealer(store).retrieval(NEW_QUESTION, query, [TENANT], [KB], 1, 10, **OPTIONS)
        assert found == in_thread and found["chunks"][0]["doc_id"] == "d2"
    finally:
        pool.close()
        store.close()


async def test_a_child_refuses_a_graph_it_cannot_reproduce(searches, graph: QuestionGraph, tmp_path: Path) -> None:
    other = refused(graph, tmp_path)
    assert not await searches.load_question_graph(other)
    with pytest.raises(QuestionGraphRefused):
        await searches.embed_and_retrieve(NEW_QUESTION, other, [TENANT], [KB], 1, 10, **OPTIONS)


class FixedQuestionEncoder:
    """Stands in for a child's question graph: ``vector(i)`` for every text, or an error."""

    dimension = DIM

    def __init__(self, i: int | None) -> None:
        self.i = i

    def encode(self, texts: list[str]) -> np.ndarray:
        if self.i is None:
            raise RuntimeError("onnxruntime failed")
        return np.stack([vector(self.i)] * len(texts))


class OneDaemonThread:
    """``ThreadPoolExecutor(1)`` on a daemon thread: a search left waiting for a vector by a
    broken ``_child_embed_and_retrieve`` fails the test instead of holding up its exit."""

    def __init__(self) -> None:
        self._calls: queue.SimpleQueue = queue.SimpleQueue()
        threading.Thread(target=self._work, daemon=True).start()

    def _work(self) -> None:
        while True:
            fn, args, kwargs, done = self._calls.get()
            try:
                done.set_result(fn(*args, **kwargs))
            except BaseException as error:  # noqa: BLE001 - handed over with the future
                done.set_exception(error)

    def submit(self, fn, *args, **kwargs) -> Future:
        done: Future = Future()
        self._calls.put((fn, args, kwargs, done))
        return done


def test_an_embedding_that_fails_fails_the_call_and_frees_the_search(monkeypatch, store) -> None:
    """Inside a child (its globals set as ``_open_child`` and ``load_question_graph`` set them):
    the search waiting for the vector on the child's other thread must not wait for ever."""
    from rag.nlp import search_processes

    graph = QuestionGraph("graph.onnx", "tokenizer.json", 16, b"")
    monkeypatch.setattr(search_processes, "_child_dealer", Dealer(store))
    monkeypatch.setattr(search_processes, "_child_searcher", OneDaemonThread())
    monkeypatch.setitem(search_processes._child_encoders, graph, FixedQuestionEncoder(None))
    search = ([TENANT], [KB], 1, 10)
    caller = OneDaemonThread()
    with pytest.raises(RuntimeError, match="onnxruntime failed"):
        caller.submit(search_processes._child_embed_and_retrieve, "heart blood", graph, search, OPTIONS).result(30)
    monkeypatch.setitem(search_processes._child_encoders, graph, FixedQuestionEncoder(2))
    found, query, _ = caller.submit(search_processes._child_embed_and_retrieve, "heart blood", graph, search,
                                    OPTIONS).result(30)  # the child's one search thread is free again
    assert np.array_equal(query.vector, vector(2))
    assert found == Dealer(store).retrieval("heart blood", question("heart blood", 2), *search, **OPTIONS)


class CountingBatcher:
    """The components' question batcher, counting the questions sent to the embedding model."""

    def __init__(self, batcher) -> None:
        self.batcher = batcher
        self.questions: list[str] = []

    async def encode(self, key, model, texts):
        self.questions.extend(texts)
        return await self.batcher.encode(key, model, texts)

    async def close(self) -> None:
        await self.batcher.close()


def embedding_rows(parts) -> list[tuple[str, int]]:
    return parts.db.call(lambda: [(row.model, row.prompt_tokens) for row in
                                  Usage.select().where(Usage.kind == "embedding").order_by(Usage.create_time)])


async def test_components_send_a_new_question_to_one_search_process(
        make_settings, make_parts, builtin_embedding: BuiltinEmbedding, tmp_path: Path) -> None:
    parts = make_parts(make_settings(search_processes=1))
    upgrade(parts.db)
    assert parts.doc_store.insert(minilm_rows(builtin_embedding), index_name(TENANT), KB) == []
    parts.question_batcher = counting = CountingBatcher(parts.question_batcher)
    assert await parts.warm_up_question_search(BUILTIN_EMBEDDING)
    assert BUILTIN_EMBEDDING in parts.question_graphs

    found = await parts.search_question(TENANT, BUILTIN_EMBEDDING, NEW_QUESTION, [KB], 1, 10, **OPTIONS)
    assert found["chunks"][0]["doc_id"] == "d2" and counting.questions == []  # embedded by the search process
    _, tokens = builtin_embedding.encode_queries(NEW_QUESTION)
    await parts.usage.settled()
    assert embedding_rows(parts) == [(BUILTIN_EMBEDDING, tokens)]  # accounted as the model's own call

    again = await parts.search_question(TENANT, BUILTIN_EMBEDDING, NEW_QUESTION, [KB], 1, 10, **OPTIONS)
    assert again == found and counting.questions == []
    await parts.usage.settled()
    assert len(embedding_rows(parts)) == 1  # the remembered vector: nothing spent

    busy = asyncio.create_task(search(parts.search_processes, "volcanoes", 3))
    await asyncio.sleep(0)  # that search is now in flight
    assert parts.search_processes.searches_in_flight == 1
    beside = await parts.search_question(TENANT, BUILTIN_EMBEDDING, "Where does molten rock erupt?", [KB], 1, 10,
                                         **OPTIONS)
    assert beside["chunks"][0]["doc_id"] == "d3" and (await busy)["total"] > 0
    assert counting.questions == ["Where does molten rock erupt?"]  # under load: the embedding processes'
    assert parts.search_processes.searches_in_flight == 0
    counting.questions.clear()

    parts.question_graphs[BUILTIN_EMBEDDING] = refused(parts.question_graphs[BUILTIN_EMBEDDING], tmp_path)
    other = await parts.search_question(TENANT, BUILTIN_EMBEDDING, "Do statins lower cholesterol?", [KB], 1, 10,
                                        **OPTIONS)
    assert other["chunks"][0]["doc_id"] == "d1"
    assert counting.questions == ["Do statins lower cholesterol?"]  # the embedding model, as before
    assert BUILTIN_EMBEDDING not in parts.question_graphs  # and so from now on


async def test_no_question_graph_without_search_processes(make_settings, make_parts) -> None:
    parts = make_parts(make_settings(search_processes=0))
    assert not await parts.warm_up_question_search(BUILTIN_EMBEDDING)
    assert parts.question_graphs == {}


ORPHAN_SCRIPT = """
import asyncio, sys, time
from pathlib import Path
from rag.nlp.search_processes import SearchProcesses
pool = SearchProcesses(1, "sqlite", Path(sys.argv[1]))
print(*asyncio.run(pool.warm_up()), flush=True)
time.sleep(60)
"""


@pytest.mark.skipif(sys.platform != "linux", reason="signals and /proc")
def test_children_exit_when_the_server_is_killed(tmp_path: Path) -> None:
    import subprocess
    import time

    server = subprocess.Popen([sys.executable, "-c", ORPHAN_SCRIPT, str(tmp_path)], stdout=subprocess.PIPE,
                              text=True, cwd=Path(__file__).resolve().parents[2])
    try:
        child = int(server.stdout.readline())
        assert Path(f"/proc/{child}").exists()
    finally:
        server.kill()
        server.wait()
    deadline = time.monotonic() + 10
    while _alive(child) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(child)


def _alive(pid: int) -> bool:
    """Running, not a zombie waiting for its (dead) parent's reaper."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False
