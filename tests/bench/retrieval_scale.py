"""Retrieval at scale on the embedded store: latency, memory and indexing cost per corpus size.

    python -m tests.bench.retrieval_scale                      # 10k, 100k, 300k chunks
    python -m tests.bench.retrieval_scale --sizes 10000 --queries 100

Chunks are synthetic (generated here): Zipf-distributed words whose most frequent ones are real
English stopwords, ~120 words per chunk, random unit vectors of 384 dims. For each size:

- indexing: seconds to build rows and insert them through ``make_chunk_row`` + ``insert`` in
  batches of 500, as the ingestion worker does; reported against the time MiniLM needs to
  embed the same number of chunks (rate measured in this run on a sample of real-length chunks);
- latency: ``Dealer.retrieval`` p50/p95 with the API defaults (top 1024, threshold 0.2, w 0.3,
  page size 30), question embedding excluded (vectors are precomputed); "CPU p50" is the
  calling thread's CPU time, which a machine shared with other work inflates far less;
- memory: a fresh process opens the store and runs the queries; RSS after minus RSS before
  opening it, i.e. what the index costs a running server.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from rag.nlp.query import STOPWORDS
from rag.utils.doc_store_conn import index_name, make_chunk_row

DIM = 384
WORDS_PER_CHUNK = 120
VOCAB = 50_000
TENANT, KB = "bench", "bench"


def vocabulary(rng: np.random.Generator) -> np.ndarray:
    """Stopwords first (the Zipf head, as in real text), then random pseudo-words."""
    head = sorted(STOPWORDS)
    letters = np.array(list("abcdefghijklmnopqrstuvwxyz"))
    tail = ["".join(rng.choice(letters, size=rng.integers(4, 11))) for _ in range(VOCAB - len(head))]
    return np.array(head + tail)


def zipf_words(rng: np.random.Generator, vocab: np.ndarray, count: int) -> np.ndarray:
    ranks = np.arange(1, vocab.size + 1)
    weights = 1.0 / ranks**1.07
    return vocab[rng.choice(vocab.size, size=count, p=weights / weights.sum())]


def synthetic_chunks(rng: np.random.Generator, vocab: np.ndarray, n: int) -> list[str]:
    words = zipf_words(rng, vocab, n * WORDS_PER_CHUNK).reshape(n, WORDS_PER_CHUNK)
    return [" ".join(row) for row in words]


def unit_vectors(rng: np.random.Generator, n: int) -> np.ndarray:
    vectors = rng.standard_normal((n, DIM), dtype=np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def embedding_rate(texts: list[str]) -> float:
    """Chunks per second MiniLM embeds here (after warm-up), on a sample of these chunks."""
    from rag.llm.embedding_model import BuiltinEmbedding

    model = BuiltinEmbedding()
    model.warm_up()
    model.encode(texts[:32])
    started = time.perf_counter()
    model.encode(texts)
    return len(texts) / (time.perf_counter() - started)


def build_index(data_dir: Path, texts: list[str], vectors: np.ndarray) -> float:
    from rag.utils.sqlite_conn import SqliteConnection

    store = SqliteConnection(data_dir)
    started = time.perf_counter()
    store.create_idx(index_name(TENANT), KB, DIM)
    for start in range(0, len(texts), 500):
        rows = [make_chunk_row(f"doc{(start + i) // 8}", KB, f"doc{(start + i) // 8}.txt", text, vectors[start + i])
                for i, text in enumerate(texts[start : start + 500])]
        store.insert(rows, index_name(TENANT), KB)
    seconds = time.perf_counter() - started
    store.close()
    return seconds


def rss_mb() -> float:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * 4096 / 2**20


def serve(data_dir: Path, queries: int, seed: int) -> dict:
    """Runs in a fresh process: open the store, answer ``queries`` questions, report."""
    from rag.nlp.search import Dealer
    from rag.utils.sqlite_conn import SqliteConnection

    rng = np.random.default_rng(seed)
    vocab = vocabulary(np.random.default_rng(0))
    questions = [" ".join(zipf_words(rng, vocab, 12)) for _ in range(queries)]
    vectors = unit_vectors(rng, queries)
    before = rss_mb()
    opened = time.perf_counter()
    dealer = Dealer(SqliteConnection(data_dir))

    class Encoder:
        vector = vectors[0]

        def encode_queries(self, text):
            return self.vector, 0

    encoder = Encoder()
    dealer.retrieval(questions[0], encoder, [TENANT], [KB], 1, 30)
    open_seconds = time.perf_counter() - opened
    latencies, cpu = [], []
    for question, vector in zip(questions, vectors, strict=True):
        encoder.vector = vector
        started, started_cpu = time.perf_counter(), time.thread_time()
        dealer.retrieval(question, encoder, [TENANT], [KB], 1, 30, 0.2, 0.3, top=1024)
        latencies.append((time.perf_counter() - started) * 1000)
        cpu.append((time.thread_time() - started_cpu) * 1000)
    return {"p50": statistics.median(latencies), "p95": statistics.quantiles(latencies, n=20)[-1],
            "cpu_p50": statistics.median(cpu), "rss": rss_mb() - before, "open": open_seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000,100000,300000")
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--serve", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        print(json.dumps(serve(args.serve, args.queries, seed=1)))
        return
    rng = np.random.default_rng(0)
    vocab = vocabulary(rng)
    rate = embedding_rate(synthetic_chunks(rng, vocab, 256))
    print(f"MiniLM embeds {rate:.1f} chunks/s here ({WORDS_PER_CHUNK}-word chunks, warm)")
    print(f"{'chunks':>8} {'index s':>8} {'embed s (est)':>14} {'index/embed':>12} {'open s':>7} "
          f"{'p50 ms':>7} {'p95 ms':>7} {'CPU p50':>8} {'RSS MB':>7}")
    for size in [int(s) for s in args.sizes.split(",")]:
        texts = synthetic_chunks(rng, vocab, size)
        vectors = unit_vectors(rng, size)
        with tempfile.TemporaryDirectory() as tmp:
            index_seconds = build_index(Path(tmp), texts, vectors)
            del texts, vectors
            child = subprocess.run(
                [sys.executable, "-m", "tests.bench.retrieval_scale", "--serve", tmp, "--queries", str(args.queries)],
                capture_output=True, text=True, check=True,
            )
            served = json.loads(child.stdout.strip().splitlines()[-1])
        embed_seconds = size / rate
        print(f"{size:>8} {index_seconds:>8.1f} {embed_seconds:>14.0f} {index_seconds / embed_seconds:>11.1%} "
              f"{served['open']:>7.1f} {served['p50']:>7.1f} {served['p95']:>7.1f} {served['cpu_p50']:>8.1f} "
              f"{served['rss']:>7.0f}", flush=True)


if __name__ == "__main__":
    main()
