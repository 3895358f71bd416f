"""Dealer.retrieval on a real SQLite store with hand-made vectors: fusion maths, filters, paging."""

from __future__ import annotations

from concurrent.futures import Future
from pathlib import Path

import numpy as np
import pytest

from rag.nlp.search import Dealer, EmbeddedQuestion, QuestionBeingEmbedded
from rag.utils.doc_store_conn import index_name, make_chunk_row
from rag.utils.sqlite_conn import SqliteConnection

TENANT, KB = "t1", "kb1"
DOCS = {
    "d1": ["Aspirin reduces the risk of heart attack.", "Aspirin is an anti-inflammatory drug."],
    "d2": ["Statins lower cholesterol in the blood."],
    "d3": ["The heart pumps blood through the body."],
    "d4": ["Volcanoes erupt molten rock."],
}
DIM = 6


def basis(i: int) -> np.ndarray:
    vec = np.full(DIM, 0.05, dtype=np.float32)
    vec[i % DIM] = 1.0
    return vec / np.linalg.norm(vec)


class FixedEncoder:
    """Maps known questions to fixed vectors so the vector leg is predictable."""

    def __init__(self, vectors: dict[str, np.ndarray]) -> None:
        self.vectors = vectors
        self.calls = 0

    def encode_queries(self, text: str) -> tuple[np.ndarray, int]:
        self.calls += 1
        return self.vectors.get(text, basis(5)), 3


@pytest.fixture
def dealer(tmp_path: Path) -> Dealer:
    store = SqliteConnection(tmp_path)
    rows, n = [], 0
    for doc_id, texts in DOCS.items():
        for text in texts:
            rows.append(make_chunk_row(doc_id, KB, f"{doc_id}.txt", text, basis(n)))
            n += 1
    rows.append(make_chunk_row("other", "kb2", "other.txt", "Aspirin heart attack other dataset", basis(0)))
    assert store.insert(rows, index_name(TENANT), KB) == []
    return Dealer(store)


def retrieve(dealer, question, encoder, **kw):
    args = {"page": 1, "page_size": 10, "similarity_threshold": 0.0, "vector_similarity_weight": 0.3} | kw
    return dealer.retrieval(question, encoder, [TENANT], [KB], **args)


@pytest.mark.parametrize("weight", [0.0, 0.3, 0.7, 1.0])
def test_similarity_is_the_weighted_sum_of_the_legs(dealer, weight):
    result = retrieve(dealer, "aspirin heart", FixedEncoder({"aspirin heart": basis(3)}),
                      vector_similarity_weight=weight)
    assert result["total"] == 5
    for chunk in result["chunks"]:
        assert 0.0 <= chunk["term_similarity"] <= 1.0 and 0.0 <= chunk["vector_similarity"] <= 1.0
        expected = weight * chunk["vector_similarity"] + (1 - weight) * chunk["term_similarity"]
        assert chunk["similarity"] == pytest.approx(expected, abs=1e-5)
    sims = [c["similarity"] for c in result["chunks"]]
    assert sims == sorted(sims, reverse=True)
    by_text = {c["content_with_weight"]: c for c in result["chunks"]}
    both, one = by_text[DOCS["d1"][0]]["term_similarity"], by_text[DOCS["d1"][1]]["term_similarity"]
    assert 0.3 < both < 1.0 and 0 < one < both  # both words beat one word; neither reaches BM25's ceiling
    assert by_text[DOCS["d3"][0]]["vector_similarity"] == pytest.approx(1.0, abs=1e-6)  # basis(3) itself
    assert by_text[DOCS["d3"][0]]["term_similarity"] > 0  # "heart"
    assert by_text[DOCS["d4"][0]]["term_similarity"] == 0  # found by the vector leg only


def test_vector_leg_finds_chunks_without_any_common_word(dealer):
    result = retrieve(dealer, "aspirin", FixedEncoder({"aspirin": basis(4)}), vector_similarity_weight=0.5)
    assert DOCS["d4"][0] in [c["content_with_weight"] for c in result["chunks"]]


def test_threshold_paging_and_doc_aggs(dealer):
    encoder = FixedEncoder({"aspirin heart": basis(0)})
    full = retrieve(dealer, "aspirin heart", encoder, similarity_threshold=0.15)
    assert all(c["similarity"] >= 0.15 for c in full["chunks"])
    assert full["total"] == len(full["chunks"]) < 5
    page2 = retrieve(dealer, "aspirin heart", encoder, similarity_threshold=0.15, page=2, page_size=1)
    assert page2["total"] == full["total"]
    assert page2["chunks"][0]["chunk_id"] == full["chunks"][1]["chunk_id"]
    aggs = {a["doc_id"]: a for a in full["doc_aggs"]}
    assert aggs["d1"] == {"doc_id": "d1", "doc_name": "d1.txt", "count": 2}
    assert sum(a["count"] for a in full["doc_aggs"]) == full["total"]


def test_filters_datasets_documents_and_availability(dealer):
    encoder = FixedEncoder({})
    only_d2 = retrieve(dealer, "aspirin heart blood", encoder, doc_ids=["d2"])
    assert {c["doc_id"] for c in only_d2["chunks"]} == {"d2"}
    everything = retrieve(dealer, "aspirin heart blood", encoder)
    assert "other" not in {c["doc_id"] for c in everything["chunks"]}
    first = everything["chunks"][0]
    dealer.doc_store.update({"id": first["chunk_id"]}, {"available_int": 0}, index_name(TENANT), KB)
    after = retrieve(dealer, "aspirin heart blood", encoder)
    assert first["chunk_id"] not in {c["chunk_id"] for c in after["chunks"]}


def test_chunk_shape_and_highlight(dealer):
    result = retrieve(dealer, "Aspirin drug", FixedEncoder({}), highlight=True)
    chunk = result["chunks"][0]
    assert set(chunk) >= {"chunk_id", "content_with_weight", "doc_id", "docnm_kwd", "kb_id", "important_kwd",
                          "question_kwd", "similarity", "vector_similarity", "term_similarity", "positions",
                          "highlight"}
    assert "<em>Aspirin</em>" in chunk["highlight"] and "<em>drug</em>" in chunk["highlight"]
    assert "highlight" not in retrieve(dealer, "Aspirin drug", FixedEncoder({}))["chunks"][0]


def test_chunks_carry_the_token_count_stored_when_they_were_indexed(dealer, tmp_path):
    """The prompt step bounds knowledge by these counts instead of encoding every chunk."""
    from rag.utils.token_utils import num_tokens

    for chunk in retrieve(dealer, "Aspirin heart", FixedEncoder({}))["chunks"]:
        assert chunk["token_count"] == num_tokens(chunk["content_with_weight"]) > 0
    older = make_chunk_row("d9", KB, "d9.txt", "Aspirin from an index made before counts were stored", basis(1))
    del older["token_num_int"]
    store = SqliteConnection(tmp_path / "older")
    assert store.insert([older], index_name(TENANT), KB) == []
    assert retrieve(Dealer(store), "Aspirin", FixedEncoder({}))["chunks"][0]["token_count"] is None


def test_rerank_model_replaces_the_vector_part(dealer):
    class Reranker:
        def similarity(self, query, texts):
            return np.array([1.0 if "Statins" in t else 0.0 for t in texts]), 5

    result = retrieve(dealer, "aspirin blood", FixedEncoder({}), rerank_mdl=Reranker(), vector_similarity_weight=0.9)
    top = result["chunks"][0]
    assert top["content_with_weight"] == DOCS["d2"][0]
    assert top["vector_similarity"] == 1.0
    assert top["similarity"] == pytest.approx(0.9 + 0.1 * top["term_similarity"], abs=1e-5)


@pytest.mark.parametrize("question", ["", "   ", "🙂", '"(AND NEAR *'])
def test_degenerate_questions(dealer, question):
    result = retrieve(dealer, question, FixedEncoder({}))
    assert set(result) == {"total", "chunks", "doc_aggs"}
    if not question.strip():
        assert result == {"total": 0, "chunks": [], "doc_aggs": []}


def test_no_datasets_means_nothing(dealer):
    assert dealer.retrieval("aspirin", FixedEncoder({}), [TENANT], [], 1, 10)["total"] == 0


@pytest.mark.parametrize("whole_page", [True, False])
@pytest.mark.parametrize("page,page_size", [(1, 2), (2, 2), (1, 10), (3, 1)])
def test_without_aggs_the_store_pages_and_only_the_page_is_counted(dealer, page, page_size, whole_page, monkeypatch):
    """``aggs=False`` (a chat) gives the same page and total as ``aggs=True`` (/retrieval), with
    the page's documents counted, and asks the store for the page's rows only: in the ranking
    itself when the store reads only the page's rows (SQLite), else by id afterwards (ES)."""
    monkeypatch.setattr(dealer.doc_store, "ranks_then_reads_the_page", whole_page)
    encoder = FixedEncoder({"aspirin heart": basis(0)})
    options = {"page": page, "page_size": page_size, "similarity_threshold": 0.05}
    full = retrieve(dealer, "aspirin heart", encoder, **options)
    limits: list[int] = []
    real_search = dealer.doc_store.search
    monkeypatch.setattr(dealer.doc_store, "search", lambda *args, **kw: limits.append(args[6]) or real_search(*args, **kw))
    paged = retrieve(dealer, "aspirin heart", encoder, aggs=False, **options)
    assert limits[0] == page_size  # the ranking asked for the page, not every candidate
    assert len(limits) == (1 if whole_page else 2)
    assert paged["total"] == full["total"] > 2
    assert paged["chunks"] == full["chunks"]
    counted: dict[str, int] = {}
    for chunk in paged["chunks"]:
        counted[chunk["doc_id"]] = counted.get(chunk["doc_id"], 0) + 1
    assert {agg["doc_id"]: agg["count"] for agg in paged["doc_aggs"]} == counted
    assert sum(agg["count"] for agg in full["doc_aggs"]) == full["total"]


def test_a_question_still_being_embedded_retrieves_as_an_embedded_one(dealer):
    embedded: Future = Future()
    embedded.set_result(basis(3))
    being_embedded = QuestionBeingEmbedded("aspirin heart", embedded, DIM, 3)
    expected = retrieve(dealer, "aspirin heart", EmbeddedQuestion("aspirin heart", basis(3), 3))
    assert expected["total"] == 5
    assert retrieve(dealer, "aspirin heart", being_embedded) == expected
    vector, tokens = being_embedded.encode_queries("aspirin heart")
    assert np.array_equal(vector, basis(3)) and tokens == 3
    with pytest.raises(ValueError):
        being_embedded.encode_queries("another question")
