"""Where one question's retrieval time goes, step by step, on the indexed SciFact corpus (issue 22).

Run: ``.venv/bin/python -m tests.bench.retrieval_profile`` (``--questions 100`` by default; the
corpus vectors are cached in ``--cache-dir`` as for ``chat_load``). All numbers are per question.

1. **In the search process** (as a search child runs it: one BLAS and one torch thread), CPU ms:
   question embedding, then ``Dealer.retrieval`` with the question's vector, split into its
   steps by timing the functions that do each (query analysis, filter mask, vector leg, text
   leg, cosines of the text hits, ranked rows, chunk fetch, ``doc_aggs``; the rest is fusion and
   glue). Measured twice in the same run: with FTS5's own OR query for the text leg (the
   baseline) and with the per-term postings the index keeps between writes.
2. **Process hop**: the same search through one search child (``SearchProcesses``) against in
   this process, wall p50: what sending the question and the result between processes costs.
3. **Over HTTP**: ``POST /api/v1/retrieval`` on a live server, sequential, wall p50, first with
   every question new to the server, then asked again (its remembered question embeddings);
   what is left after embedding and search is HTTP, auth, dataset lookup, hops and JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import aiohttp

from tests.bench.chat_load import SCIFACT, build_index, start_server, stop
from tests.conftest import free_port, wait_for_url

STEPS = {  # step name -> (module, owner, attribute) of the function that does it
    "query analysis": ("rag.nlp.query", "FulltextQueryer", "question"),
    "filter mask": ("rag.utils.sqlite_index", "SqliteIndex", "slot_mask"),
    "vector leg": ("rag.nlp.vector_matrix", "VectorMatrix", "scored_nearest"),
    "text leg": ("rag.utils.sqlite_index", "SqliteIndex", "bm25"),
    "cosines of text hits": ("rag.nlp.vector_matrix", "VectorMatrix", "cosines"),
    "ranked rows": ("rag.utils.sqlite_conn", "_Ranked", "memory_rows"),
    "chunk fetch": ("rag.nlp.search", "Dealer", "_chunks"),
    "doc_aggs": ("rag.nlp.search", None, "doc_aggs"),
}


class StepClock:
    """CPU seconds spent in each step's function, summed over calls, while ``timing()`` is open."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)

    def _timed(self, name: str, fn: Callable) -> Callable:
        def timed(*args, **kwargs):
            started = time.process_time()
            try:
                return fn(*args, **kwargs)
            finally:
                self.seconds[name] += time.process_time() - started
        return timed

    @contextmanager
    def timing(self) -> Iterator[None]:
        import importlib

        patched = []
        for name, (module_name, owner_name, attribute) in STEPS.items():
            module = importlib.import_module(module_name)
            owner = getattr(module, owner_name) if owner_name else module
            original = getattr(owner, attribute)
            setattr(owner, attribute, self._timed(name, original))
            patched.append((owner, attribute, original))
        try:
            yield
        finally:
            for owner, attribute, original in reversed(patched):
                setattr(owner, attribute, original)


def cpu_ms_per_call(fn: Callable[[], object], calls: int) -> float:
    started = time.process_time()
    for _ in range(calls):
        fn()
    return (time.process_time() - started) / calls * 1000


def in_process(data_dir: Path, tenant_id: str, kb_id: str, questions: list[str]) -> dict[str, dict[str, float]]:
    """Step CPU ms per question, for the baseline (FTS5 OR query) and the postings text leg."""
    import torch
    from threadpoolctl import threadpool_limits

    from rag.llm.embedding_model import BuiltinEmbedding
    from rag.nlp.search import Dealer, EmbeddedQuestion
    from rag.utils.sqlite_conn import SqliteConnection

    torch.set_num_threads(1)
    threadpool_limits(1, user_api="blas")
    model = BuiltinEmbedding()
    model.warm_up()
    vectors = [model.encode_queries(q) for q in questions]
    started = time.process_time()
    for question in questions:
        model.encode_queries(question)
    embed_ms = (time.process_time() - started) / len(questions) * 1000
    results = {}
    for label, cached_postings in (("FTS5 OR query (baseline)", 0), ("term postings", None)):
        store = SqliteConnection(data_dir / "index") if cached_postings is None else \
            SqliteConnection(data_dir / "index", cached_postings=cached_postings)
        dealer = Dealer(store)

        def search_all(dealer: Dealer = dealer) -> None:
            for question, (vector, tokens) in zip(questions, vectors, strict=True):
                dealer.retrieval(question, EmbeddedQuestion(question, vector, tokens), tenant_id, [kb_id], 1, 6,
                                 0.2, 0.3)

        search_all()  # warm: the matrices loaded, the postings of these questions' terms kept
        clock = StepClock()
        with clock.timing():
            total = cpu_ms_per_call(search_all, 1) / len(questions)
        steps = {name: clock.seconds[name] * 1000 / len(questions) for name in STEPS}
        steps["fusion and glue"] = max(total - sum(steps.values()), 0.0)
        results[label] = {"question embedding": embed_ms, **steps, "search total": total}
        store.close()
    return results


def hop_ms(data_dir: Path, tenant_id: str, kb_id: str, questions: list[str], settle: float) -> tuple[float, float]:
    """Wall p50 of a search in this process and through one search child, ``settle`` seconds
    after the child started: until its postings read-ahead ends, that thread shares the child's
    GIL with the searches (measured without the wait: 5.0 ms through the child against 3.5 ms)."""
    import numpy as np

    from rag.llm.embedding_model import BuiltinEmbedding
    from rag.nlp.search import Dealer, EmbeddedQuestion
    from rag.nlp.search_processes import SearchProcesses
    from rag.utils.doc_store import create_doc_store

    model = BuiltinEmbedding()
    vectors = [model.encode_queries(q) for q in questions]
    dealer = Dealer(create_doc_store("sqlite", data_dir, None))
    local, remote = [], []
    children = SearchProcesses(1, "sqlite", data_dir)

    async def through_child() -> None:
        await children.warm_up()
        await asyncio.sleep(settle)
        for question, (vector, tokens) in zip(questions, vectors, strict=True):
            await children.retrieval(question, np.asarray(vector), tokens, tenant_id, [kb_id], 1, 6, 0.2, 0.3)
        for question, (vector, tokens) in zip(questions, vectors, strict=True):
            started = time.perf_counter()
            await children.retrieval(question, np.asarray(vector), tokens, tenant_id, [kb_id], 1, 6, 0.2, 0.3)
            remote.append((time.perf_counter() - started) * 1000)

    try:
        asyncio.run(through_child())
    finally:
        children.close()
    for _ in range(2):
        local.clear()
        for question, (vector, tokens) in zip(questions, vectors, strict=True):
            started = time.perf_counter()
            dealer.retrieval(question, EmbeddedQuestion(question, vector, tokens), tenant_id, [kb_id], 1, 6, 0.2, 0.3)
            local.append((time.perf_counter() - started) * 1000)
    return statistics.median(local), statistics.median(remote)


async def http_ms(url: str, key: str, kb_id: str, questions: list[str], settle: float) -> tuple[float, float]:
    """Wall p50 of ``/api/v1/retrieval``: every question new to the server, then all asked again,
    ``settle`` seconds after the first request (search processes read the index's postings
    ahead meanwhile, as a server that has been running has)."""
    runs: list[list[float]] = [[], []]
    async with aiohttp.ClientSession(base_url=url, headers={"Authorization": f"Bearer {key}"}) as client:
        warm = {"question": "warm up the models", "dataset_ids": [kb_id]}
        async with client.post("/api/v1/retrieval", json=warm) as response:
            await response.read()
        await asyncio.sleep(settle)
        for times in runs:
            for question in questions:
                body = {"question": question, "dataset_ids": [kb_id], "page_size": 6}
                started = time.perf_counter()
                async with client.post("/api/v1/retrieval", json=body) as response:
                    reply = await response.json()
                times.append((time.perf_counter() - started) * 1000)
                if reply["code"] != 0:
                    raise RuntimeError(f"retrieval failed: {reply}")
    return statistics.median(runs[0]), statistics.median(runs[1])


def tenant_of(data_dir: Path, kb_id: str) -> str:
    from api.components import build_components
    from api.db.models import Knowledgebase
    from api.settings import load_settings

    parts = build_components(load_settings(environ={}, data_dir=data_dir))
    try:
        return parts.db.call(lambda: Knowledgebase.get_by_id(kb_id).tenant_id)
    finally:
        parts.close()


def print_report(steps: dict[str, dict[str, float]], local: float, remote: float, http_new: float,
                 http_again: float) -> None:
    labels = list(steps)
    print(f"\n{'per question, CPU ms in the search process':44}" + "".join(f"{label:>26}" for label in labels))
    for step in next(iter(steps.values())):
        print(f"{step:44}" + "".join(f"{steps[label][step]:26.2f}" for label in labels))
    base, now = (steps[label]["search total"] for label in labels)
    print(f"search CPU ratio (baseline / term postings): {base / now:.2f}")
    print(f"\nprocess hop: search in this process p50 {local:.2f} ms, through a search child {remote:.2f} ms "
          f"(hop {remote - local:.2f} ms)")
    print(f"HTTP /api/v1/retrieval p50: new questions {http_new:.2f} ms, asked again {http_again:.2f} ms")
    embed = steps[labels[1]]["question embedding"]
    print(f"left for HTTP, auth, dataset lookup, hops, JSON (asked again - child search p50): "
          f"{http_again - remote:.2f} ms; embedding a new question adds about {embed:.2f} ms of CPU")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--questions", type=int, default=100)
    parser.add_argument("--settle", type=float, default=5.0,
                        help="seconds between a search process's (or the server's) start and the measured "
                             "searches (0: right after start)")
    parser.add_argument("--data", type=Path, default=SCIFACT)
    parser.add_argument("--cache-dir", type=Path, default=Path(tempfile.gettempdir()) / "ragline-bench-cache")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        data_dir = Path(tmp)
        key, kb_id, questions = build_index(data_dir, args.data, None, args.cache_dir)
        questions = questions[: args.questions]
        tenant_id = tenant_of(data_dir, kb_id)
        steps = in_process(data_dir, tenant_id, kb_id, questions)
        local, remote = hop_ms(data_dir, tenant_id, kb_id, questions, args.settle)
        port = free_port()
        server = start_server(data_dir, port, free_port(), data_dir / "server.log")
        try:
            wait_for_url(f"http://127.0.0.1:{port}/healthz", 120)
            http_new, http_again = asyncio.run(http_ms(f"http://127.0.0.1:{port}", key, kb_id, questions,
                                                         args.settle))
        finally:
            stop(server)
        print_report(steps, local, remote, http_new, http_again)


if __name__ == "__main__":
    main()
