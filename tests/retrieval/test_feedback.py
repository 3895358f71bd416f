"""Cross-leg feedback (``rag.nlp.feedback``): which chunk is fed back and how the vector part is asked again."""

from __future__ import annotations

import numpy as np
import pytest

from rag.nlp.feedback import FEEDBACK_STRENGTH, feedback_pick, feedback_similarity, moved_question


def unit(*values: float) -> np.ndarray:
    vec = np.asarray(values, dtype=np.float32)
    return vec / np.linalg.norm(vec)


def pick(term: list[float], cosine: list[float], weight: float) -> int | None:
    return feedback_pick(np.array(term), np.array(cosine), weight)


def test_the_swapped_weights_pick_the_feedback_chunk():
    term, cosine = [0.6, 0.1], [0.2, 0.7]  # a chunk of words, a chunk of meaning
    # w = 0.3 weighs the words, so the meaning's favourite is fed back; w = 0.7 the other way round.
    assert pick(term, cosine, 0.3) == 1
    assert pick(term, cosine, 0.7) == 0


def similarity(term, cosine, vectors, question, weight, strength=FEEDBACK_STRENGTH):
    """``feedback_similarity`` over candidate vectors held in an array (zeros: none stored)."""
    vectors = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=1)

    def cosines_with(unit):
        return np.where(norms > 0, vectors @ unit / np.maximum(norms, 1e-12), np.nan)

    return feedback_similarity(np.asarray(term), np.asarray(cosine), question, weight,
                               lambda i: vectors[i] if norms[i] > 0 else None, cosines_with, strength)


@pytest.mark.parametrize("weight", [0.0, 1.0, -0.5, 1.5])
def test_no_feedback_when_one_leg_has_no_say(weight):
    assert pick([0.6, 0.1], [0.2, 0.7], weight) is None
    assert similarity([0.6], [0.2], np.ones((1, 4)), np.ones(4), weight) is None


def test_no_feedback_when_no_candidate_holds_a_question_word():
    assert pick([0.0, 0.0], [0.9, 0.1], 0.3) is None
    assert pick([], [], 0.3) is None


def test_moved_question_is_a_unit_vector_between_the_two():
    q, f = unit(1, 0, 0, 0), unit(0, 2, 0, 0)  # the feedback vector need not be normalised
    moved = moved_question(q, np.array([0, 2, 0, 0]), 0.5)
    assert np.linalg.norm(moved) == pytest.approx(1.0)
    assert moved == pytest.approx((q + 0.5 * f) / np.linalg.norm(q + 0.5 * f))
    assert moved_question(q, np.zeros(4)) is None
    assert moved_question(q, np.ones(3)) is None


def test_feedback_similarity_asks_every_candidate_with_the_moved_question():
    q = unit(1, 0, 0, 0)
    vectors = np.array([unit(0.2, 1, 0, 0), 3 * unit(0.6, 0, 1, 0), np.zeros(4)], dtype=np.float32)
    term, cosine = np.array([0.0, 0.4, 0.0]), np.array([vectors[0][0], 0.6 / np.linalg.norm([0.6, 1]), 0.5])
    got = similarity(term, cosine, vectors, q, 0.3, 0.5)
    moved = moved_question(q, vectors[1], 0.5)  # swapped weights (0.7 cosine, 0.3 words): chunk 1 wins
    asked = [float(unit(*vectors[0]) @ moved), float(unit(*vectors[1]) @ moved), 0.5]  # no vector: raw cosine
    assert got == pytest.approx([0.3 * a + 0.7 * t for a, t in zip(asked, term, strict=True)])
