"""The DocStoreConnection contract, identical for every backend."""

from __future__ import annotations

import numpy as np
import pytest

from rag.utils.doc_store_conn import (
    SCORE,
    FusionExpr,
    MatchDenseExpr,
    MatchTextExpr,
    OrderByExpr,
    chunk_id,
    index_name,
    make_chunk_row,
    title_tokens,
)

KB = "kb_a"
OTHER_KB = "kb_b"
FIELDS = ("title_tks^1", "content_ltks^1", "important_tks^3", "question_tks^2")
TEXTS = {
    "d1": "Mitochondria are the powerhouse of the cell and produce ATP.",
    "d2": "The cat sat on the mat while the dog slept in the garden.",
    "d3": "Photosynthesis converts light energy into chemical energy in plants.",
    "d4": "Quantum computers use qubits that can be in superposition.",
}


def unit(seed: int, dim: int = 8) -> np.ndarray:
    vec = np.random.default_rng(seed).normal(size=dim).astype(np.float32)
    return vec / np.linalg.norm(vec)


def rows(kb: str = KB) -> list[dict]:
    return [make_chunk_row(doc, kb, f"{doc}.txt", text, unit(i)) for i, (doc, text) in enumerate(TEXTS.items())]


@pytest.fixture
def filled(store, tenant) -> str:
    store.create_idx(index_name(tenant), KB, 8)
    assert store.insert(rows(), index_name(tenant), KB) == []
    return index_name(tenant)


def search(store, idx, exprs, condition=None, kb_ids=(KB,), limit=10, **kw):
    return store.search(["id", "doc_id", "content_with_weight"], kw.pop("highlight", []), condition or {},
                        exprs, kw.pop("order_by", None), kw.pop("offset", 0), limit, [idx], list(kb_ids), **kw)


def test_helpers_are_stable():
    assert index_name("t1") == "ragline_t1"
    assert chunk_id("d", "x") == chunk_id("d", "x") != chunk_id("d", "y")
    assert len(chunk_id("d", "x")) == 32 and int(chunk_id("d", "x"), 16) >= 0


def test_title_tokens_hold_the_file_name_then_the_titles_new_words_once():
    assert title_tokens("3M_2018_10K_p57.txt", "3M 10k 2018, page 57") == "3m 2018 10k p57 page 57"
    assert title_tokens("notes.txt") == title_tokens("notes.txt", "") == "notes"


def test_index_lifecycle(store, tenant):
    idx = index_name(tenant)
    assert not store.index_exist(idx, KB)
    store.create_idx(idx, KB, 8)
    store.create_idx(idx, KB, 8)  # idempotent
    assert store.index_exist(idx, KB)
    store.delete_idx(idx, "")
    assert not store.index_exist(idx, KB)


def test_insert_get_and_upsert(store, filled):
    first = rows()[0]
    got = store.get(first["id"], filled, [KB])
    assert got["content_with_weight"] == TEXTS["d1"] and got["doc_id"] == "d1"
    assert np.allclose(got["q_8_vec"], first["q_8_vec"], atol=1e-6)
    assert store.get(first["id"], filled, [OTHER_KB]) is None
    assert store.get("0" * 32, filled, [KB]) is None
    assert store.insert(rows(), filled, KB) == []  # a retry overwrites, never duplicates
    assert search(store, filled, []).total == len(TEXTS)


def test_filters_update_delete(store, filled):
    other = make_chunk_row("x", OTHER_KB, "x.txt", "other kb cell", unit(9))
    assert store.insert([other], filled, OTHER_KB) == []
    assert search(store, filled, []).total == 4
    assert search(store, filled, [], kb_ids=[KB, OTHER_KB]).total == 5
    assert {r["doc_id"] for r in search(store, filled, [], {"doc_id": ["d1", "d2"]}).rows} == {"d1", "d2"}
    assert store.update({"doc_id": "d1"}, {"available_int": 0}, filled, KB)
    assert search(store, filled, [], {"available_int": 1}).total == 3
    assert store.get(rows()[0]["id"], filled, [KB])["available_int"] == 0
    assert store.delete({"doc_id": ["d2", "d3"]}, filled, KB) == 2
    assert search(store, filled, []).total == 2
    store.delete_idx(filled, KB)
    assert search(store, filled, [], kb_ids=[KB, OTHER_KB]).total == 1


def test_text_search_ranks_by_bm25(store, filled):
    result = search(store, filled, [MatchTextExpr(FIELDS, "cell powerhouse", 10)], highlight=["content_with_weight"])
    assert result.rows[0]["doc_id"] == "d1"
    assert result.total == 1
    assert "<em>powerhouse</em>" in result.highlights[result.rows[0]["id"]]


def test_a_chunks_document_title_is_matched_by_the_text_leg(store, tenant):
    """A chunk that does not hold its document's title line is still found by the title's words."""
    idx = index_name(tenant)
    store.create_idx(idx, KB, 8)
    titled = make_chunk_row("d9", KB, "d9.txt", "Grazing at dusk near the river.", unit(9), title="Okapi field notes")
    untitled = make_chunk_row("d8", KB, "d8.txt", "Grazing at dawn near the river.", unit(8))
    assert store.insert([titled, untitled], idx, KB) == []
    result = search(store, idx, [MatchTextExpr(FIELDS, "okapi notes", 10)])
    assert [row["id"] for row in result.rows] == [titled["id"]]
    assert result.rows[0]["content_with_weight"] == "Grazing at dusk near the river."
    assert {row["id"] for row in search(store, idx, [MatchTextExpr(FIELDS, "grazing river", 10)]).rows} == {
        titled["id"], untitled["id"]}


def test_dense_search_is_exact(store, filled):
    result = search(store, filled, [MatchDenseExpr("q_8_vec", tuple(unit(2).tolist()), 10)])
    assert result.rows[0]["doc_id"] == "d3"
    assert result.rows[0]["_vector_score"] == pytest.approx(1.0, abs=1e-4)


def test_hybrid_vector_leg_is_not_filtered_by_text(store, filled):
    exprs = [MatchTextExpr(FIELDS, "cat mat", 10), MatchDenseExpr("q_8_vec", tuple(unit(3).tolist()), 10),
             FusionExpr(0.5, 20)]
    result = search(store, filled, exprs)
    by_doc = {r["doc_id"]: r for r in result.rows}
    assert by_doc["d4"]["vector_similarity"] == pytest.approx(1.0, abs=1e-4)  # no word in common
    assert by_doc["d4"]["term_similarity"] == 0.0
    assert 0.2 < by_doc["d2"]["term_similarity"] < 1.0  # both words once: BM25 well below its ceiling
    seeds = {doc: i for i, doc in enumerate(TEXTS)}
    for row in result.rows:  # the raw cosine, not a per-query rescaling
        assert row["vector_similarity"] == pytest.approx(float(unit(seeds[row["doc_id"]]) @ unit(3)), abs=1e-5)
        assert row[SCORE] == pytest.approx(0.5 * row["vector_similarity"] + 0.5 * row["term_similarity"])
    assert [r[SCORE] for r in result.rows] == sorted((r[SCORE] for r in result.rows), reverse=True)


def test_hybrid_respects_filters_in_both_legs(store, filled):
    exprs = [MatchTextExpr(FIELDS, "cat", 10), MatchDenseExpr("q_8_vec", tuple(unit(1).tolist()), 10),
             FusionExpr(0.3, 20)]
    result = search(store, filled, exprs, {"doc_id": ["d3", "d4"], "available_int": 1})
    assert {r["doc_id"] for r in result.rows} <= {"d3", "d4"}


def test_aggregations_order_and_paging(store, filled):
    result = search(store, filled, [], order_by=OrderByExpr().desc("doc_id"), agg_fields=["doc_id"], limit=2)
    assert [r["doc_id"] for r in result.rows] == ["d4", "d3"]
    assert result.total == 4
    assert dict(result.aggregations["doc_id"]) == {"d1": 1, "d2": 1, "d3": 1, "d4": 1}
    second = search(store, filled, [], order_by=OrderByExpr().desc("doc_id"), offset=2, limit=2)
    assert [r["doc_id"] for r in second.rows] == ["d2", "d1"]


HOSTILE = ['"unbalanced quote', "(a OR b", "cell AND NEAR(x y)", "mito*", "col:umn ^ - + {}", "🙂🔥 cell 🧬",
           "NOT", "x" * 10_000, " ".join(["energy"] * 2_000), "", "'; DROP TABLE chunk; --"]


@pytest.mark.parametrize("question", HOSTILE, ids=range(len(HOSTILE)))
def test_hostile_text_never_breaks_search(store, filled, question):
    exprs = [MatchTextExpr(FIELDS, question, 10), MatchDenseExpr("q_8_vec", tuple(unit(0).tolist()), 10),
             FusionExpr(0.3, 20)]
    result = search(store, filled, exprs)
    assert result.total >= 1  # the vector leg always answers
    if "cell" in question:
        assert any(r["doc_id"] == "d1" and r["term_similarity"] > 0 for r in result.rows)
