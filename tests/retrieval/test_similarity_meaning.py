"""The similarity numbers mean what RAGFlow means, on a small real index embedded by the builtin MiniLM.

``vector_similarity`` is the raw cosine, ``term_similarity`` BM25 over its ceiling, and the
default ``similarity_threshold`` 0.2 keeps a real question's chunks while dropping every chunk
for a nonsense one (which a per-question normalisation, whose best chunk always scores 1, could not).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from rag.llm.embedding_model import BuiltinEmbedding
from rag.nlp.feedback import FEEDBACK_STRENGTH, moved_question
from rag.nlp.search import Dealer
from rag.utils.doc_store_conn import index_name, make_chunk_row
from rag.utils.sqlite_conn import SqliteConnection

TENANT, KB = "t_meaning", "kb_meaning"
TEXTS = {
    "aspirin": "Aspirin lowers the risk of a second heart attack in patients with coronary disease.",
    "statins": "Statins reduce LDL cholesterol and cardiovascular events in adults at high risk.",
    "insulin": "Insulin resistance precedes type 2 diabetes by years and raises blood glucose.",
    "vitamin": "Vitamin D supplements did not prevent fractures in healthy older adults.",
    "malaria": "Artemisinin combination therapy cures most uncomplicated malaria infections.",
}
REAL = "Does aspirin prevent heart attacks?"
NONSENSE = ["Zorbly wimwam quexotic flurbinator?", "blorf snazzleplank grumtuous vex"]


@pytest.fixture(scope="module")
def minilm(builtin_embedding: BuiltinEmbedding) -> BuiltinEmbedding:
    builtin_embedding.warm_up()
    return builtin_embedding


@pytest.fixture
def indexed(tmp_path: Path, minilm: BuiltinEmbedding) -> tuple[Dealer, dict[str, np.ndarray]]:
    vectors, _ = minilm.encode(list(TEXTS.values()))
    store = SqliteConnection(tmp_path)
    rows = [make_chunk_row(doc, KB, f"{doc}.txt", text, vec) for (doc, text), vec in zip(TEXTS.items(), vectors,
                                                                                      strict=True)]
    assert store.insert(rows, index_name(TENANT), KB) == []
    return Dealer(store), dict(zip(TEXTS, vectors, strict=True))


def retrieve(dealer: Dealer, question: str, encoder, **kw) -> dict:
    options = {"similarity_threshold": 0.2, "vector_similarity_weight": 0.3} | kw
    return dealer.retrieval(question, encoder, [TENANT], [KB], 1, 30, **options)


def test_default_threshold_keeps_a_real_question_and_drops_nonsense(indexed, minilm):
    dealer, _ = indexed
    real = retrieve(dealer, REAL, minilm)
    assert real["total"] >= 1 and real["chunks"][0]["doc_id"] == "aspirin"
    for question in NONSENSE:
        assert retrieve(dealer, question, minilm) == {"total": 0, "chunks": [], "doc_aggs": []}
        weak = retrieve(dealer, question, minilm, similarity_threshold=0.0)["chunks"]  # found, but all weak
        assert weak and all(0 <= c["similarity"] < 0.2 and c["term_similarity"] == 0 for c in weak)


FUSION_HOLDS = [  # without feedback always; with it wherever it does not apply (one leg only, or
    # no question word in any chunk); where it applies: test_feedback_moves_only_the_vector_part
    (question, weight, feedback)
    for question in (REAL, NONSENSE[0]) for weight in (0.0, 0.3, 0.7, 1.0) for feedback in (0.0, FEEDBACK_STRENGTH)
    if not (feedback and 0 < weight < 1 and question == REAL)
]


@pytest.mark.parametrize("question,weight,feedback", FUSION_HOLDS)
def test_vector_similarity_is_the_raw_cosine_and_the_fusion_holds(indexed, minilm, question, weight, feedback):
    dealer, vectors = indexed
    dealer = Dealer(dealer.doc_store, feedback=feedback)
    query, _ = minilm.encode_queries(question)
    result = retrieve(dealer, question, minilm, similarity_threshold=0.0, vector_similarity_weight=weight)
    assert result["chunks"]
    for chunk in result["chunks"]:
        chunk_vec = vectors[chunk["doc_id"]]
        cosine = float(np.dot(query, chunk_vec) / (np.linalg.norm(query) * np.linalg.norm(chunk_vec)))
        assert chunk["vector_similarity"] == pytest.approx(cosine, abs=1e-5)
        assert 0.0 <= chunk["term_similarity"] < 1.0
        expected = weight * chunk["vector_similarity"] + (1 - weight) * chunk["term_similarity"]
        assert chunk["similarity"] == pytest.approx(expected, abs=2e-6)
    if question in NONSENSE:  # no word of it is in any chunk
        assert all(c["term_similarity"] == 0 for c in result["chunks"])


def test_term_similarity_is_absolute_across_questions(indexed, minilm):
    """A per-question normalisation gives the best chunk 1.0 whatever the match; here a chunk
    holding one of four keywords scores well below one holding most of them."""
    dealer, _ = indexed
    weak = retrieve(dealer, "aspirin zorbly wimwam quexotic", minilm, similarity_threshold=0.0,
                    vector_similarity_weight=0.0)
    strong = retrieve(dealer, "aspirin heart attack risk", minilm, similarity_threshold=0.0,
                      vector_similarity_weight=0.0)
    weak_best, strong_best = weak["chunks"][0], strong["chunks"][0]
    assert weak_best["doc_id"] == strong_best["doc_id"] == "aspirin"
    assert 0 < weak_best["term_similarity"] < 0.2 < strong_best["term_similarity"]


@pytest.mark.parametrize("weight", [0.3, 0.7])
def test_feedback_moves_only_the_vector_part(indexed, minilm, weight):
    """At 0 < w < 1 ``similarity`` takes each chunk's cosine with the question moved toward the
    chunk the swapped weights rank first; the reported cosine and term scores stay raw."""
    dealer, vectors = indexed
    assert dealer.feedback == FEEDBACK_STRENGTH  # the server's default
    query, _ = minilm.encode_queries(REAL)
    chunks = retrieve(dealer, REAL, minilm, similarity_threshold=0.0, vector_similarity_weight=weight)["chunks"]
    pick = max(chunks, key=lambda c: (1 - weight) * c["vector_similarity"] + weight * c["term_similarity"])
    moved = moved_question(query, vectors[pick["doc_id"]])
    plain_differs = False
    for chunk in chunks:
        vec = vectors[chunk["doc_id"]]
        cosine = float(np.dot(query, vec) / (np.linalg.norm(query) * np.linalg.norm(vec)))
        assert chunk["vector_similarity"] == pytest.approx(cosine, abs=1e-5)
        asked = float(np.dot(moved, vec) / np.linalg.norm(vec))
        assert chunk["similarity"] == pytest.approx(weight * asked + (1 - weight) * chunk["term_similarity"], abs=2e-6)
        plain = weight * cosine + (1 - weight) * chunk["term_similarity"]
        plain_differs |= abs(chunk["similarity"] - plain) > 1e-4
    assert plain_differs
