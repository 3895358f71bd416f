"""The score maths every backend shares (``rag.nlp.similarity``): BM25 over its ceiling, raw cosine."""

from __future__ import annotations

import math

import numpy as np
import pytest

from rag.nlp.similarity import (
    BM25_K1,
    bm25_bound,
    fts5_idf,
    fuse,
    fuse_rows,
    lucene_idf,
    term_similarities,
)


def test_idf_follows_each_engine():
    assert fts5_idf(100, 10) == pytest.approx(math.log(90.5 / 10.5))
    assert fts5_idf(100, 90) == 1e-6  # FTS5 floors the IDF of a term most rows hold
    assert lucene_idf(100, 90) == pytest.approx(math.log(1 + 10.5 / 90.5))
    assert fts5_idf(0, 0) == 1e-6 and lucene_idf(0, 0) == 0.0


def test_one_term_at_average_length_scores_its_tf_factor():
    """A chunk holding the only keyword once, at average length: FTS5's term factor is
    (k1+1)·1/(1+k1), so the similarity is 1/(k1+1) whatever the IDF."""
    idf = fts5_idf(1000, 7)
    bm25 = idf * (BM25_K1 + 1) / (1 + BM25_K1)
    bound = bm25_bound([idf], BM25_K1 + 1)
    assert term_similarities(np.array([bm25]), bound)[0] == pytest.approx(1 / (BM25_K1 + 1))


def test_term_similarity_is_absolute_not_relative_to_the_best_candidate():
    sims = term_similarities(np.array([4.0, 2.0, 0.0, -1.0]), 10.0)
    assert sims.tolist() == [0.4, 0.2, 0.0, 0.0]
    assert term_similarities(np.array([30.0]), 10.0).tolist() == [1.0]
    assert term_similarities(np.array([3.0]), 0.0).tolist() == [0.0]


@pytest.mark.parametrize("weight", [0.0, 0.3, 1.0, 1.7, -1.0])
def test_weighted_sum_clamps_the_weight(weight):
    term, cosine = np.array([0.5, 0.1]), np.array([0.2, 0.6])
    w = min(max(weight, 0.0), 1.0)
    assert fuse(term, cosine, weight).tolist() == pytest.approx((w * cosine + (1 - w) * term).tolist())


def test_fuse_rows_sorts_and_applies_the_floor():
    rows = [{"term_similarity": 0.1, "vector_similarity": 0.9}, {"term_similarity": 0.8, "vector_similarity": 0.1},
            {"term_similarity": 0.0, "vector_similarity": 0.2}]
    fused = fuse_rows(rows, 0.3, 0.2, "_score")
    assert [r["term_similarity"] for r in fused] == [0.8, 0.1]
    assert fused[0]["_score"] == pytest.approx(0.3 * 0.1 + 0.7 * 0.8)
