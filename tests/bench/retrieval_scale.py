"""Retrieval at scale on the embedded store: SciFact-derived corpora, exact kNN against the HNSW graph.

    python -m tests.bench.retrieval_scale --cache-dir DIR             # crossover + 10k, 100k (a few minutes)
    python -m tests.bench.retrieval_scale --cache-dir DIR --sizes 1000000 --crossover ""   # 1M (~20 min on 2 shared cores)

Corpus: SciFact's 5,583 chunks (``rag.benchmark.chunk_corpus(corpus, 512)``, MiniLM vectors
embedded once and cached in ``--cache-dir``, as ``chat_load`` does) are recombined: each
synthetic chunk takes a run of sentences from 2-3 real chunks, and its vector is the normalised
mixture of theirs (same weights) plus a little noise. Text and vector agree as in a real corpus,
and vectors have real neighbourhoods (random unit vectors have none and are unrealistically
hard for a graph index). Questions: SciFact's 300 test queries with their MiniLM vectors.

1. **Crossover** (``--crossover``, in memory, no SQLite): the vector leg alone (``nearest`` with
   top 1024, the API default) exact against the graph, per matrix size: where the graph wins.
2. **Per size**: chunks inserted through ``make_chunk_row`` + ``insert`` in batches of 500 as
   the ingestion worker does; then in a fresh process (the store opened as a search child opens
   it, one BLAS thread): ``Dealer.retrieval`` p50/p95 (wall and the thread's CPU; API defaults: top 1024,
   threshold 0.2, w 0.3, page size 30; vectors precomputed) with exact kNN, then the graph built
   in the background thread and the same questions again. Recall@10 is the graph leg's top 10
   against exact (a row tied with the exact 10th counts); "top-10 same" is how much of
   ``retrieval``'s first 10 chunks are unchanged. RSS: the search process's resident memory
   after opening the store minus before, and what the graph adds.
"""

from __future__ import annotations

import argparse
import json
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from threadpoolctl import threadpool_limits

from rag.utils.doc_store_conn import index_name, make_chunk_row
from tests.bench import SCIFACT

DIM = 384
TOP = 1024  # the API's default ``top``: how many rows the vector leg asks for
NOISE = 0.25  # norm of the noise added to a mixture of real vectors (nearest-neighbour cosines match SciFact's)
SENTENCES = 6  # sentences per synthetic chunk (~120 words)
TENANT, KB = "bench", "bench"


# -- the corpus ------------------------------------------------------------------------------------


def scifact(data: Path, cache_dir: Path) -> tuple[list[list[str]], np.ndarray, list[str], np.ndarray]:
    """SciFact's chunks as sentence lists, their vectors, the test questions and theirs (cached)."""
    from rag.benchmark import chunk_corpus, embed, load_collection
    from rag.llm.embedding_model import BuiltinEmbedding

    collection = load_collection(data, "test")
    chunks = chunk_corpus(collection.corpus, 512)
    model = BuiltinEmbedding()
    vectors, _ = embed(model, [piece.content for piece in chunks], cache_dir)
    questions = list(collection.queries.values())
    question_vectors, _ = embed(model, questions, cache_dir)
    sentences = [[s for s in re.split(r"(?<=[.!?])\s+", piece.content) if s] for piece in chunks]
    return sentences, unit(vectors), questions, unit(question_vectors)


def unit(vectors: np.ndarray) -> np.ndarray:
    vectors = np.asarray(vectors, dtype=np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def mixtures(rng: np.random.Generator, base: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Which real chunks each synthetic one mixes (n×3) with what weights (a third is 0 in 40%), and the vectors."""
    picks = rng.integers(0, len(base), size=(n, 3))
    weights = rng.dirichlet([1.0, 1.0, 1.0], size=n).astype(np.float32)
    weights[rng.random(n) < 0.4, 2] = 0
    weights /= weights.sum(axis=1, keepdims=True)
    vectors = unit(np.einsum("nk,nkd->nd", weights, base[picks]))
    vectors += rng.standard_normal(vectors.shape, dtype=np.float32) * np.float32(NOISE / np.sqrt(DIM))
    return picks, weights, unit(vectors)


def synthetic_batches(seed: int, sentences: list[list[str]], base: np.ndarray, n: int,
                      batch: int = 500) -> Iterator[tuple[list[str], np.ndarray]]:
    """(texts, vectors) of ``n`` synthetic chunks in batches: each text takes from every real chunk
    it mixes a run of sentences in proportion to that chunk's weight in the vector."""
    rng = np.random.default_rng(seed)
    for start in range(0, n, batch):
        count = min(batch, n - start)
        picks, weights, vectors = mixtures(rng, base, count)
        texts = []
        for row_picks, row_weights in zip(picks.tolist(), weights.tolist(), strict=True):
            parts = []
            for pick, weight in zip(row_picks, row_weights, strict=True):
                if weight <= 0:
                    continue
                source = sentences[pick]
                take = max(1, round(weight * SENTENCES))
                first = int(rng.integers(0, max(1, len(source) - take + 1)))
                parts.extend(source[first : first + take])
            texts.append(" ".join(parts))
        yield texts, vectors


def build_index(data_dir: Path, size: int, sentences: list[list[str]], base: np.ndarray) -> float:
    """Seconds to insert ``size`` synthetic chunks (8 per document) as the ingestion worker does."""
    from rag.utils.sqlite_conn import SqliteConnection

    store = SqliteConnection(data_dir)
    started = time.perf_counter()
    store.create_idx(index_name(TENANT), KB, DIM)
    done = 0
    for texts, vectors in synthetic_batches(size, sentences, base, size):
        rows = [make_chunk_row(f"doc{(done + i) // 8}", KB, f"doc{(done + i) // 8}.txt", text, vectors[i])
                for i, text in enumerate(texts)]
        if errors := store.insert(rows, index_name(TENANT), KB):
            raise RuntimeError(f"indexing failed: {errors[:3]}")
        done += len(rows)
    seconds = time.perf_counter() - started
    store.close()
    return seconds


# -- measuring -------------------------------------------------------------------------------------


def rss_mb() -> float:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * 4096 / 2**20


def cpu_seconds() -> float:
    """CPU of the whole process, the graph's background thread included."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def p(values: list[float], q: float) -> float:
    return float(np.percentile(values, q))


def tie_aware_recall(cosines: np.ndarray, exact_cosines: np.ndarray, k: int = 10) -> float:
    """Share of the exact top ``k`` found; a row tied with the exact k-th counts as found."""
    k = min(k, len(exact_cosines))
    return float((cosines[:k] >= exact_cosines[k - 1] - 1e-6).sum()) / k if k else 1.0


def build_graph(matrix) -> tuple[float, float]:
    """Wall and process CPU seconds to build the graph (in its background thread, as in a server)."""
    matrix.ann_min_rows = 0
    wall, cpu = time.perf_counter(), cpu_seconds()
    matrix.nearest(np.zeros(matrix.dim, dtype=np.float32), 1, matrix.live[: matrix.size].copy())
    if not matrix.wait_for_ann(3600) or matrix.ann.graph is None:
        raise RuntimeError("the graph was not built")
    return time.perf_counter() - wall, cpu_seconds() - cpu


def vector_leg(matrix, queries: np.ndarray, exact: bool) -> tuple[list[float], list[np.ndarray]]:
    """Per question: ms of ``nearest`` (top ``TOP`` over every live row) and the cosines it returned."""
    mask = matrix.live[: matrix.size].copy()
    search = matrix.nearest_exact if exact else matrix.nearest
    times, cosines = [], []
    for query in queries:
        started = time.perf_counter()
        _, found = search(query, TOP, mask)
        times.append((time.perf_counter() - started) * 1000)
        cosines.append(found)
    return times, cosines


def crossover(sizes: list[int], sentences: list[list[str]], base: np.ndarray, queries: np.ndarray) -> None:
    """The vector leg alone, exact against the graph, on in-memory matrices of growing size."""
    from rag.nlp.vector_matrix import VectorMatrix

    print(f"vector leg alone (top {TOP}, {len(queries)} questions), in memory:")
    print(f"{'rows':>8} {'exact p50 ms':>13} {'graph p50 ms':>13} {'graph/exact':>12} {'recall@10':>10} "
          f"{'build s':>8} {'build CPU s':>12}")
    for size in sizes:
        _, _, vectors = mixtures(np.random.default_rng(size), base, size)
        matrix = VectorMatrix(DIM, ann_min_rows=None)
        for i, vec in enumerate(vectors):
            matrix.put(i + 1, str(i), vec, 0, 0, True)
        del vectors
        exact_ms, exact_cos = vector_leg(matrix, queries, exact=True)
        wall, cpu = build_graph(matrix)
        graph_ms, graph_cos = vector_leg(matrix, queries, exact=False)
        recall = statistics.mean(tie_aware_recall(g, e) for g, e in zip(graph_cos, exact_cos, strict=True))
        ratio = statistics.median(graph_ms) / statistics.median(exact_ms)
        print(f"{size:>8} {statistics.median(exact_ms):>13.2f} {statistics.median(graph_ms):>13.2f} {ratio:>12.2f} "
              f"{recall:>10.4f} {wall:>8.1f} {cpu:>12.1f}", flush=True)


def serve(data_dir: Path, cache_dir: Path, data: Path) -> dict:
    """Runs in a fresh process: open the store, answer every question exact, build the graph, again."""
    from rag.nlp.search import Dealer, EmbeddedQuestion
    from rag.utils.sqlite_conn import SqliteConnection

    _, _, questions, vectors = scifact(data, cache_dir)
    before = rss_mb()
    opened = time.perf_counter()
    store = SqliteConnection(data_dir)
    dealer = Dealer(store)

    def ask(question: str, vector: np.ndarray) -> tuple[float, float, list[str]]:
        started, started_cpu = time.perf_counter(), time.thread_time()
        result = dealer.retrieval(question, EmbeddedQuestion(question, vector, 0), [TENANT], [KB], 1, 30,
                                  0.2, 0.3, top=TOP)
        wall, cpu = (time.perf_counter() - started) * 1000, (time.thread_time() - started_cpu) * 1000
        return wall, cpu, [c["chunk_id"] for c in result["chunks"][:10]]

    store.get("", index_name(TENANT), [KB])  # opens the index: its matrix is loaded, nothing searched yet
    matrix = store.indexes[index_name(TENANT)].matrices[DIM]
    matrix.ann_min_rows = None  # the baseline: exact kNN, as below the threshold (no graph started)
    ask(questions[0], vectors[0])
    open_seconds = time.perf_counter() - opened
    for question, vector in zip(questions, vectors, strict=True):  # warm FTS5 and the term caches
        ask(question, vector)
    rss_exact = rss_mb() - before
    build_wall, build_cpu = build_graph(matrix)
    runs: dict[str, dict[str, list]] = {mode: {"wall": [], "cpu": [], "top10": []} for mode in ("exact", "graph")}
    for question, vector in zip(questions, vectors, strict=True):  # interleaved: same caches, same load
        for mode, threshold in (("exact", None), ("graph", 0)):
            matrix.ann_min_rows = threshold
            for key, value in zip(("wall", "cpu", "top10"), ask(question, vector), strict=True):
                runs[mode][key].append(value)
    exact_leg, exact_cos = vector_leg(matrix, vectors, exact=True)
    graph_leg, graph_cos = vector_leg(matrix, vectors, exact=False)
    recall = statistics.mean(tie_aware_recall(g, e) for g, e in zip(graph_cos, exact_cos, strict=True))
    same = statistics.mean(len(set(a) & set(b)) / len(a) if a else float(not b)
                           for a, b in zip(runs["graph"]["top10"], runs["exact"]["top10"], strict=True))
    summary = {mode: {"p50": p(run["wall"], 50), "p95": p(run["wall"], 95), "cpu_p50": p(run["cpu"], 50)}
               for mode, run in runs.items()}
    summary["exact"]["leg_p50"], summary["graph"]["leg_p50"] = p(exact_leg, 50), p(graph_leg, 50)
    rss_graph = rss_mb() - before - rss_exact
    save, load, share = saved_graph(matrix, data_dir / "bench.hnsw")
    return {"open": open_seconds, **summary, "build": build_wall, "build_cpu": build_cpu,
            "recall": recall, "same": same, "rss": rss_exact, "rss_graph": rss_graph,
            "graph_mb": matrix.ann.graph.memory_bytes() / 2**20, "save": save, "load": load, "loaded": share}


def saved_graph(matrix, path: Path) -> tuple[float, float, float]:
    """Seconds to save the graph beside the index and to load it as another search process does
    (``AnnMaintainer.build`` with the file present), and the share of rows it matched."""
    from rag.nlp.ann_index import AnnMaintainer, GraphFile

    graph = matrix.ann.graph
    started = time.perf_counter()
    with matrix.lock:
        rowids = graph.entry_rowids(matrix)
    GraphFile(path).save(graph.index, rowids)
    saved = time.perf_counter()
    loader = AnnMaintainer(matrix.dim, matrix.lock, matrix, path)
    loader.build()
    if not loader.loaded:
        raise RuntimeError("the saved graph was not loaded")
    return saved - started, time.perf_counter() - saved, loader.graph.current / matrix.live_count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000,100000", help="chunks per corpus (1000000 takes ~20 min)")
    parser.add_argument("--crossover", default="10000,25000,50000", help="in-memory vector-leg sizes ('' to skip)")
    parser.add_argument("--data", type=Path, default=SCIFACT, help="SciFact in BEIR layout")
    parser.add_argument("--cache-dir", type=Path, default=Path(tempfile.gettempdir()) / "ragline-bench-cache")
    parser.add_argument("--serve", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    threadpool_limits(1, user_api="blas")  # as in a search child (rag.utils.child_process.settle_in_child)
    if args.serve:
        print(json.dumps(serve(args.serve, args.cache_dir, args.data)))
        return
    sentences, base, _, queries = scifact(args.data, args.cache_dir)
    if args.crossover:
        crossover([int(s) for s in args.crossover.split(",")], sentences, base, queries)
    print(f"\nDealer.retrieval, {len(queries)} SciFact questions, top {TOP}; exact kNN (baseline) then the graph:")
    print(f"{'chunks':>8} {'index s':>8} {'open s':>7} | {'exact p50':>9} {'p95':>6} {'CPU p50':>7} {'leg p50':>7} | "
          f"{'graph build s':>13} {'(CPU s)':>7} {'p50':>6} {'p95':>6} {'CPU p50':>7} {'leg p50':>7} "
          f"{'leg ratio':>9} {'recall@10':>9} {'top-10 same':>11} | {'RSS MB':>6} {'+graph':>6} | "
          f"{'save s':>6} {'load s':>6}")
    results = {}
    for size in [int(s) for s in args.sizes.split(",") if s]:
        with tempfile.TemporaryDirectory() as tmp:
            index_seconds = build_index(Path(tmp), size, sentences, base)
            child = subprocess.run(
                [sys.executable, "-m", "tests.bench.retrieval_scale", "--serve", tmp,
                 "--cache-dir", str(args.cache_dir), "--data", str(args.data)],
                capture_output=True, text=True, check=True)
            r = results[size] = json.loads(child.stdout.strip().splitlines()[-1])
        e, g = r["exact"], r["graph"]
        print(f"{size:>8} {index_seconds:>8.1f} {r['open']:>7.1f} | {e['p50']:>9.1f} {e['p95']:>6.1f} "
              f"{e['cpu_p50']:>7.1f} {e['leg_p50']:>7.1f} | {r['build']:>13.1f} {r['build_cpu']:>7.1f} "
              f"{g['p50']:>6.1f} {g['p95']:>6.1f} {g['cpu_p50']:>7.1f} {g['leg_p50']:>7.1f} "
              f"{g['leg_p50'] / e['leg_p50']:>9.2f} {r['recall']:>9.4f} {r['same']:>11.3f} | "
              f"{r['rss']:>6.0f} {r['rss_graph']:>6.0f} | {r['save']:>6.1f} {r['load']:>6.1f}", flush=True)
    if results:
        largest = results[max(results)]
        print(f"graph_over_exact_vector_leg_ratio={largest['graph']['leg_p50'] / largest['exact']['leg_p50']:.2f}")
        print(f"graph_recall_at_10_min={min(r['recall'] for r in results.values()):.4f}")


if __name__ == "__main__":
    main()
