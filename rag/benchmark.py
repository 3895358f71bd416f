"""Retrieval quality on a BEIR-layout collection: nDCG@10, Recall@10/100, MRR@10, latency.

    python -m rag.benchmark --data ../shared/data/scifact --split test

Each corpus document becomes a ``<_id>.txt`` file (title line, blank line, text) and goes
through the server's own path: the naive chunker, the builtin embedding model, ``make_chunk_row``
and the SQLite doc store; queries go through ``Dealer.retrieval``. A document's score is its best
chunk's. Metrics are ``ranx``'s definitions, computed here. Tune on ``--split train``; report on ``test``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import statistics
import tempfile
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np

from rag.app.naive import BUILTIN_EMBEDDING_CHUNK_TOKENS, parse_and_chunk
from rag.llm.embedding_model import BuiltinEmbedding
from rag.nlp.feedback import FEEDBACK_STRENGTH
from rag.nlp.search import Dealer
from rag.utils.doc_store import create_doc_store
from rag.utils.doc_store_conn import DocStoreConnection, index_name, make_chunk_row

TENANT = "benchmark"
KB = "benchmark"
METRICS = ["ndcg@10", "recall@10", "recall@100", "mrr@10"]
DEFAULT_WEIGHT = 0.3  # what RAGFlow clients send; the figure the targets are about
API_DEFAULT_THRESHOLD = 0.2  # the similarity_threshold /api/v1/retrieval applies when a client sends none
AT_API_DEFAULT = "ndcg@10 t0.2"  # nDCG@10 of the same ranking cut at API_DEFAULT_THRESHOLD
PAGE_SIZE = 300  # chunks asked per question: enough for RUN_DEPTH documents of a few chunks each
RUN_DEPTH = 100  # documents kept per question (recall@100 is the deepest metric)


@dataclass
class Collection:
    corpus: dict[str, tuple[str, str]]  # doc id → (title, text)
    queries: dict[str, str]
    qrels: dict[str, dict[str, int]]


def load_collection(data: Path, split: str) -> Collection:
    """BEIR layout; ``queries_<split>.jsonl`` when present, else ``queries.jsonl``."""
    corpus = {}
    with open(data / "corpus.jsonl", encoding="utf-8") as fh:
        for line in fh:
            doc = json.loads(line)
            corpus[str(doc["_id"])] = (doc.get("title") or "", doc.get("text") or "")
    qrels: dict[str, dict[str, int]] = {}
    with open(data / "qrels" / f"{split}.tsv", encoding="utf-8") as fh:
        for line in fh:
            parts = line.rstrip("\n").split("\t")
            if len(parts) >= 3 and parts[2].lstrip("-").isdigit() and int(parts[2]) > 0:
                qrels.setdefault(parts[0], {})[parts[1]] = int(parts[2])
    query_file = data / f"queries_{split}.jsonl"
    if not query_file.exists():
        query_file = data / "queries.jsonl"
    queries = {}
    with open(query_file, encoding="utf-8") as fh:
        for line in fh:
            query = json.loads(line)
            if str(query["_id"]) in qrels:
                queries[str(query["_id"])] = query["text"]
    return Collection(corpus, queries, qrels)


class CorpusChunk(NamedTuple):
    doc_id: str
    content: str
    title: str | None  # the document's title on a chunk whose text does not hold it (ChunkText.title)


def document_bytes(title: str, text: str) -> bytes:
    return f"{title}\n\n{text}".encode() if title else text.encode()


def chunk_corpus(corpus: dict[str, tuple[str, str]], chunk_tokens: int) -> list[CorpusChunk]:
    """The corpus through the server's naive chunker, as the ingestion worker chunks an upload."""
    config = {"chunk_token_num": chunk_tokens}
    chunks = []
    for doc_id, (title, text) in corpus.items():
        for piece in parse_and_chunk(f"{doc_id}.txt", document_bytes(title, text), config):
            chunks.append(CorpusChunk(doc_id, piece.content, piece.title))
    return chunks


def embed(model: BuiltinEmbedding, texts: list[str], cache_dir: Path | None) -> tuple[np.ndarray, float]:
    """Vectors of ``texts`` and the seconds it took (0 when read from the cache)."""
    key = hashlib.sha256("\x00".join(texts).encode()).hexdigest()[:24]
    cached = cache_dir / f"{key}.npy" if cache_dir else None
    if cached and cached.exists():
        return np.load(cached), 0.0
    started = time.perf_counter()
    vectors, _ = model.encode(texts)
    seconds = time.perf_counter() - started
    if cached:
        cache_dir.mkdir(parents=True, exist_ok=True)
        np.save(cached, vectors)
    return vectors, seconds


def index_chunks(store: DocStoreConnection, chunks: list[CorpusChunk], vectors: np.ndarray) -> float:
    """Seconds to build rows and insert them in batches, as the ingestion worker does."""
    started = time.perf_counter()
    store.create_idx(index_name(TENANT), KB, vectors.shape[1])
    for start in range(0, len(chunks), 500):
        rows = [
            make_chunk_row(piece.doc_id, KB, f"{piece.doc_id}.txt", piece.content, vectors[start + i], title=piece.title)
            for i, piece in enumerate(chunks[start : start + 500])
        ]
        errors = store.insert(rows, index_name(TENANT), KB)
        if errors:
            raise RuntimeError(f"indexing failed: {errors[:3]}")
    return time.perf_counter() - started


class PrecomputedQueries:
    """Stands in for the embedding model so latency excludes the question's embedding."""

    def __init__(self, texts: list[str], vectors: np.ndarray) -> None:
        self.by_text = dict(zip(texts, vectors, strict=True))

    def encode_queries(self, text: str) -> tuple[np.ndarray, int]:
        return self.by_text[text], 0


def document_scores(chunks: Iterable[tuple[str, float]]) -> dict[str, float]:
    """The best ``RUN_DEPTH`` documents of a ranked page of (doc id, similarity) chunks, best
    first: a document scores what its best (first) chunk does."""
    scores: dict[str, float] = {}
    for doc_id, similarity in chunks:
        scores.setdefault(doc_id, similarity)
    return dict(list(scores.items())[:RUN_DEPTH])


def run_queries(dealer: Dealer, queries: dict[str, str], encoder, weight: float,
                top: int = 1024) -> tuple[dict[str, dict[str, float]], list[float]]:
    """Per query the documents' best-chunk scores (``document_scores``) and each call's latency in ms."""
    run: dict[str, dict[str, float]] = {}
    latencies = []
    for qid, text in queries.items():
        started = time.perf_counter()
        result = dealer.retrieval(text, encoder, [TENANT], [KB], 1, PAGE_SIZE, 0.0, weight, top=top)
        latencies.append((time.perf_counter() - started) * 1000)
        run[qid] = document_scores((chunk["doc_id"], chunk["similarity"]) for chunk in result["chunks"])
    return run, latencies


def above(run: dict[str, dict[str, float]], threshold: float) -> dict[str, dict[str, float]]:
    """``run`` as a search with ``similarity_threshold`` would have returned it: a document's score
    is its best chunk's, so dropping the documents below the threshold drops exactly what the
    threshold drops, in the same order."""
    return {qid: {doc: score for doc, score in scores.items() if score >= threshold} for qid, scores in run.items()}


def ranked_ids(scores: dict[str, float], k: int) -> list[str]:
    """The ``k`` best ids of one query's run, ties kept in the run's own order."""
    return [doc for doc, _ in sorted(scores.items(), key=lambda kv: -kv[1])[:k]]


def query_metrics(relevant: dict[str, int], scores: dict[str, float]) -> dict[str, float]:
    """nDCG@10 (linear gain), Recall@10/@100 and MRR@10 of one query.

    The same definitions as ``ranx``'s ``ndcg@10``/``recall@k``/``mrr@10``, written out so the
    benchmark needs nothing beyond numpy.
    """
    top = ranked_ids(scores, 100)
    gains = [relevant.get(doc, 0) for doc in top[:10]]
    dcg = sum(g / np.log2(rank + 2) for rank, g in enumerate(gains))
    ideal = sorted(relevant.values(), reverse=True)[:10]
    idcg = sum(g / np.log2(rank + 2) for rank, g in enumerate(ideal))
    first = next((rank for rank, doc in enumerate(top[:10]) if relevant.get(doc, 0) > 0), None)
    found = [doc for doc in top if relevant.get(doc, 0) > 0]
    return {
        "ndcg@10": dcg / idcg if idcg > 0 else 0.0,
        "recall@10": len([d for d in found if d in top[:10]]) / len(relevant),
        "recall@100": len(found) / len(relevant),
        "mrr@10": 0.0 if first is None else 1.0 / (first + 1),
    }


def evaluate(qrels: dict[str, dict[str, int]], run: dict[str, dict[str, float]]) -> dict[str, float]:
    """Each metric averaged over the queries that have relevant documents (missing runs count 0)."""
    per_query = [query_metrics(relevant, run.get(qid, {})) for qid, relevant in qrels.items() if relevant]
    return {metric: float(np.mean([m[metric] for m in per_query])) for metric in METRICS}


@dataclass
class IndexedCollection:
    """A collection chunked, embedded and indexed in a temporary SQLite store, ready to ask."""

    collection: Collection
    chunks: int
    store: DocStoreConnection
    encoder: PrecomputedQueries
    embed_seconds: float
    index_seconds: float

    def scores(self, weight: float, strength: float = FEEDBACK_STRENGTH) -> tuple[dict[str, float], list[float]]:
        """The metrics at ``weight`` with cross-leg feedback ``strength``, and each query's latency."""
        run, latencies = run_queries(Dealer(self.store, feedback=strength), self.collection.queries,
                                     self.encoder, weight)
        scores = evaluate(self.collection.qrels, run)
        scores[AT_API_DEFAULT] = evaluate(self.collection.qrels, above(run, API_DEFAULT_THRESHOLD))["ndcg@10"]
        return scores, latencies


@contextmanager
def indexed(collection: Collection, chunk_tokens: int = BUILTIN_EMBEDDING_CHUNK_TOKENS,
            cache_dir: Path | None = None, model: BuiltinEmbedding | None = None) -> Iterator[IndexedCollection]:
    """``collection`` through the server's chunker, builtin model and SQLite store, for one ``with``
    (``model``: an already loaded builtin model, else one is loaded)."""
    chunks = chunk_corpus(collection.corpus, chunk_tokens)
    model = model or BuiltinEmbedding()
    model.warm_up()
    vectors, embed_seconds = embed(model, [piece.content for piece in chunks], cache_dir)
    question_texts = list(collection.queries.values())
    query_vectors, _ = embed(model, question_texts, cache_dir)
    with tempfile.TemporaryDirectory() as tmp:
        store = create_doc_store("sqlite", Path(tmp), [])
        try:
            index_seconds = index_chunks(store, chunks, vectors)
            yield IndexedCollection(collection, len(chunks), store, PrecomputedQueries(question_texts, query_vectors),
                                    embed_seconds, index_seconds)
        finally:
            store.close()


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--split", default="test")
    parser.add_argument("--chunk-tokens", type=int, default=BUILTIN_EMBEDDING_CHUNK_TOKENS,
                        help="naive chunker chunk_token_num (default: the server default for the builtin model)")
    parser.add_argument("--weights", default=f"0,1,{DEFAULT_WEIGHT}",
                        help="vector_similarity_weight values to report (0 = term only, 1 = vector only)")
    parser.add_argument("--cache-dir", type=Path, default=None, help="reuse corpus embeddings across runs")
    parser.add_argument("--feedback", default=f"0,{FEEDBACK_STRENGTH:g}",
                        help="cross-leg feedback strengths to compare at each 0 < weight < 1 (0 = the plain fusion)")
    args = parser.parse_args(argv)

    collection = load_collection(args.data, args.split)
    with indexed(collection, args.chunk_tokens, args.cache_dir) as index:
        print(f"{args.data.name}/{args.split}: {len(collection.corpus)} docs → {index.chunks} chunks "
              f"(chunk_token_num {args.chunk_tokens}), {len(collection.queries)} queries", flush=True)
        print(f"embedding {index.embed_seconds:.1f}s (0 = cached), indexing {index.index_seconds:.1f}s", flush=True)
        columns = [*METRICS, AT_API_DEFAULT]
        print(f"{'weight':>8} {'feedback':>8} " + " ".join(f"{m:>12}" for m in columns)
              + f" {'p50 ms':>8} {'p95 ms':>8}")
        strengths = [float(f) for f in args.feedback.split(",")]
        for weight in [float(w) for w in args.weights.split(",")]:
            baseline = None
            for strength in strengths if 0 < weight < 1 else [0.0]:
                scores, latencies = index.scores(weight, strength)
                baseline = baseline or scores
                p95 = statistics.quantiles(latencies, n=20)[-1]
                label = {0.0: "term", 1.0: "vector"}.get(weight, f"{weight:g}")
                ratio = scores["ndcg@10"] / baseline["ndcg@10"] if baseline["ndcg@10"] else float("nan")
                print(f"{label:>8} {strength:>8g} " + " ".join(f"{scores[m]:>12.4f}" for m in columns)
                      + f" {statistics.median(latencies):>8.1f} {p95:>8.1f}"
                      + (f"  nDCG@10 ×{ratio:.4f} vs feedback {strengths[0]:g}" if scores is not baseline else ""),
                      flush=True)


if __name__ == "__main__":
    main()
