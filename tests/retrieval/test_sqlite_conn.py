"""SQLite specifics: FTS5 query building, concurrent readers, other writers, durability."""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

from rag.utils.doc_store_conn import FusionExpr, MatchDenseExpr, MatchTextExpr, index_name, make_chunk_row
from rag.utils.sqlite_conn import SqliteConnection
from rag.utils.sqlite_index import MAX_QUERY_TERMS, fts_query

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
