"""Cross-leg feedback: the vector part of a hybrid similarity, asked again from the question moved
toward the chunk the *other* weighting ranks first.

At ``vector_similarity_weight`` w the chunk that ``(1 − w)·cosine + w·term_similarity`` ranks
first is the best guess of the leg the caller weighs less (the cosine's at w = 0.3, the keywords'
at w = 0.7). The question's vector is moved ``FEEDBACK_STRENGTH`` of the way toward that chunk's
(Rocchio's relevance feedback with one pseudo-relevant chunk) and every candidate's cosine with
the moved question takes the raw cosine's place in ``similarity``. The candidates, and their
``vector_similarity`` (raw cosine) and ``term_similarity``, stay what both legs found; only
``similarity`` and so the order change. It costs one product of the candidates' vectors
(≤ 2·top rows) with the moved question: no second kNN and no second full-text pass.

A store calls ``feedback_similarity`` where it fuses, before the threshold, so a threshold keeps
exactly the chunks that a search at 0 scores at or above it. Nothing changes at w = 0 or 1 (one
leg has no say, so there is no other leg to learn from), when no candidate holds a question word
(a nonsense question keeps ``w·cosine`` and stays below the threshold), or with a rerank model
(its score replaces the vector part).

nDCG@10 (``python -m rag.benchmark``, 218-token chunks), tuned on SciFact train only, before → after:
at w = 0.3 SciFact train 0.7378 → 0.7483, test 0.7317 → 0.7396; FinanceBench 0.7671 → 0.7698;
a 2,000-page man-page collection 0.8469 → 0.8549. At w = 0.5 / 0.7: SciFact test 0.7352 → 0.7437 /
0.7284 → 0.7342, FinanceBench 0.7747 → 0.7806 / 0.7674 → 0.7777, man pages 0.8658 → 0.8645 /
0.8614 → 0.8561 (the one drop). w = 0 and 1 are unchanged by construction.
Fed back from the 0.5/0.5 fusion's top chunk it gained half as much at 0.3; from the fused
ranking's own top chunk nothing; from the top 2–3 chunks less; without the feedback chunk's own
rise (neighbours only) nothing.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from rag.nlp.similarity import fuse

# β. SciFact train nDCG@10 at w 0.3, re-measured in issue 22's fourth round: 0.7443 / 0.7472 / 0.7483 /
# 0.7488 / 0.7485 / 0.7467 / 0.7463 at 0.2 / 0.25 / 0.3 / 0.35 / 0.4 / 0.45 / 0.5. 0.35's +0.0005 at w 0.3
# is noise and it costs train at w 0.5 / 0.7 (0.7480 → 0.7468, 0.7416 → 0.7398), so 0.3 stays.
FEEDBACK_STRENGTH = 0.3


def feedback_pick(term: np.ndarray, cosine: np.ndarray, vector_weight: float) -> int | None:
    """Index of the candidate the swapped weights rank first; None when feedback does not apply."""
    term = np.asarray(term, dtype=np.float64)
    if not 0.0 < vector_weight < 1.0 or term.size == 0 or not bool((term > 0).any()):
        return None
    return int(np.argmax(fuse(term, cosine, 1.0 - vector_weight)))


def moved_question(question: np.ndarray, feedback: np.ndarray, strength: float = FEEDBACK_STRENGTH
                   ) -> np.ndarray | None:
    """``normalise(q̂ + strength·f̂)``; None when either vector is empty or zero or they differ in size."""
    q = np.asarray(question, dtype=np.float32).ravel()
    f = np.asarray(feedback, dtype=np.float32).ravel()
    if q.size == 0 or q.shape != f.shape:
        return None
    q_norm, f_norm = float(np.linalg.norm(q)), float(np.linalg.norm(f))
    if q_norm == 0 or f_norm == 0:
        return None
    moved = q / q_norm + strength * f / f_norm
    return moved / float(np.linalg.norm(moved))


def feedback_similarity(term: np.ndarray, cosine: np.ndarray, question: np.ndarray, vector_weight: float,
                        vector_of: Callable[[int], np.ndarray | None],
                        cosines_with: Callable[[np.ndarray], np.ndarray],
                        strength: float = FEEDBACK_STRENGTH) -> np.ndarray | None:
    """``similarity`` of the candidates with the vector part asked from the moved question.

    ``term`` and ``cosine`` are the candidates' ``term_similarity`` and raw cosine. The store
    says how to read candidate i's stored vector (``vector_of``, None when it has none) and
    every candidate's cosine with a unit vector (``cosines_with``, nan where it has no vector:
    that candidate keeps its raw cosine), so it can score from where its vectors already are.
    None when feedback does not apply (use ``fuse``).
    """
    term = np.asarray(term, dtype=np.float64)
    cosine = np.asarray(cosine, dtype=np.float64)
    pick = feedback_pick(term, cosine, vector_weight)
    if pick is None:
        return None
    feedback = vector_of(pick)
    moved = None if feedback is None else moved_question(question, feedback, strength)
    if moved is None:
        return None
    asked = np.asarray(cosines_with(moved), dtype=np.float64)
    return fuse(term, np.where(np.isnan(asked), cosine, asked), vector_weight)
