"""The embedded default chunk store: SQLite FTS5 (BM25) + exact cosine kNN over an in-memory matrix.

One database file per tenant index under ``data_dir``, in WAL mode so readers keep working while
an ingestion worker writes, and a killed process loses no committed chunk. Full text goes to an
FTS5 table (porter stemming over unicode61); vectors are float32 blobs beside the row and, per
dimension, an L2-normalised in-memory matrix so kNN is one matrix–vector product.

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
from collections.abc import Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from rag.nlp import highlight, tokenize, tokens
from rag.nlp.vector_matrix import VectorMatrix
from rag.utils.doc_store_conn import (
    SCORE,
    TERM_SCORE,
    VECTOR_SCORE,
    DocStoreError,
    MatchExpr,
    OrderByExpr,
    SearchResult,
    as_list,
    fuse_scores,
    parse_field_boosts,
    split_match_exprs,
    vector_dim,
)

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
MAX_QUERY_TERMS = 256
OVERFETCH = 2  # BM25 rows fetched per wanted row before filtering in memory
# FTS5 computes BM25 for every row that matches any term, ~1–2 µs each. Past this many postings
# a question's most common terms are left out of the match (they carry the least IDF), so a
# large index answers in milliseconds; small collections are never affected.
MAX_SCORED_POSTINGS = 8000  # an FTS5 OR of thousands of terms is slow and adds nothing
_SAFE_KEY = re.compile(r"^[A-Za-z0-9_]+$")

SCHEMA = """
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
    title, content, important, question, tokenize='porter unicode61 remove_diacritics 2');
"""


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


@dataclass
class _Legs:
    """Candidates of one index as columns: rowid, matrix slot (-1: none), raw BM25, cosine (nan: none)."""

    rowids: np.ndarray
    slots: np.ndarray
    term: np.ndarray
    cosine: np.ndarray
    matrix: VectorMatrix | None


@dataclass(slots=True)
class _Candidate:
    """One ranked row: where it lives, its raw leg scores and, after fusion, its similarities."""

    index: str
    rowid: int
    term: float = 0.0
    vector: float | None = None
    slot: int = -1
    matrix: VectorMatrix | None = None
    term_sim: float = 0.0
    vector_sim: float = 0.0
    score: float | None = None


@dataclass
class _Ranked:
    """Ranked candidates as columns (best first); a list of ``_Candidate`` on demand."""

    names: list[str]
    matrices: list[VectorMatrix | None]
    owner: np.ndarray
    rowids: np.ndarray
    slots: np.ndarray
    term: np.ndarray
    cosine: np.ndarray
    term_sim: np.ndarray | None
    vector_sim: np.ndarray | None
    score: np.ndarray | None

    def __len__(self) -> int:
        return int(self.rowids.size)

    def __getitem__(self, window: slice) -> list[_Candidate]:
        return [self._candidate(i) for i in range(len(self))[window]]

    def __iter__(self):
        return (self._candidate(i) for i in range(len(self)))

    def _candidate(self, i: int) -> _Candidate:
        cosine = float(self.cosine[i])
        cand = _Candidate(self.names[self.owner[i]], int(self.rowids[i]), term=float(self.term[i]),
                          vector=None if np.isnan(cosine) else cosine, slot=int(self.slots[i]),
                          matrix=self.matrices[self.owner[i]])
        if self.score is not None:
            cand.term_sim, cand.vector_sim = float(self.term_sim[i]), float(self.vector_sim[i])
            cand.score = float(self.score[i])
        return cand

    def memory_rows(self, indexes: dict[str, _Index], start: int, stop: int,
                    select_fields: Sequence[str]) -> list[dict] | None:
        """Rows ``start:stop`` built from the in-memory columns; None when the database is needed."""
        if not select_fields or not set(select_fields) <= set(COLUMN_FIELDS):
            return None
        window = slice(start, stop)
        slots, owners = self.slots[window], self.owner[window]
        if (slots < 0).any() or len(set(owners.tolist())) > 1:
            return None
        if slots.size == 0:
            return []
        idx, matrix = indexes[self.names[owners[0]]], self.matrices[owners[0]]
        docs = matrix.doc[slots].tolist()
        columns = {
            "id": [matrix.ids[s] for s in slots.tolist()],
            "kb_id": [idx.values["kb"][k] for k in matrix.kb[slots].tolist()],
            "doc_id": [idx.values["doc"][d] for d in docs],
            "docnm_kwd": [idx.doc_names.get(d, "") for d in docs],
            "available_int": matrix.available[slots].astype(int).tolist(),
            TERM_SCORE: self.term[window].tolist(),
            VECTOR_SCORE: np.nan_to_num(self.cosine[window]).tolist(),
        }
        if self.score is not None:
            columns.update(term_similarity=self.term_sim[window].tolist(),
                           vector_similarity=self.vector_sim[window].tolist(), **{SCORE: self.score[window].tolist()})
        else:
            columns[SCORE] = [t if np.isnan(c) else c for t, c in zip(columns[TERM_SCORE], self.cosine[window].tolist(),
                                                                      strict=True)]
        names = [n for n in columns if n in select_fields or n == "id" or n not in COLUMN_FIELDS]
        return [dict(zip(names, values, strict=True)) for values in zip(*(columns[n] for n in names), strict=True)]


class _Index:
    """One tenant index: its database file, a writer connection, per-thread readers, the matrices."""

    def __init__(self, path: Path) -> None:
        self.path = path
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

    def affordable_terms(self, terms: list[str]) -> list[str]:
        """The rarest terms whose postings together stay within ``MAX_SCORED_POSTINGS``."""
        if len(terms) <= 1:
            return terms
        with self.cache_lock:
            if self.df_seq != self.seq:
                self.df_cache, self.df_seq = {}, self.seq
            cache = self.df_cache
        conn = self.reader()
        for term in terms:
            if term not in cache:
                cache[term] = conn.execute(
                    "SELECT count(*) FROM (SELECT 1 FROM chunk_fts WHERE chunk_fts MATCH ? LIMIT ?)",
                    (f'"{term}"', MAX_SCORED_POSTINGS + 1)).fetchone()[0]
        kept, postings = [], 0
        for term in sorted((t for t in terms if cache[t] > 0), key=lambda t: cache[t]):
            if kept and postings + cache[term] > MAX_SCORED_POSTINGS:
                break
            kept.append(term)
            postings += cache[term]
        return [t for t in terms if t in kept]

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
                matrix = self.matrices.setdefault(dim, VectorMatrix(dim))
                vec = np.frombuffer(blob, dtype=np.float32)
                doc = self.code("doc", doc_id)
                self.doc_names[doc] = docnm
                matrix.put(rowid, chunk_id, vec, self.code("kb", kb_id), doc, available == 1)
            self.seq = current

    def close(self) -> None:
        for conn in self.all_conns:
            conn.close()
        self.all_conns.clear()


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
        elif _SAFE_KEY.match(key):
            column = f"json_extract({prefix}body, '$.{key}')"
        else:
            raise DocStoreError(f"Unsupported condition field: {key!r}")
        parts.append(f"{column} IN ({','.join('?' * len(values))})")
        params.extend(values)
    return (" AND ".join(parts) or "1"), params


class SqliteConnection:
    """``DocStoreConnection`` over SQLite files in ``data_dir`` (``<index_name>.db`` each)."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = Path(data_dir)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.indexes: dict[str, _Index] = {}
        self.lock = threading.Lock()

    def _path(self, index_name: str) -> Path:
        if not _SAFE_KEY.match(index_name):
            raise DocStoreError(f"Invalid index name: {index_name!r}")
        return self.data_dir / f"{index_name}.db"

    def _index(self, index_name: str, create: bool = False) -> _Index | None:
        with self.lock:
            index = self.indexes.get(index_name)
            if index is None and (create or self._path(index_name).exists()):
                index = self.indexes[index_name] = _Index(self._path(index_name))
            return index

    def create_idx(self, index_name: str, kb_id: str, vector_size: int) -> None:
        index = self._index(index_name, create=True)
        with index.write() as (conn, _):
            conn.execute("INSERT OR REPLACE INTO kb(kb_id, vector_size) VALUES (?, ?)", (kb_id, vector_size))

    def delete_idx(self, index_name: str, kb_id: str) -> None:
        if kb_id:
            if self._index(index_name):
                self.delete({"kb_id": kb_id}, index_name, kb_id)
            return
        with self.lock:
            index = self.indexes.pop(index_name, None)
        if index:
            index.close()
        for suffix in ("", "-wal", "-shm"):
            Path(f"{self._path(index_name)}{suffix}").unlink(missing_ok=True)

    def index_exist(self, index_name: str, kb_id: str) -> bool:
        return self._path(index_name).exists()

    def insert(self, rows: list[dict], index_name: str, kb_id: str) -> list[str]:
        index = self._index(index_name, create=True)
        errors, records = [], []
        for row in rows:
            try:
                records.append(self._record(row, kb_id))
            except (KeyError, ValueError, TypeError) as exc:
                errors.append(f"{row.get('id', '?')}: {exc}")
        with index.write() as (conn, seq):
            for record in records:
                self._upsert(conn, seq, record)
        return errors

    @staticmethod
    def _record(row: dict, kb_id: str) -> dict[str, Any]:
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

    @staticmethod
    def _upsert(conn: sqlite3.Connection, seq: int, record: dict[str, Any]) -> None:
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

    def update(self, condition: dict, new_value: dict, index_name: str, kb_id: str) -> bool:
        index = self._index(index_name)
        if index is None:
            return False
        where, params = where_clause(condition, [kb_id] if kb_id else [])
        with index.write() as (conn, seq):
            found = conn.execute(f"SELECT body, vec_field, vec FROM chunk WHERE {where}", params).fetchall()
            for body_json, vec_field, blob in found:
                row = json.loads(body_json)
                if vec_field and blob is not None:
                    row[vec_field] = np.frombuffer(blob, dtype=np.float32)
                row.update(new_value)
                self._upsert(conn, seq, self._record(row, kb_id))
        return bool(found)

    def delete(self, condition: dict, index_name: str, kb_id: str) -> int:
        index = self._index(index_name)
        if index is None:
            return 0
        where, params = where_clause(condition, [kb_id] if kb_id else [])
        with index.write() as (conn, seq):
            rowids = [r for (r,) in conn.execute(f"SELECT rowid FROM chunk WHERE {where}", params)]
            for start in range(0, len(rowids), 500):
                batch = rowids[start : start + 500]
                marks = ",".join("?" * len(batch))
                conn.execute(f"DELETE FROM chunk WHERE rowid IN ({marks})", batch)
                conn.execute(f"DELETE FROM chunk_fts WHERE rowid IN ({marks})", batch)
                conn.executemany("INSERT INTO tombstone(seq, row_id) VALUES (?, ?)", [(seq, r) for r in batch])
        return len(rowids)

    def get(self, chunk_id: str, index_name: str, kb_ids: list[str]) -> dict | None:
        index = self._index(index_name)
        if index is None:
            return None
        where, params = where_clause({"id": chunk_id}, kb_ids)
        found = index.reader().execute(f"SELECT body, vec_field, vec FROM chunk WHERE {where}", params)
        hit = found.fetchone()
        return None if hit is None else self._row(*hit, select_fields=())

    @staticmethod
    def _row(body_json: str, vec_field: str | None, blob: bytes | None, select_fields: Sequence[str]) -> dict:
        body = json.loads(body_json)
        if vec_field and blob is not None:
            body[vec_field] = np.frombuffer(blob, dtype=np.float32).tolist()
        if select_fields and "*" not in select_fields:
            body = {k: v for k, v in body.items() if k in select_fields or k == "id"}
        return body

    def search(
        self,
        select_fields: Sequence[str],
        highlight_fields: Sequence[str],
        condition: dict,
        match_exprs: Sequence[MatchExpr],
        order_by: OrderByExpr | None,
        offset: int,
        limit: int,
        index_names: list[str],
        kb_ids: list[str],
        agg_fields: list[str] | None = None,
    ) -> SearchResult:
        indexes = {name: idx for name in index_names if (idx := self._index(name)) is not None}
        for idx in indexes.values():
            idx.sync()
        text, dense, fusion = split_match_exprs(match_exprs)
        where, params = where_clause(condition, kb_ids, prefix="c.")
        if text is None and dense is None:
            candidates = self._filtered(indexes, where, params, order_by)
        else:
            candidates = self._ranked(indexes, where, params, condition, kb_ids, text, dense, fusion)
        stop = offset + limit if limit > 0 else len(candidates)
        rows = (candidates.memory_rows(indexes, offset, stop, select_fields) if isinstance(candidates, _Ranked)
                else None)
        if rows is None:
            rows = self._fetch(indexes, candidates[offset:stop], select_fields)
        query_tokens = tokens(text.matching_text) if text else []
        highlights = {
            row["id"]: highlight(str(row.get(highlight_fields[0], "")), query_tokens)
            for row in rows if highlight_fields and query_tokens
        }
        aggs = {f: self._aggregate(indexes, candidates, f) for f in agg_fields or []}
        return SearchResult(total=len(candidates), rows=rows, highlights=highlights, aggregations=aggs)

    @staticmethod
    def _filtered(indexes: dict[str, _Index], where: str, params: list, order_by: OrderByExpr | None) -> list:
        """All rows passing the filter, in ``order_by`` order (then insertion order)."""
        rows = []
        sort_keys = order_by.fields if order_by else ()
        body = "c.body" if sort_keys else "'{}'"  # bodies are parsed only when sorting needs them
        for name, idx in indexes.items():
            found = idx.reader().execute(f"SELECT c.rowid, {body} FROM chunk c WHERE {where}", params)
            rows.extend((name, rowid, json.loads(text)) for rowid, text in found)
        for key, descending in reversed(sort_keys):
            rows.sort(key=lambda r, k=key: _sort_key(r[2].get(k)), reverse=descending)
        return [_Candidate(name, rowid) for name, rowid, _ in rows]

    def _ranked(self, indexes, where, params, condition, kb_ids, text, dense, fusion) -> _Ranked:
        """Both legs independently, unioned; every candidate gets its exact cosine when known.

        Candidates stay numpy columns through fusion and slicing; only the rows asked for become
        dicts, which is what keeps a 2×1024-candidate query within milliseconds.
        """
        query_vec = None
        if dense is not None:
            query_vec = np.asarray(dense.embedding_data, dtype=np.float32)
            query_vec = query_vec / max(float(np.linalg.norm(query_vec)), 1e-12)
        legs = [self._index_candidates(idx, where, params, condition, kb_ids, text, dense, query_vec)
                for idx in indexes.values()]
        owner = np.concatenate([np.full(leg.rowids.size, i) for i, leg in enumerate(legs)] or [np.zeros(0, int)])
        rowids, slots, term, cosine = (np.concatenate([getattr(leg, f) for leg in legs]) if legs else np.zeros(0)
                                       for f in ("rowids", "slots", "term", "cosine"))
        names, matrices = list(indexes), [leg.matrix for leg in legs]
        term_sim = vector_sim = score = None
        if fusion is not None:
            term_sim, vector_sim, score = fuse_scores(term, np.nan_to_num(cosine), fusion.vector_weight)
            order = np.argsort(-score, kind="stable")
            order = order[score[order] >= fusion.min_score][: fusion.topn]
        else:
            order = np.argsort(-(term if dense is None else np.nan_to_num(cosine)), kind="stable")
        fused = [None if column is None else column[order] for column in (term_sim, vector_sim, score)]
        return _Ranked(names, matrices, owner[order], rowids[order], slots[order], term[order], cosine[order], *fused)

    def _index_candidates(self, idx, where, params, condition, kb_ids, text, dense, query_vec) -> _Legs:
        """One index's union of the BM25 top and the kNN top, as columns."""
        dim = vector_dim(dense.vector_column_name) if dense is not None else None
        matrix = idx.matrices.get(dim) if dim else None
        if matrix is not None and query_vec is not None and query_vec.shape == (dim,):
            with idx.cache_lock:
                mask = self._mask(idx, matrix, where, params, condition, kb_ids)
                scores = matrix.scores(query_vec)
        else:
            matrix = mask = scores = None
        hits = self._bm25(idx, text, where, params, matrix, mask) if text is not None else []
        text_rowids = np.array([r for r, _ in hits], dtype=np.int64)
        text_scores = np.array([s for _, s in hits], dtype=np.float64)
        if scores is None:
            return _Legs(text_rowids, np.full(text_rowids.size, -1), text_scores,
                         np.full(text_rowids.size, np.nan), None)
        text_slots = matrix.slots(text_rowids.tolist())
        text_slots[text_slots >= scores.size] = -1  # rows a concurrent write added after the snapshot
        top = VectorMatrix.top(scores, dense.topn, mask)
        vector_only = top[~np.isin(top, text_slots)]
        slots = np.concatenate([text_slots, vector_only])
        cosine = np.where(slots >= 0, scores[np.maximum(slots, 0)], np.nan).astype(np.float64)
        return _Legs(np.concatenate([text_rowids, matrix.rowids[vector_only]]), slots,
                     np.concatenate([text_scores, np.zeros(vector_only.size)]), cosine, matrix)

    @staticmethod
    def _mask(idx: _Index, matrix: VectorMatrix, where: str, params: list, condition: dict, kb_ids) -> np.ndarray:
        """Slots passing the search's filters: numpy on the in-memory columns when it can."""
        mask = matrix.live[: matrix.size].copy()
        if set(condition) <= {"kb_id", "doc_id", "available_int"}:
            mask &= _code_mask(matrix.kb[: matrix.size], idx.codes["kb"], condition.get("kb_id"), kb_ids)
            mask &= _code_mask(matrix.doc[: matrix.size], idx.codes["doc"], condition.get("doc_id"), [])
            if "available_int" in condition:
                wanted = {int(v) for v in as_list(condition["available_int"])}
                available = matrix.available[: matrix.size]
                if wanted == {1}:
                    mask &= available
                elif wanted == {0}:
                    mask &= ~available
            return mask
        allowed = [r for (r,) in idx.reader().execute(f"SELECT c.rowid FROM chunk c WHERE {where}", params)]
        keep = np.zeros_like(mask)
        slots = matrix.slots(allowed)
        keep[slots[slots >= 0]] = True
        return mask & keep

    @staticmethod
    def _bm25(idx: _Index, text, where: str, params: list, matrix, mask) -> list[tuple[int, float]]:
        """Top BM25 rows passing the filter.

        With the in-memory filter columns at hand, FTS5 ranks without joining the chunk table
        (three times faster) and an over-fetch is filtered in numpy; only when that leaves too
        few rows does the exact joined query run.
        """
        query = fts_query(idx.affordable_terms(query_terms(text.matching_text)))
        if not query:
            return []
        boosts = parse_field_boosts(text.fields)
        weights = ",".join(str(max((b for f, b in boosts.items() if FIELD_TO_COLUMN.get(f) == col), default=0.0))
                           for col in FTS_COLUMNS)
        conn = idx.reader()
        if matrix is not None:
            fetch = OVERFETCH * text.topn
            raw = conn.execute(f"SELECT rowid, -bm25(chunk_fts, {weights}) AS s FROM chunk_fts "
                               "WHERE chunk_fts MATCH ? ORDER BY s DESC LIMIT ?", (query, fetch)).fetchall()
            slots = matrix.slots([r for r, _ in raw])
            slots[slots >= mask.size] = -1
            passes = (slots >= 0) & mask[np.maximum(slots, 0)] if raw else np.zeros(0, dtype=bool)
            if bool((slots >= 0).all()) and (int(passes.sum()) >= text.topn or len(raw) < fetch):
                return [hit for hit, ok in zip(raw, passes.tolist(), strict=True) if ok][: text.topn]
        sql = (f"SELECT c.rowid, -bm25(chunk_fts, {weights}) AS s FROM chunk_fts "
               f"JOIN chunk c ON c.rowid = chunk_fts.rowid WHERE chunk_fts MATCH ? AND {where} "
               "ORDER BY s DESC LIMIT ?")
        return conn.execute(sql, [query, *params, text.topn]).fetchall()

    @staticmethod
    def _fetch(indexes: dict[str, _Index], page: list[_Candidate], select_fields: Sequence[str]) -> list[dict]:
        """The page's rows: from memory when only filter columns are asked for, else from SQLite."""
        columns_only = bool(select_fields) and set(select_fields) <= set(COLUMN_FIELDS)
        wanted = [f for f in COLUMN_FIELDS if f in select_fields or f == "id"]
        loaded: dict[tuple[str, int], dict] = {}
        missing: dict[str, list[int]] = {}
        for cand in page:
            if columns_only and cand.slot >= 0 and cand.matrix is not None:
                loaded[(cand.index, cand.rowid)] = _memory_row(indexes[cand.index], cand, wanted)
            else:
                missing.setdefault(cand.index, []).append(cand.rowid)
        for name, rowids in missing.items():
            for start in range(0, len(rowids), 30000):
                batch = rowids[start : start + 30000]
                found = indexes[name].reader().execute(
                    f"SELECT rowid, body, vec_field, vec FROM chunk WHERE rowid IN ({','.join('?' * len(batch))})",
                    batch)
                for rowid, body, vec_field, blob in found:
                    loaded[(name, rowid)] = SqliteConnection._row(body, vec_field, blob, select_fields)
        rows = []
        for cand in page:
            row = loaded.get((cand.index, cand.rowid))
            if row is None:
                continue
            row[TERM_SCORE], row[VECTOR_SCORE] = cand.term, cand.vector or 0.0
            if cand.score is not None:
                row.update({"term_similarity": cand.term_sim, "vector_similarity": cand.vector_sim, SCORE: cand.score})
            else:
                row[SCORE] = cand.term if cand.vector is None else cand.vector
            rows.append(row)
        return rows

    @staticmethod
    def _aggregate(indexes: dict[str, _Index], candidates: list[_Candidate], field: str) -> list[tuple[str, int]]:
        if not _SAFE_KEY.match(field):
            raise DocStoreError(f"Unsupported aggregation field: {field!r}")
        counts: dict[str, int] = {}
        column = field if field in COLUMN_FIELDS else f"json_extract(body, '$.{field}')"
        by_index: dict[str, list[int]] = {}
        for cand in candidates:
            by_index.setdefault(cand.index, []).append(cand.rowid)
        for name, rowids in by_index.items():
            for start in range(0, len(rowids), 30000):
                batch = rowids[start : start + 30000]
                found = indexes[name].reader().execute(
                    f"SELECT {column}, count(*) FROM chunk WHERE rowid IN ({','.join('?' * len(batch))}) "
                    f"GROUP BY 1", batch)
                for value, count in found:
                    counts[str(value)] = counts.get(str(value), 0) + count
        return sorted(counts.items(), key=lambda kv: kv[1], reverse=True)

    def get_total(self, result: SearchResult) -> int:
        return result.total

    def health(self) -> dict:
        return {"type": "sqlite", "status": "green", "data_dir": str(self.data_dir), "indexes": len(self.indexes)}

    def close(self) -> None:
        with self.lock:
            for index in self.indexes.values():
                index.close()
            self.indexes.clear()


def _code_mask(codes: np.ndarray, table: dict[str, int], wanted: Any, restrict: Sequence[str]) -> np.ndarray | bool:
    """Boolean mask of slots whose code is among the wanted values (True when no filter)."""
    values = as_list(wanted) if wanted is not None else list(restrict)
    if restrict:
        values = [v for v in values if v in set(restrict)]
    if wanted is None and not restrict:
        return True
    wanted_codes = [table[v] for v in values if v in table]
    return np.isin(codes, np.asarray(wanted_codes, dtype=np.int32))


def _sort_key(value: Any) -> tuple[bool, Any]:
    """Missing values sort first (ascending) without comparing None to a value."""
    return (value is not None, value if value is not None else 0)


def _memory_row(idx: _Index, cand: _Candidate, wanted: list[str]) -> dict[str, Any]:
    """A row's filter columns read from the in-memory matrix instead of the database."""
    matrix, slot = cand.matrix, cand.slot
    doc = int(matrix.doc[slot])
    values = {"id": matrix.ids[slot], "kb_id": idx.values["kb"][int(matrix.kb[slot])],
              "doc_id": idx.values["doc"][doc], "docnm_kwd": idx.doc_names.get(doc, ""),
              "available_int": int(matrix.available[slot])}
    return {k: values[k] for k in wanted}
