"""The score maths every backend shares: normalisation of each leg and the weighted sum."""

from __future__ import annotations

import numpy as np
import pytest

from rag.utils.doc_store_conn import (
    VECTOR_FLOOR_RANK,
    FusionExpr,
    fuse_rows,
    fuse_scores,
    normalise_term_scores,
    normalise_vector_scores,
)


def test_term_scores_are_divided_by_the_best():
    assert normalise_term_scores(np.array([4.0, 2.0, 0.0])).tolist() == [1.0, 0.5, 0.0]
    assert normalise_term_scores(np.array([0.0, 0.0])).tolist() == [0.0, 0.0]
    assert normalise_term_scores(np.array([])).size == 0


def test_vector_scores_stretch_between_best_and_floor_rank():
    cosines = np.linspace(0.9, 0.1, 2 * VECTOR_FLOOR_RANK)
    scaled = normalise_vector_scores(cosines)
    assert scaled[0] == 1.0 and scaled[VECTOR_FLOOR_RANK - 1] == 0.0 and scaled[-1] == 0.0
    assert np.all(np.diff(scaled) <= 0)
    assert normalise_vector_scores(np.array([0.5, 0.3])).tolist() == [1.0, 0.0]  # fewer than the floor rank
    assert normalise_vector_scores(np.array([0.4])).tolist() == [1.0]
    assert normalise_vector_scores(np.array([-0.2])).tolist() == [0.0]  # no positive evidence at all


@pytest.mark.parametrize("weight", [0.0, 0.3, 1.0, 1.7, -1.0])
def test_weighted_sum_clamps_the_weight(weight):
    term, vector, fused = fuse_scores(np.array([3.0, 1.0]), np.array([0.2, 0.6]), weight)
    w = min(max(weight, 0.0), 1.0)
    assert fused.tolist() == pytest.approx((w * vector + (1 - w) * term).tolist())
    assert term.tolist() == pytest.approx([1.0, 1 / 3]) and vector.tolist() == [0.0, 1.0]


def test_fuse_rows_sorts_and_applies_the_floor():
    rows = [{"_term_score": 1.0, "_vector_score": 0.9}, {"_term_score": 4.0, "_vector_score": 0.1}]
    fused = fuse_rows(rows, FusionExpr(0.3, 10, min_score=0.5))
    assert len(fused) == 1 and fused[0]["_term_score"] == 4.0 and fused[0]["_score"] == pytest.approx(0.7)
