"""SQLite specifics: FTS5 query building, concurrent readers, other writers, durability."""

from __future__ import annotations

import subprocess
import sys
import threading
from concurrent.futures import Future
from pathlib import Path

import numpy as np
import pytest

from rag.utils.doc_store_conn import FusionExpr, MatchDenseExpr, MatchTextExpr, index_name, make_chunk_row
from rag.utils.sqlite_conn import SqliteConnection
from rag.utils.sqlite_index import DENSE_SUM_RATIO, MAX_QUERY_TERMS, SqliteIndex, fts_query, summed_by_slot

IDX = index_name("t1")
KB = "kb"


def row(i: int, text: str | None = None) -> dict:
    vec = np.random.default_rng(i).normal(size=4).astype(np.float32)
    return make_chunk_row(f"d{i % 7}", KB, f"d{i % 7}.txt", text or f"chunk number {i} about cells", vec)


def count(store: SqliteConnection) -> int:
    return store.search(["id"], [], {}, [], None, 0, 0, [IDX], [KB]).total


@pytest.mark.parametrize("text,expected", [
    ('say "hi" (now)', '"say" OR "hi" OR "now"'),
    ("a AND b NEAR c*", '"a" OR "and" OR "b" OR "near" OR "c"'),
    ("🙂 ^ : - +", ""),
])
def test_fts_query_quotes_every_term(text, expected):
    assert fts_query(text) == expected


def test_fts_query_is_bounded():
    assert fts_query(" ".join(f"w{i}" for i in range(5000))).count(" OR ") == MAX_QUERY_TERMS - 1


def test_readers_keep_working_while_a_writer_writes(tmp_path):
    store = SqliteConnection(tmp_path)
    store.insert([row(i) for i in range(50)], IDX, KB)
    errors, seen = [], []
    done = threading.Event()

    def writer():
        for start in range(50, 1050, 100):
            store.insert([row(i) for i in range(start, start + 100)], IDX, KB)
        done.set()

    def reader():
        query = [MatchTextExpr(("content_ltks",), "cells", 50), MatchDenseExpr("q_4_vec", (1.0, 0, 0, 0), 50),
                 FusionExpr(0.3, 100)]
        while not done.is_set():
            try:
                seen.append(store.search(["id"], [], {}, query, None, 0, 10, [IDX], [KB]).total)
            except Exception as exc:  # noqa: BLE001 - any failure is the test's finding
                errors.append(exc)
                return

    threads = [threading.Thread(target=writer), *(threading.Thread(target=reader) for _ in range(2))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors and seen
    assert count(store) == 1050


def test_writes_of_another_connection_are_seen(tmp_path):
    reader, writer = SqliteConnection(tmp_path), SqliteConnection(tmp_path)
    writer.insert([row(1), row(2)], IDX, KB)
    assert count(reader) == 2
    target = row(3, "zebra stripes")
    writer.insert([target], IDX, KB)
    hits = reader.search(["id"], [], {}, [MatchDenseExpr("q_4_vec", tuple(target["q_4_vec"]), 1)], None, 0, 1,
                         [IDX], [KB])
    assert hits.rows[0]["id"] == target["id"]  # the in-memory matrix caught up
    writer.delete({"id": target["id"]}, IDX, KB)
    hits = reader.search(["id"], [], {}, [MatchDenseExpr("q_4_vec", tuple(target["q_4_vec"]), 5)], None, 0, 5,
                         [IDX], [KB])
    assert target["id"] not in {r["id"] for r in hits.rows}


def test_a_killed_process_loses_no_committed_chunk(tmp_path):
    script = f"""
import os, numpy as np
from pathlib import Path
from rag.utils.sqlite_conn import SqliteConnection
from rag.utils.doc_store_conn import make_chunk_row
store = SqliteConnection(Path({str(tmp_path)!r}))
rows = [make_chunk_row("d", "kb", "d.txt", f"text {{i}}", np.ones(4)) for i in range(20)]
store.insert(rows, "ragline_t1", "kb")
os._exit(9)  # no close, no checkpoint
"""
    result = subprocess.run([sys.executable, "-c", script], cwd=Path(__file__).parents[2], timeout=120)
    assert result.returncode == 9
    assert count(SqliteConnection(tmp_path)) == 20


WORDS = ["cell", "protein", "gene", "tumor", "membrane", "insulin", "virus", "neuron", "enzyme", "receptor"]


def varied_rows(count: int, seed: int = 0) -> list[dict]:
    """Chunks of random lengths over a small vocabulary, so terms repeat with varied frequencies."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(count):
        text = " ".join(rng.choice(WORDS, size=int(rng.integers(3, 40))))
        vec = rng.normal(size=4).astype(np.float32)
        rows.append(make_chunk_row(f"d{i % 5}", KB, f"d{i % 5}.txt", text, vec) | {"important_kwd": [WORDS[i % 10]]})
    return rows


QUESTION_VECTOR = (0.5, -1.0, 0.2, 0.1)


def hybrid_exprs(question: str, vector: tuple[float, ...] | Future = QUESTION_VECTOR,
                 vector_weight: float = 0.3) -> list:
    return [MatchTextExpr(("content_ltks", "important_kwd^5"), question, 20),
            MatchDenseExpr("q_4_vec", vector, 20), FusionExpr(vector_weight, 40)]


def hybrid_search(store: SqliteConnection, question: str, condition: dict | None = None) -> list[tuple[str, float]]:
    rows = store.search(["id"], [], condition or {}, hybrid_exprs(question), None, 0, 15, [IDX], [KB]).rows
    return [(r["id"], round(r["_score"], 9)) for r in rows]


@pytest.mark.parametrize("question", ["cell gene", "insulin receptor virus", "enzyme", "neuron tumor membrane cell"])
def test_bm25_summed_from_term_postings_ranks_as_fts5_does(tmp_path, question):
    """The per-term postings path must give FTS5's own OR-query BM25: same rows, same scores."""
    summed, fts5 = SqliteConnection(tmp_path / "a"), SqliteConnection(tmp_path / "b", cached_postings=0)
    for store in (summed, fts5):
        store.insert(varied_rows(300), IDX, KB)
    for condition in ({}, {"doc_id": ["d1", "d3"]}):
        expected = hybrid_search(fts5, question, condition)
        assert expected and hybrid_search(summed, question, condition) == expected
        assert hybrid_search(summed, question, condition) == expected  # again, from the cache


@pytest.mark.parametrize("entries, size", [(300, 1000), (300, 300 * DENSE_SUM_RATIO + 1), (50, 100_000)])
def test_postings_summed_by_slot_in_slot_arrays_or_by_sorting_equal_a_plain_sum(entries, size):
    """Both ways of summing (arrays as long as the matrix, or np.unique's sort past
    ``DENSE_SUM_RATIO``) give every distinct slot once, ascending, its exact sum and its rowid."""
    rng = np.random.default_rng(entries + size)
    slots = rng.choice(rng.choice(size, entries // 3 + 1, replace=False), entries)  # slots repeat across terms
    rowids = slots * 7 + 1  # one rowid per slot, as postings give
    scores = rng.random(entries)
    sums: dict[int, float] = {}
    for slot, score in zip(slots.tolist(), scores.tolist(), strict=True):
        sums[slot] = sums.get(slot, 0.0) + score
    distinct, totals, rowid_of = summed_by_slot(slots, rowids, scores, size)
    assert distinct.tolist() == sorted(sums)
    assert totals.tolist() == [sums[slot] for slot in sorted(sums)]  # same order of additions: bit-equal
    assert rowid_of.tolist() == [slot * 7 + 1 for slot in sorted(sums)]


def test_cached_postings_follow_writes(tmp_path):
    store = SqliteConnection(tmp_path)
    store.insert(varied_rows(100), IDX, KB)
    before = {chunk_id for chunk_id, _ in hybrid_search(store, "insulin")}
    store.insert([make_chunk_row("dz", KB, "dz.txt", "insulin " * 30, np.ones(4, dtype=np.float32))], IDX, KB)
    after = hybrid_search(store, "insulin")
    new_id = next(chunk_id for chunk_id, _ in after if chunk_id not in before)
    store.delete({"id": [new_id]}, IDX, KB)
    assert {chunk_id for chunk_id, _ in hybrid_search(store, "insulin")} == before



@pytest.mark.parametrize("fields", [["id", "content_with_weight"], ["id", "q_4_vec"], ["*"]])
def test_a_fetched_row_carries_its_vector_exactly_when_asked(tmp_path, fields):
    store = SqliteConnection(tmp_path)
    stored = row(3)
    store.insert([stored], IDX, KB)
    (fetched,) = store.search(fields, [], {"id": [stored["id"]]}, [], None, 0, 10, [IDX], [KB]).rows
    if "q_4_vec" in fields or "*" in fields:
        assert fetched["q_4_vec"] == pytest.approx(list(stored["q_4_vec"]))
    else:
        assert "q_4_vec" not in fetched and fetched["content_with_weight"] == stored["content_with_weight"]

# -- a vector still being computed (a search process embedding the question meanwhile) ------------

def ranked(store: SqliteConnection, exprs: list) -> list[tuple[str, float, float]]:
    rows = store.search(["id"], [], {}, exprs, None, 0, 40, [IDX], [KB]).rows
    return [(r["id"], r["_score"], r["vector_similarity"]) for r in rows]


def search_in_thread(store: SqliteConnection, exprs: list) -> tuple[threading.Thread, dict]:
    found: dict = {}

    def search() -> None:
        try:
            found["rows"] = ranked(store, exprs)
        except Exception as exc:  # noqa: BLE001 - handed to the test
            found["error"] = exc

    thread = threading.Thread(target=search, daemon=True)  # a broken order never gets its vector
    thread.start()
    return thread, found


def bm25_signalling(monkeypatch, after_text_leg) -> None:
    """Make ``SqliteIndex.bm25`` (the text leg) call ``after_text_leg`` once it has its hits."""
    real_bm25 = SqliteIndex.bm25

    def bm25(self, *args, **kwargs):
        found = real_bm25(self, *args, **kwargs)
        after_text_leg()
        return found

    monkeypatch.setattr(SqliteIndex, "bm25", bm25)


def test_the_text_leg_runs_while_the_vector_is_still_being_computed(tmp_path, monkeypatch):
    store = SqliteConnection(tmp_path)
    store.insert(varied_rows(200), IDX, KB)
    expected = ranked(store, hybrid_exprs("insulin receptor"))
    text_leg_done = threading.Event()
    bm25_signalling(monkeypatch, text_leg_done.set)
    vector: Future = Future()
    thread, found = search_in_thread(store, hybrid_exprs("insulin receptor", vector))
    assert text_leg_done.wait(30)  # the text leg ran with no vector yet...
    assert thread.is_alive()  # ...and the search waits for it
    vector.set_result(np.array(QUESTION_VECTOR, dtype=np.float32))
    thread.join(30)
    assert found == {"rows": expected}  # the same ranking as with the vector known from the start


def test_a_write_during_the_text_leg_is_seen_by_the_vector_leg(tmp_path, monkeypatch):
    """The kNN filters with a mask of the matrix as it is when the vector arrives, not as it was
    before the text leg (a stale mask is shorter than the grown matrix)."""
    store = SqliteConnection(tmp_path)
    store.insert(varied_rows(200), IDX, KB)
    newcomer = make_chunk_row("dn", KB, "dn.txt", "zebra", np.array(QUESTION_VECTOR, dtype=np.float32))
    vector: Future = Future()

    def write_then_embed() -> None:
        if not vector.done():
            assert store.insert([newcomer], IDX, KB) == []
            vector.set_result(np.array(QUESTION_VECTOR, dtype=np.float32))

    bm25_signalling(monkeypatch, write_then_embed)
    rows = ranked(store, hybrid_exprs("insulin receptor", vector, vector_weight=1.0))
    assert rows[0][0] == newcomer["id"] and rows[0][2] == pytest.approx(1.0)
