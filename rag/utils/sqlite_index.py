"""One tenant's chunk index file: its schema, FTS5 queries, row format and in-memory vector matrices.

``SqliteConnection`` speaks the ``DocStoreConnection`` interface; everything that knows how a
chunk is laid out in the SQLite file lives here, so the store's search and write logic never
writes schema-level SQL itself.

The file is in WAL mode so readers keep working while an ingestion worker writes, and a killed
process loses no committed chunk. Full text goes to an FTS5 table (porter stemming over
unicode61); vectors are float32 blobs beside the row and, per dimension, an L2-normalised
in-memory matrix so kNN is one matrix–vector product.

The matrix follows the database through a write sequence number: every write transaction bumps
``meta.seq`` and stamps the rows it touched (deletes leave a tombstone). Before a search, and
after its own writes, a process reads the rows newer than its matrix — so a worker in another
process is seen too, without reloading everything.
"""

from __future__ import annotations

import json
import re
import sqlite3
import threading
from collections import OrderedDict
from collections.abc import Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from rag.nlp import tokenize, tokens
from rag.nlp.similarity import BM25_K1, bm25_bound, fts5_idf
from rag.nlp.vector_matrix import VectorMatrix
from rag.utils.doc_store_conn import DocStoreError, as_list, parse_field_boosts, vector_dim

# FTS5 columns and the chunk fields that feed them (first present wins).
FTS_COLUMNS: dict[str, tuple[str, ...]] = {
    "title": ("title_tks", "docnm_kwd"),
    "content": ("content_ltks", "content_with_weight"),
    "important": ("important_tks", "important_kwd"),
    "question": ("question_tks", "question_kwd"),
}
FIELD_TO_COLUMN = {f: col for col, fields in FTS_COLUMNS.items() for f in fields}
# Real columns: filters and the cheap fields a ranking pass reads without parsing the JSON body.
COLUMN_FIELDS = ("id", "kb_id", "doc_id", "docnm_kwd", "available_int")
MAX_QUERY_TERMS = 256  # an FTS5 OR of thousands of terms is slow and adds nothing
# FTS5 computes BM25 for every row that matches any term, ~1–2 µs each. Past this many postings
# a question's most common terms are left out of the match (they carry the least IDF), so a
# large index answers in milliseconds; small collections are never affected.
MAX_SCORED_POSTINGS = 8000
# Postings whose per-term BM25 a process keeps between writes (``SqliteIndex.term_postings``):
# about 24 bytes each, so the default holds ~50 MB at most.
CACHED_POSTINGS = 2_000_000
OVERFETCH = 2  # without that cache: BM25 rows fetched per wanted row before filtering in memory
DENSE_SUM_RATIO = 8  # postings summed into slot-sized arrays from an eighth of the slots (``summed_by_slot``)
SAFE_KEY = re.compile(r"^[A-Za-z0-9_]+$")  # index names and JSON field names put into SQL text

FTS_TOKENIZER = "porter unicode61 remove_diacritics 2"  # stems what it indexes and what it matches
SCHEMA = f"""
CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value INTEGER NOT NULL);
INSERT OR IGNORE INTO meta(key, value) VALUES ('seq', 0);
CREATE TABLE IF NOT EXISTS kb(kb_id TEXT PRIMARY KEY, vector_size INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS chunk(
    rowid INTEGER PRIMARY KEY, id TEXT NOT NULL UNIQUE, kb_id TEXT NOT NULL, doc_id TEXT NOT NULL,
    docnm_kwd TEXT NOT NULL DEFAULT '', available_int INTEGER NOT NULL DEFAULT 1, seq INTEGER NOT NULL, body TEXT NOT NULL,
    vec_field TEXT, vec BLOB);
CREATE INDEX IF NOT EXISTS chunk_kb_doc ON chunk(kb_id, doc_id);
CREATE INDEX IF NOT EXISTS chunk_seq ON chunk(seq);
CREATE TABLE IF NOT EXISTS tombstone(seq INTEGER NOT NULL, row_id INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS tombstone_seq ON tombstone(seq);
CREATE VIRTUAL TABLE IF NOT EXISTS chunk_fts USING fts5(
    title, content, important, question, tokenize='{FTS_TOKENIZER}');
"""


def column_weights(fields: Sequence[str]) -> str:
    """``bm25()``'s weight arguments, in FTS5 column order, for boosted field names
    (``["content_ltks^1", "important_tks^3"]``); also the postings cache's key for them."""
    boosts = parse_field_boosts(fields)
    return ",".join(str(max((b for f, b in boosts.items() if FIELD_TO_COLUMN.get(f) == col), default=0.0))
                    for col in FTS_COLUMNS)


def query_terms(text: str) -> list[str]:
    """The distinct word tokens of user text, capped."""
    return list(dict.fromkeys(tokens(text)))[:MAX_QUERY_TERMS]


def fts_query(text: str | list[str]) -> str:
    """User text (or its terms) → an FTS5 OR of quoted terms; no input character reaches FTS5 syntax.

    Our tokens are letters and digits only, and each is additionally quoted, so ``AND``,
    ``NEAR``, ``*``, quotes and parentheses in a question are plain words or dropped.
    """
    terms = query_terms(text) if isinstance(text, str) else text
    return " OR ".join(f'"{t}"' for t in terms)


def _as_text(value: Any) -> str:
    if isinstance(value, list | tuple):
        return " ".join(str(v) for v in value)
    return "" if value is None else str(value)


def fts_values(row: dict[str, Any]) -> tuple[str, ...]:
    """The tokenised text of a chunk for each FTS5 column."""
    values = []
    for fields in FTS_COLUMNS.values():
        source = next((row[f] for f in fields if row.get(f)), "")
        values.append(tokenize(_as_text(source)))
    return tuple(values)


def chunk_record(row: dict, kb_id: str) -> dict[str, Any]:
    """Split a chunk dict into the columns we store; raises on a row that cannot be stored."""
    if not row.get("id"):
        raise ValueError("chunk has no id")
    body = {k: v for k, v in row.items() if vector_dim(k) is None}
    body["kb_id"] = row.get("kb_id") or kb_id
    vec_fields = [k for k in row if vector_dim(k) is not None]
    vec_field = vec_fields[0] if vec_fields else None
    blob = None
    if vec_field:
        vec = np.asarray(row[vec_field], dtype=np.float32)
        if vec.shape != (vector_dim(vec_field),):
            raise ValueError(f"{vec_field} has shape {vec.shape}")
        blob = vec.tobytes()
    return {"body": body, "vec_field": vec_field, "vec": blob}


def stored_row(body_json: str, vec_field: str | None, blob: bytes | None, select_fields: Sequence[str]) -> dict:
    """A stored chunk back as a dict (vector as a list), cut to ``select_fields`` unless empty or ``*``.

    The vector becomes a list only when it is kept: 384 floats as Python objects cost more than
    parsing the rest of the row, and most fetches (a chat's page) do not ask for it."""
    body = json.loads(body_json)
    whole = not select_fields or "*" in select_fields
    if vec_field and blob is not None and (whole or vec_field in select_fields):
        body[vec_field] = np.frombuffer(blob, dtype=np.float32).tolist()
    if not whole:
        body = {k: v for k, v in body.items() if k in select_fields or k == "id"}
    return body


@dataclass(frozen=True)
class TermPostings:
    """One term's rows with their matrix slot (-1: no vector there) and their BM25 for it alone."""

    rowids: np.ndarray
    slots: np.ndarray
    scores: np.ndarray


def summed_by_slot(slots: np.ndarray, rowids: np.ndarray, scores: np.ndarray, size: int
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The distinct ``slots`` (each below ``size``) in ascending order, each one's summed score
    (added in the order given) and its rowid.

    Summing into arrays as long as the matrix beats ``np.unique``'s sort when the entries are at
    least ``1 / DENSE_SUM_RATIO`` of the slots (5,583 slots: 11 against 59 µs for 3,000 entries,
    20 against 155 µs for 8,000); on a large index with few entries the sort wins (1M slots,
    8,000 entries: 754 against 147 µs).
    """
    if slots.size * DENSE_SUM_RATIO >= size:
        totals = np.bincount(slots, weights=scores, minlength=size)
        hit = np.zeros(size, dtype=bool)
        hit[slots] = True
        distinct = np.flatnonzero(hit)
        rowid_of = np.empty(size, dtype=np.int64)
        rowid_of[slots] = rowids
        return distinct, totals[distinct], rowid_of[distinct]
    distinct, where = np.unique(slots, return_inverse=True)
    rowid_of = np.empty(distinct.size, dtype=np.int64)
    rowid_of[where] = rowids
    return distinct, np.bincount(where, weights=scores), rowid_of


@dataclass(frozen=True)
class BM25Hits:
    """The BM25 leg's rows, best first, with their matrix slots when known (else None)."""

    rowids: np.ndarray
    scores: np.ndarray
    slots: np.ndarray | None = None

    @classmethod
    def of_rows(cls, rows: list[tuple[int, float]]) -> BM25Hits:
        return cls(np.array([r for r, _ in rows], dtype=np.int64), np.array([s for _, s in rows], dtype=np.float64))


NO_HITS = BM25Hits(np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float64))


class SqliteIndex:
    """One tenant index: its database file, a writer connection, per-thread readers, the matrices."""

    def __init__(self, path: Path, cached_postings: int = CACHED_POSTINGS) -> None:
        self.path = path
        self.postings_limit = cached_postings  # 0: every question's BM25 is FTS5's own OR query
        self.write_lock = threading.Lock()
        self.cache_lock = threading.RLock()
        self.local = threading.local()
        self.all_conns: list[sqlite3.Connection] = []
        self.writer = self._connect()
        self.writer.executescript(SCHEMA)
        self.matrices: dict[int, VectorMatrix] = {}
        self.codes: dict[str, dict[str, int]] = {"kb": {}, "doc": {}}
        self.values: dict[str, list[str]] = {"kb": [], "doc": []}
        self.doc_names: dict[int, str] = {}
        self.seq = 0
        self.df_cache: dict[str, int] = {}  # postings per term, capped; valid for df_seq
        self.df_seq = -1
        self.row_count: int | None = None  # rows of the index (FTS5's N), valid for df_seq
        # (term, column weights, matrix dim) -> TermPostings, least recently used first; valid for df_seq
        self.postings_cache: OrderedDict[tuple[str, str, int], TermPostings] = OrderedDict()
        self.postings_charges: dict[tuple[str, str, int], int] = {}  # what each key counts in cached_postings
        self.cached_postings = 0
        self.sync()

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, timeout=30, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute("PRAGMA busy_timeout=30000")
        self.all_conns.append(conn)
        return conn

    def reader(self) -> sqlite3.Connection:
        """A connection owned by the calling thread, so concurrent searches never share one."""
        conn = getattr(self.local, "conn", None)
        if conn is None:
            conn = self.local.conn = self._connect()
        return conn

    @contextmanager
    def write(self):
        """A write transaction with its own sequence number; the matrices catch up after commit."""
        with self.write_lock:
            conn = self.writer
            conn.execute("BEGIN IMMEDIATE")
            try:
                seq = conn.execute("UPDATE meta SET value = value + 1 WHERE key='seq' RETURNING value")
                yield conn, seq.fetchone()[0]
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
        self.sync()

    @staticmethod
    def upsert(conn: sqlite3.Connection, seq: int, record: dict[str, Any]) -> None:
        """Store a ``chunk_record`` inside a ``write()`` transaction, stamped with its ``seq``."""
        body = record["body"]
        rowid = conn.execute(
            "INSERT INTO chunk(id, kb_id, doc_id, docnm_kwd, available_int, seq, body, vec_field, vec) "
            "VALUES (?,?,?,?,?,?,?,?,?) ON CONFLICT(id) DO UPDATE SET kb_id=excluded.kb_id, "
            "doc_id=excluded.doc_id, docnm_kwd=excluded.docnm_kwd, available_int=excluded.available_int, seq=excluded.seq, "
            "body=excluded.body, vec_field=excluded.vec_field, vec=excluded.vec RETURNING rowid",
            (
                body["id"], body["kb_id"], body.get("doc_id", ""), str(body.get("docnm_kwd", "")), int(body.get("available_int", 1)),
                seq, json.dumps(body, ensure_ascii=False), record["vec_field"], record["vec"],
            ),
        ).fetchone()[0]
        conn.execute("DELETE FROM chunk_fts WHERE rowid = ?", (rowid,))
        conn.execute("INSERT INTO chunk_fts(rowid, title, content, important, question) VALUES (?,?,?,?,?)",
                     (rowid, *fts_values(body)))

    @staticmethod
    def delete_rows(conn: sqlite3.Connection, seq: int, rowids: list[int]) -> None:
        """Delete rows inside a ``write()`` transaction, leaving tombstones so other processes drop them."""
        for start in range(0, len(rowids), 500):
            batch = rowids[start : start + 500]
            marks = ",".join("?" * len(batch))
            conn.execute(f"DELETE FROM chunk WHERE rowid IN ({marks})", batch)
            conn.execute(f"DELETE FROM chunk_fts WHERE rowid IN ({marks})", batch)
            conn.executemany("INSERT INTO tombstone(seq, row_id) VALUES (?, ?)", [(seq, r) for r in batch])

    def _document_frequencies(self, terms: list[str]) -> tuple[dict[str, int], int]:
        """Rows holding each term (counted up to ``MAX_SCORED_POSTINGS + 1``) and all rows,
        remembered until the next write."""
        with self.cache_lock:
            if self.df_seq != self.seq:
                self.df_cache, self.df_seq, self.row_count = {}, self.seq, None
                self.postings_cache.clear()
                self.postings_charges.clear()
                self.cached_postings = 0
            cache = self.df_cache
        conn = self.reader()
        for term in terms:
            if term not in cache:
                cache[term] = conn.execute(
                    "SELECT count(*) FROM (SELECT 1 FROM chunk_fts WHERE chunk_fts MATCH ? LIMIT ?)",
                    (f'"{term}"', MAX_SCORED_POSTINGS + 1)).fetchone()[0]
        if self.row_count is None:
            self.row_count = conn.execute("SELECT count(*) FROM chunk").fetchone()[0]
        return {t: cache[t] for t in terms}, self.row_count

    def affordable_terms(self, terms: list[str]) -> list[str]:
        """The rarest terms whose postings together stay within ``MAX_SCORED_POSTINGS``."""
        counts, _ = self._document_frequencies(terms)
        kept, postings = [], 0
        for term in sorted((t for t in terms if counts[t] > 0), key=lambda t: counts[t]):
            if kept and postings + counts[term] > MAX_SCORED_POSTINGS:
                break
            kept.append(term)
            postings += counts[term]
        return [t for t in terms if t in kept]

    def bm25_ceiling(self, terms: list[str], scored: list[str]) -> float:
        """The BM25 no row reaches for a query of ``terms`` of which ``scored`` are matched.

        Terms no row holds count at their (highest) IDF; common terms left out of the match for
        cost count nowhere, as they earn no row anything. A lone term past the postings cap gets
        the IDF of the cap, slightly above its own.
        """
        counts, rows = self._document_frequencies(terms)
        idfs = [fts5_idf(rows, counts[t]) for t in scored] + [fts5_idf(rows, 0) for t in terms if counts[t] == 0]
        return bm25_bound(idfs, BM25_K1 + 1)

    def bm25(self, text, where: str, params: list, matrix, mask) -> tuple[BM25Hits, float]:
        """Top BM25 rows passing the filter, and the query's BM25 ceiling (``bm25_ceiling``).

        With the in-memory filter columns at hand, the question's BM25 is summed from each
        term's own postings (``term_postings``, kept until the next write), so a term other
        questions asked since the last write costs no FTS5 work at all. Only when a matched row
        is not in the matrix does the exact joined query run.
        """
        terms = query_terms(text.matching_text)
        scored = self.affordable_terms(terms)
        bound = self.bm25_ceiling(terms, scored)
        if not scored:
            return NO_HITS, bound
        weights = column_weights(text.fields)
        if matrix is not None:
            hits = (self._bm25_from_postings(scored, weights, matrix, mask, text.topn) if self.postings_limit > 0
                    else self._bm25_overfetched(scored, weights, matrix, mask, text.topn))
            if hits is not None:
                return hits, bound
        sql = (f"SELECT c.rowid, -bm25(chunk_fts, {weights}) AS s FROM chunk_fts "
               f"JOIN chunk c ON c.rowid = chunk_fts.rowid WHERE chunk_fts MATCH ? AND {where} "
               "ORDER BY s DESC LIMIT ?")
        rows = self.reader().execute(sql, [fts_query(scored), *params, text.topn]).fetchall()
        return BM25Hits.of_rows(rows), bound

    def _bm25_from_postings(self, terms: list[str], weights: str, matrix: VectorMatrix, mask: np.ndarray,
                            topn: int) -> BM25Hits | None:
        """FTS5's BM25 of an OR query is the sum of its terms' own BM25 (each term's IDF times
        its saturated frequency), so the sum over cached postings equals the OR query's score.
        None when a matched row has no slot in ``matrix`` (the caller then asks FTS5 itself)."""
        postings = [self.term_postings(term, weights, matrix) for term in terms]
        slots = np.concatenate([p.slots for p in postings])
        if slots.size == 0:
            return NO_HITS
        if bool((slots < 0).any()) or int(slots.max()) >= mask.size:
            return None
        distinct, totals, rowid_of = summed_by_slot(slots, np.concatenate([p.rowids for p in postings]),
                                                    np.concatenate([p.scores for p in postings]), mask.size)
        passing = np.flatnonzero(mask[distinct])
        if passing.size > topn:
            passing = passing[np.argpartition(-totals[passing], topn - 1)[:topn]]
        passing = passing[np.argsort(-totals[passing], kind="stable")]
        return BM25Hits(rowid_of[passing], totals[passing], distinct[passing])

    def _bm25_overfetched(self, terms: list[str], weights: str, matrix: VectorMatrix, mask: np.ndarray,
                          topn: int) -> BM25Hits | None:
        """FTS5's OR query without the join, ``OVERFETCH``× the rows, filtered in numpy; None when
        too few pass or a row has no slot (the caller then runs the exact joined query)."""
        fetch = OVERFETCH * topn
        rows = self.reader().execute(f"SELECT rowid, -bm25(chunk_fts, {weights}) AS s FROM chunk_fts WHERE "
                                     "chunk_fts MATCH ? ORDER BY s DESC LIMIT ?", (fts_query(terms), fetch)).fetchall()
        hits = BM25Hits.of_rows(rows)
        slots = matrix.slots(hits.rowids)
        if bool((slots < 0).any()) or (slots.size and int(slots.max()) >= mask.size):
            return None
        passes = mask[slots]
        if int(passes.sum()) < topn and len(rows) == fetch:
            return None
        keep = np.flatnonzero(passes)[:topn]
        return BM25Hits(hits.rowids[keep], hits.scores[keep], slots[keep])

    def term_postings(self, term: str, weights: str, matrix: VectorMatrix) -> TermPostings:
        """The rows holding ``term``, their slots in ``matrix`` and their BM25 for the term alone,
        remembered until the next write (least recently used dropped past ``postings_limit``)."""
        key = (term, weights, matrix.dim)
        with self.cache_lock:
            self._document_frequencies([])  # drops the cache when a write came since
            found = self.postings_cache.get(key)
            if found is not None:
                self.postings_cache.move_to_end(key)
                return found
        rows = self.reader().execute(f"SELECT rowid, -bm25(chunk_fts, {weights}) FROM chunk_fts WHERE chunk_fts "
                                     "MATCH ?", (f'"{term}"',)).fetchall()
        rowids = np.fromiter((r for r, _ in rows), dtype=np.int64, count=len(rows))
        with self.cache_lock:
            found = TermPostings(rowids, matrix.slots(rowids),
                                 np.fromiter((s for _, s in rows), dtype=np.float64, count=len(rows)))
            if self.df_seq == self.seq and rowids.size <= self.postings_limit:
                self._keep_postings(key, found, rowids.size)
        return found

    def _keep_postings(self, key: tuple[str, str, int], postings: TermPostings, charge: int) -> None:
        """Cache ``postings`` under ``key``, counted as ``charge`` postings (0 for another word
        of a stem already kept: the arrays are shared), dropping the least recently used past the
        limit. The caller holds ``cache_lock``."""
        if key in self.postings_cache:
            return
        self.postings_cache[key] = postings
        self.postings_charges[key] = charge
        self.cached_postings += charge
        while self.cached_postings > self.postings_limit:
            dropped, _ = self.postings_cache.popitem(last=False)
            self.cached_postings -= self.postings_charges.pop(dropped)

    def remember_postings(self, words: Sequence[str], postings: TermPostings, weights: str, matrix: VectorMatrix,
                          seq: int) -> bool:
        """Keep ``postings`` (read for one of ``words``, which share one FTS5 stem and so match the
        same rows) under every one of them, with their document frequency, as ``term_postings``
        would have one by one; they count once towards the cache's limit. False, keeping nothing,
        once a write came since ``seq``: the caller stops there."""
        with self.cache_lock:
            self._document_frequencies([])  # drops the cache when a write came since
            if self.seq != seq or self.df_seq != seq:
                return False
            for position, word in enumerate(words):
                self._keep_postings((word, weights, matrix.dim), postings, 0 if position else postings.rowids.size)
                self.df_cache.setdefault(word, min(postings.rowids.size, MAX_SCORED_POSTINGS + 1))
            return True

    def slot_mask(self, matrix: VectorMatrix, where: str, params: list, condition: dict, kb_ids) -> np.ndarray:
        """Slots of ``matrix`` passing the search's filters: numpy on the in-memory columns when it can."""
        mask = matrix.live[: matrix.size].copy()
        if set(condition) <= {"kb_id", "doc_id", "available_int"}:
            mask &= _code_mask(matrix.kb[: matrix.size], self.codes["kb"], condition.get("kb_id"), kb_ids)
            mask &= _code_mask(matrix.doc[: matrix.size], self.codes["doc"], condition.get("doc_id"), [])
            if "available_int" in condition:
                wanted = {int(v) for v in as_list(condition["available_int"])}
                available = matrix.available[: matrix.size]
                if wanted == {1}:
                    mask &= available
                elif wanted == {0}:
                    mask &= ~available
            return mask
        allowed = [r for (r,) in self.reader().execute(f"SELECT c.rowid FROM chunk c WHERE {where}", params)]
        keep = np.zeros_like(mask)
        slots = matrix.slots(allowed)
        keep[slots[slots >= 0]] = True
        return mask & keep

    def code(self, kind: str, value: str) -> int:
        """A small integer for a dataset or document id, so filters are numpy comparisons."""
        table = self.codes[kind]
        if value not in table:
            table[value] = len(table)
            self.values[kind].append(value)
        return table[value]

    def sync(self) -> None:
        """Bring the matrices up to the database's current sequence number."""
        conn = self.reader()
        with self.cache_lock:
            current = conn.execute("SELECT value FROM meta WHERE key='seq'").fetchone()[0]
            if current == self.seq:
                return
            dead = conn.execute("SELECT row_id FROM tombstone WHERE seq > ?", (self.seq,)).fetchall()
            for (rowid,) in dead:
                for matrix in self.matrices.values():
                    matrix.remove(rowid)
            changed = conn.execute(
                "SELECT rowid, id, kb_id, doc_id, docnm_kwd, available_int, vec_field, vec FROM chunk "
                "WHERE seq > ?", (self.seq,),
            )
            for rowid, chunk_id, kb_id, doc_id, docnm, available, field_name, blob in changed:
                for matrix in self.matrices.values():
                    matrix.remove(rowid)
                dim = vector_dim(field_name or "")
                if dim is None or blob is None:
                    continue
                matrix = self.matrices.get(dim)
                if matrix is None:
                    matrix = self.matrices[dim] = VectorMatrix(dim, ann_path=self.graph_path(dim))
                vec = np.frombuffer(blob, dtype=np.float32)
                doc = self.code("doc", doc_id)
                self.doc_names[doc] = docnm
                matrix.put(rowid, chunk_id, vec, self.code("kb", kb_id), doc, available == 1)
            self.seq = current

    def graph_path(self, dim: int) -> Path:
        """Where the HNSW graph of the ``dim``-sized vectors is saved, so the search processes and
        a restarted server load the one a process built instead of each building its own."""
        return Path(f"{self.path}.{dim}.hnsw")

    def close(self) -> None:
        for conn in self.all_conns:
            conn.close()
        self.all_conns.clear()


def _code_mask(codes: np.ndarray, table: dict[str, int], wanted: Any, restrict: Sequence[str]) -> np.ndarray | bool:
    """Boolean mask of slots whose code is among the wanted values (True when no filter)."""
    values = as_list(wanted) if wanted is not None else list(restrict)
    if restrict:
        values = [v for v in values if v in set(restrict)]
    if wanted is None and not restrict:
        return True
    wanted_codes = [table[v] for v in values if v in table]
    return np.isin(codes, np.asarray(wanted_codes, dtype=np.int32))


def where_clause(condition: dict, kb_ids: Sequence[str], prefix: str = "") -> tuple[str, list[Any]]:
    """SQL filter for a condition dict and dataset list; unknown keys filter the JSON body."""
    parts, params = [], []
    merged = dict(condition)
    if kb_ids:
        merged["kb_id"] = [k for k in as_list(merged.get("kb_id", kb_ids)) if k in set(kb_ids)]
    by_id = "id" in merged
    for key, value in merged.items():
        values = as_list(value)
        if not values:
            return "0", []
        if key in COLUMN_FIELDS:
            # Looking rows up by id, SQLite must use the id index, not scan a whole dataset's.
            column = f"+{prefix}{key}" if by_id and key != "id" else f"{prefix}{key}"
        elif SAFE_KEY.match(key):
            column = f"json_extract({prefix}body, '$.{key}')"
        else:
            raise DocStoreError(f"Unsupported condition field: {key!r}")
        parts.append(f"{column} IN ({','.join('?' * len(values))})")
        params.extend(values)
    return (" AND ".join(parts) or "1"), params
