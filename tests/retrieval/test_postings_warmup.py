"""Reading an index's term postings ahead: the same postings as FTS5 gives word by word, the same
rankings as without it, never stale after a write, bounded, and stopped with the store."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

from rag.nlp.query import FulltextQueryer
from rag.utils import postings_warmup
from rag.utils.doc_store_conn import FusionExpr, MatchDenseExpr, MatchTextExpr, index_name, make_chunk_row
from rag.utils.postings_warmup import PostingsWarmer, warm, words_by_stem
from rag.utils.sqlite_conn import SqliteConnection
from rag.utils.sqlite_index import SqliteIndex, column_weights

IDX = index_name("t1")
KB = "kb"
# inflections FTS5's porter stemmer folds together, so one stem's postings serve several words
VOCAB = ["cell", "cells", "protein", "proteins", "gene", "genes", "running", "runs", "insulin", "receptor",
         "receptors", "virus", "viruses", "membrane", "enzyme", "enzymes"]
QUESTIONS = ["cells proteins", "running virus receptors", "insulin", "enzyme membrane genes cell"]
WEIGHTS = column_weights(FulltextQueryer().fields())


def rows(count: int, seed: int = 0) -> list[dict]:
    rng = np.random.default_rng(seed)
    return [make_chunk_row(f"d{i % 5}", KB, f"d{i % 5}.txt", " ".join(rng.choice(VOCAB, size=int(rng.integers(3, 30)))),
                           rng.normal(size=4).astype(np.float32)) for i in range(count)]


def ranked(store: SqliteConnection, question: str) -> list[tuple[str, float]]:
    """The hybrid ranking a question gets with the default field weights (the ones read ahead)."""
    query = [MatchTextExpr(FulltextQueryer().fields(), question, 20), MatchDenseExpr("q_4_vec", (0.5, -1.0, 0.2, 0.1), 20),
             FusionExpr(0.3, 40)]
    found = store.search(["id"], [], {}, query, None, 0, 15, [IDX], [KB]).rows
    return [(r["id"], round(r["_score"], 9)) for r in found]


def filled(path: Path, count: int = 200, **options) -> tuple[SqliteConnection, SqliteIndex]:
    store = SqliteConnection(path, **options)
    store.insert(rows(count), IDX, KB)
    return store, store._index(IDX)


def test_words_are_grouped_under_the_stem_fts5_gives_them() -> None:
    grouped = words_by_stem(["cells cell membrane", "running runs receptors receptor cell"])
    assert sorted(grouped["cell"]) == ["cell", "cells"]
    assert sorted(grouped["run"]) == ["running", "runs"]
    assert sorted(grouped["receptor"]) == ["receptor", "receptors"]
    assert grouped["membran"] == ["membrane"]


def test_postings_read_ahead_equal_fts5s_own_for_every_word(tmp_path: Path) -> None:
    store, index = filled(tmp_path)
    assert warm(index, WEIGHTS) > 0
    fresh = SqliteIndex(index.path)  # reads each word from FTS5 itself
    fresh_matrix = next(iter(fresh.matrices.values()))
    words = {word for word, weights, _ in index.postings_cache if weights == WEIGHTS}
    assert set(VOCAB) <= words
    for word in VOCAB:
        kept = index.postings_cache[(word, WEIGHTS, 4)]
        own = fresh.term_postings(word, WEIGHTS, fresh_matrix)
        order, own_order = np.argsort(kept.rowids), np.argsort(own.rowids)
        assert np.array_equal(kept.rowids[order], own.rowids[own_order])
        np.testing.assert_allclose(kept.scores[order], own.scores[own_order], rtol=1e-12)
    fresh.close()
    store.close()


@pytest.mark.parametrize("question", QUESTIONS)
def test_a_search_after_reading_ahead_ranks_as_without_it_and_reads_nothing(tmp_path: Path, question: str) -> None:
    warmed, index = filled(tmp_path / "a")
    cold, _ = filled(tmp_path / "b")  # reads each word from FTS5 when a question first holds it
    warm(index, WEIGHTS)
    keys = len(index.postings_cache)
    expected = ranked(cold, question)
    assert expected and ranked(warmed, question) == expected
    assert len(index.postings_cache) == keys  # every word of the question was already kept
    warmed.close()
    cold.close()


def test_a_write_after_reading_ahead_is_searched(tmp_path: Path) -> None:
    store, index = filled(tmp_path)
    warm(index, WEIGHTS)
    before = {chunk_id for chunk_id, _ in ranked(store, "insulin")}
    store.insert([make_chunk_row("dz", KB, "dz.txt", "insulin " * 30, np.ones(4, dtype=np.float32))], IDX, KB)
    after = {chunk_id for chunk_id, _ in ranked(store, "insulin")}
    assert len(after - before) == 1  # the new chunk, found through postings read after the write
    store.close()


def test_reading_ahead_waits_for_a_quiet_index_and_stops_at_a_write(tmp_path: Path) -> None:
    store, index = filled(tmp_path)
    warmer = PostingsWarmer(index, quiet_seconds=0.3)
    warmer.maybe_start()  # an index just opened counts as quiet
    first = warmer.thread
    warmer.join()
    assert index.postings_cache
    store.insert(rows(5, seed=1), IDX, KB)  # a write: what was read no longer holds
    warmer.maybe_start()
    assert warmer.thread is first  # written a moment ago: not read again yet
    time.sleep(0.35)
    warmer.maybe_start()
    assert warmer.thread is not first
    warmer.join()
    assert index.df_seq == index.seq and ("cells", WEIGHTS, 4) in index.postings_cache
    assert warm(index, WEIGHTS, keep_going=lambda: False) == 0
    store.close()


def test_reading_ahead_stays_within_its_share_of_the_cache(tmp_path: Path) -> None:
    store, index = filled(tmp_path, cached_postings=400)
    kept = warm(index, WEIGHTS)
    assert 0 < kept < len(words_by_stem([" ".join(VOCAB)]))
    assert index.cached_postings <= 400 * postings_warmup.WARM_SHARE
    store.close()


def test_a_large_index_is_not_read_ahead(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store, index = filled(tmp_path)
    monkeypatch.setattr(postings_warmup, "WARM_MAX_ROWS", 100)
    assert warm(index, WEIGHTS) == 0 and not index.postings_cache
    store.close()


def test_a_search_store_reads_existing_indexes_ahead_when_it_opens(tmp_path: Path) -> None:
    SqliteConnection(tmp_path).insert(rows(200), IDX, KB)
    store = SqliteConnection(tmp_path, warm_postings=True)
    deadline = time.monotonic() + 10
    while IDX not in store.warmers and time.monotonic() < deadline:
        time.sleep(0.01)
    store.warmers[IDX].join()
    assert ("cells", WEIGHTS, 4) in store.indexes[IDX].postings_cache
    store.close()
    assert not store.warmers and not store.indexes
    store.read_ahead()  # after close: opens nothing
    assert not store.indexes
