"""The three numbers of a retrieved chunk, defined once for every backend.

- ``vector_similarity``: the raw cosine of the question's and the chunk's embeddings, as RAGFlow
  reports it (no per-question stretching), so the same chunk scores the same for any question.
- ``term_similarity``: the chunk's BM25 divided by the most BM25 the question's terms could earn
  (``bm25_bound``). That is the IDF-weighted mean, over the question's keywords, of BM25's
  saturated term frequency: 0 for a keyword the chunk lacks, about 0.45 for one it holds once at
  average length, towards 1 for one it repeats. Keywords no chunk holds (typos, nonsense) still
  count in the bound, so a question made mostly of them cannot score high on one stray word.
- ``similarity = w·vector_similarity + (1−w)·term_similarity`` with ``w`` the caller's
  ``vector_similarity_weight``: RAGFlow's formula, so ``similarity_threshold`` 0.2 drops a
  nonsense question's chunks the way RAGFlow users expect.

Neither leg is normalised per question. The ceiling is BM25's own, not a tuned constant, and it
keeps SciFact's ranking (train split, nDCG@10 at ``w`` 0.3 / 0.5 / 0.7): 0.738 / 0.744 / 0.730,
against 0.737 / 0.736 / 0.715 for the earlier per-question normalisation; a ceiling 1.36× higher
gave 0.742 / 0.740 / 0.721 and 0.68× gave 0.733 / 0.744 / 0.739, each better at one weight only.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import numpy as np

BM25_K1 = 1.2  # SQLite FTS5's built-in k1 and the one conf/mapping.json gives Elasticsearch

# Keys of the two similarities a ranked row carries next to ``rag.utils.doc_store_conn.SCORE``.
TERM_SIM = "term_similarity"
VECTOR_SIM = "vector_similarity"


def fts5_idf(rows: int, df: int) -> float:
    """IDF exactly as FTS5's ``bm25()`` computes it (floored at 1e-6 for very common terms)."""
    idf = math.log((rows - df + 0.5) / (df + 0.5)) if rows > 0 else 0.0
    return idf if idf > 0 else 1e-6


def lucene_idf(rows: int, df: int) -> float:
    """IDF as Lucene's BM25 (Elasticsearch) computes it."""
    return math.log(1 + (rows - df + 0.5) / (df + 0.5)) if rows > 0 else 0.0


def bm25_bound(idfs: Iterable[float], tf_ceiling: float) -> float:
    """The BM25 a chunk could not reach for these terms: ``Σ idf · tf_ceiling``.

    ``tf_ceiling`` is the limit of the engine's term-frequency factor: ``k1 + 1`` for FTS5,
    1 for Lucene (which dropped the ``k1 + 1`` numerator). Field weights only scale the term
    frequency inside the saturation, so they do not move the ceiling.
    """
    return float(sum(idfs)) * tf_ceiling


def term_similarities(bm25: np.ndarray, bound: float) -> np.ndarray:
    """Raw BM25 scores of one index's candidates → ``term_similarity`` in [0, 1]."""
    scores = np.maximum(np.asarray(bm25, dtype=np.float64), 0.0)
    if bound <= 0:
        return np.zeros_like(scores)
    return np.minimum(scores / bound, 1.0)


def fuse(term_sim: np.ndarray, cosine: np.ndarray, vector_weight: float) -> np.ndarray:
    """``similarity`` from the two legs; ``vector_weight`` is clamped to [0, 1]."""
    weight = min(max(float(vector_weight), 0.0), 1.0)
    return weight * np.asarray(cosine, dtype=np.float64) + (1.0 - weight) * np.asarray(term_sim, dtype=np.float64)


def fuse_rows(rows: list[dict[str, Any]], vector_weight: float, min_score: float, score_key: str,
              scores: np.ndarray | None = None) -> list[dict[str, Any]]:
    """Sets ``similarity`` (under ``score_key``) on rows that carry both similarities, or to
    ``scores`` when the caller fused them otherwise (feedback); returns those at or above
    ``min_score``, best first (ties keep the incoming order)."""
    fused = scores if scores is not None else fuse(
        np.array([row[TERM_SIM] for row in rows]), np.array([row[VECTOR_SIM] for row in rows]), vector_weight)
    for row, score in zip(rows, fused.tolist(), strict=True):
        row[score_key] = score
    kept = [row for row in rows if row[score_key] >= min_score]
    kept.sort(key=lambda row: row[score_key], reverse=True)
    return kept
