"""The embedded default chunk store: SQLite FTS5 (BM25) + exact cosine kNN, as a ``DocStoreConnection``.

This module turns the store interface (insert/update/delete/get/search) into work on the
per-tenant index files of ``rag.utils.sqlite_index``: it merges the BM25 and kNN legs of every
index a search names, fuses and pages them, and builds only the rows asked for. Candidates stay
numpy columns until then, which is what keeps a large hybrid query within milliseconds.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from rag.nlp import highlight, tokens
from rag.nlp.feedback import feedback_similarity
from rag.nlp.similarity import fuse, term_similarities
from rag.nlp.vector_matrix import VectorMatrix
from rag.utils.doc_store_conn import (
    SCORE,
    TERM_SCORE,
    VECTOR_SCORE,
    DocStoreError,
    FusionExpr,
    MatchDenseExpr,
    MatchExpr,
    OrderByExpr,
    SearchResult,
    query_vector,
    split_match_exprs,
    vector_dim,
)
from rag.utils.postings_warmup import PostingsWarmer
from rag.utils.sqlite_index import (
    CACHED_POSTINGS,
    COLUMN_FIELDS,
    NO_HITS,
    SAFE_KEY,
    SqliteIndex,
    chunk_record,
    stored_row,
    where_clause,
)

log = logging.getLogger(__name__)

READ_AHEAD_INDEXES = 4  # indexes whose postings a new search process reads ahead when it starts
WARMER_STOP_SECONDS = 5.0  # an index is closed only after its read-ahead has let go of it (one FTS5 query)


class _UnitQuery:
    """The dense match's vector scaled to unit length, read once and only when first asked for,
    so the text legs run while a vector still being computed arrives (None: no dense match)."""

    def __init__(self, dense: MatchDenseExpr | None) -> None:
        self._dense = dense
        self._vector: np.ndarray | None = None

    def __call__(self) -> np.ndarray | None:
        if self._vector is None and self._dense is not None:
            self._vector = query_vector(self._dense, unit=True)
        return self._vector


@dataclass
class _Legs:
    """Candidates of one index as columns: rowid, matrix slot (-1: none), raw BM25, cosine (nan: none),
    and ``term_similarity`` (BM25 over this index's ceiling for the query, ``rag.nlp.similarity``)."""

    rowids: np.ndarray
    slots: np.ndarray
    term: np.ndarray
    cosine: np.ndarray
    matrix: VectorMatrix | None
    term_sim: np.ndarray


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

    def memory_rows(self, indexes: dict[str, SqliteIndex], start: int, stop: int,
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



class SqliteConnection:
    """``DocStoreConnection`` over SQLite files in ``data_dir`` (``<index_name>.db`` each)."""

    ranks_then_reads_the_page = True  # candidates stay columns; only the page's rows are read

    def __init__(self, data_dir: Path, cached_postings: int = CACHED_POSTINGS, warm_postings: bool = False) -> None:
        """``cached_postings``: per index, the term postings a search may reuse until the next
        write (``SqliteIndex.term_postings``); 0 leaves every question's BM25 to FTS5.
        ``warm_postings``: read an index's postings ahead once it is quiet (``PostingsWarmer``),
        starting now, in a background thread, with the most recently written indexes
        (``read_ahead``): for the processes whose only job is searching."""
        self.data_dir = Path(data_dir)
        self.cached_postings = cached_postings
        self.warm_postings = warm_postings
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.indexes: dict[str, SqliteIndex] = {}
        self.warmers: dict[str, PostingsWarmer] = {}
        self.lock = threading.Lock()
        if warm_postings:
            threading.Thread(target=self.read_ahead, name="ragline-postings-warmup", daemon=True).start()

    def read_ahead(self, indexes: int = READ_AHEAD_INDEXES) -> None:
        """Open the ``indexes`` most recently written index files and read their postings ahead,
        one after another (blocking), so the first questions after a start find them."""
        files = sorted(self.data_dir.glob("*.db"), key=lambda path: path.stat().st_mtime, reverse=True)
        for path in files[:indexes]:
            if not self.warm_postings:  # closing
                return
            try:
                index = self._index(path.stem)
            except Exception:  # noqa: BLE001 - a file that cannot be opened is some search's error to report
                log.warning("could not open %s to read its postings ahead", path, exc_info=True)
                continue
            warmer = self._warmer(path.stem, index) if index is not None else None
            if warmer is not None:
                warmer.maybe_start()
                warmer.join()

    def _path(self, index_name: str) -> Path:
        if not SAFE_KEY.match(index_name):
            raise DocStoreError(f"Invalid index name: {index_name!r}")
        return self.data_dir / f"{index_name}.db"

    def _index(self, index_name: str, create: bool = False) -> SqliteIndex | None:
        with self.lock:
            index = self.indexes.get(index_name)
            if index is None and (create or self._path(index_name).exists()):
                index = self.indexes[index_name] = SqliteIndex(self._path(index_name), self.cached_postings)
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
            warmer = self.warmers.pop(index_name, None)
        if warmer:
            warmer.stop(wait=WARMER_STOP_SECONDS)
        if index:
            index.close()
        path = self._path(index_name)
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)
        for graph_file in path.parent.glob(f"{path.name}.*.hnsw*"):  # SqliteIndex.graph_path's files
            graph_file.unlink(missing_ok=True)

    def index_exist(self, index_name: str, kb_id: str) -> bool:
        return self._path(index_name).exists()

    def insert(self, rows: list[dict], index_name: str, kb_id: str) -> list[str]:
        index = self._index(index_name, create=True)
        errors, records = [], []
        for row in rows:
            try:
                records.append(chunk_record(row, kb_id))
            except (KeyError, ValueError, TypeError) as exc:
                errors.append(f"{row.get('id', '?')}: {exc}")
        with index.write() as (conn, seq):
            for record in records:
                index.upsert(conn, seq, record)
        return errors

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
                index.upsert(conn, seq, chunk_record(row, kb_id))
        return bool(found)

    def delete(self, condition: dict, index_name: str, kb_id: str) -> int:
        index = self._index(index_name)
        if index is None:
            return 0
        where, params = where_clause(condition, [kb_id] if kb_id else [])
        with index.write() as (conn, seq):
            rowids = [r for (r,) in conn.execute(f"SELECT rowid FROM chunk WHERE {where}", params)]
            index.delete_rows(conn, seq, rowids)
        return len(rowids)

    def get(self, chunk_id: str, index_name: str, kb_ids: list[str]) -> dict | None:
        index = self._index(index_name)
        if index is None:
            return None
        where, params = where_clause({"id": chunk_id}, kb_ids)
        found = index.reader().execute(f"SELECT body, vec_field, vec FROM chunk WHERE {where}", params)
        hit = found.fetchone()
        return None if hit is None else stored_row(*hit, select_fields=())

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
        for name, idx in indexes.items():
            idx.sync()
            if self.warm_postings and (warmer := self._warmer(name, idx)) is not None:
                warmer.maybe_start()
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
    def _filtered(indexes: dict[str, SqliteIndex], where: str, params: list, order_by: OrderByExpr | None) -> list:
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
        unit_query = _UnitQuery(dense)
        legs = [self._index_candidates(idx, where, params, condition, kb_ids, text, dense, unit_query)
                for idx in indexes.values()]
        query_vec = unit_query()
        owner = np.concatenate([np.full(leg.rowids.size, i) for i, leg in enumerate(legs)] or [np.zeros(0, int)])
        rowids, slots, term, cosine, term_sim = (
            np.concatenate([getattr(leg, f) for leg in legs]) if legs else np.zeros(0)
            for f in ("rowids", "slots", "term", "cosine", "term_sim"))
        names, matrices = list(indexes), [leg.matrix for leg in legs]
        vector_sim = score = None
        if fusion is not None:
            vector_sim = np.nan_to_num(cosine)
            score = self._fused(fusion, term_sim, vector_sim, query_vec, owner, slots, matrices)
            order = np.argsort(-score, kind="stable")
            order = order[score[order] >= fusion.min_score][: fusion.topn]
        else:
            order = np.argsort(-(term if dense is None else np.nan_to_num(cosine)), kind="stable")
        fused = [None] * 3 if score is None else [term_sim[order], vector_sim[order], score[order]]
        return _Ranked(names, matrices, owner[order], rowids[order], slots[order], term[order], cosine[order], *fused)

    @staticmethod
    def _fused(fusion: FusionExpr, term_sim: np.ndarray, vector_sim: np.ndarray, query_vec: np.ndarray | None,
               owner: np.ndarray, slots: np.ndarray, matrices: list) -> np.ndarray:
        """``similarity`` of every candidate: with feedback when it is asked for and applies."""
        if fusion.feedback > 0 and query_vec is not None:
            def vector_of(i: int) -> np.ndarray | None:
                matrix = matrices[owner[i]]
                return None if matrix is None or slots[i] < 0 else matrix.vectors(np.array([slots[i]]))[0]

            def cosines_with(moved: np.ndarray) -> np.ndarray:
                asked = np.full(slots.size, np.nan)
                for i, matrix in enumerate(matrices):
                    if matrix is not None and (mine := owner == i).any():
                        asked[mine] = matrix.cosines(moved, slots[mine])
                return asked

            score = feedback_similarity(term_sim, vector_sim, query_vec, fusion.vector_weight, vector_of,
                                        cosines_with, fusion.feedback)
            if score is not None:
                return score
        return fuse(term_sim, vector_sim, fusion.vector_weight)

    def _index_candidates(self, idx, where, params, condition, kb_ids, text, dense, unit_query: _UnitQuery
                          ) -> _Legs:
        """One index's union of the BM25 top and the kNN top, as columns.

        The text leg runs before the question's vector is read: a vector still being computed
        (``MatchDenseExpr``) is embedded meanwhile on another core."""
        dim = vector_dim(dense.vector_column_name) if dense is not None else None
        matrix = idx.matrices.get(dim) if dim else None
        mask = None
        if matrix is not None:
            with idx.cache_lock:
                mask, masked_at = idx.slot_mask(matrix, where, params, condition, kb_ids), idx.seq
        hits, ceiling = idx.bm25(text, where, params, matrix, mask) if text is not None else (NO_HITS, 0.0)
        query_vec = unit_query()
        if matrix is not None and query_vec is not None and query_vec.shape == (dim,):
            with idx.cache_lock:
                if idx.seq != masked_at:  # a write landed during the text leg: the kNN sees it whole
                    mask = idx.slot_mask(matrix, where, params, condition, kb_ids)
                top, top_cosines, every = matrix.scored_nearest(query_vec, dense.topn, mask)
                size = matrix.size
        else:
            matrix = None
        text_sims = term_similarities(hits.scores, ceiling)
        if matrix is None:
            return _Legs(hits.rowids, np.full(hits.rowids.size, -1), hits.scores,
                         np.full(hits.rowids.size, np.nan), None, text_sims)
        text_slots = matrix.slots(hits.rowids) if hits.slots is None else hits.slots.copy()
        text_slots[text_slots >= size] = -1  # rows a concurrent write added after the snapshot
        in_text = matrix.marked(text_slots)[top]  # np.isin's sort cost 16-100 µs; a mark per slot 3-22
        vector_only, vector_only_cosines = top[~in_text], top_cosines[~in_text]
        slots = np.concatenate([text_slots, vector_only])
        cosine = np.concatenate([matrix.cosines(query_vec, text_slots, every), vector_only_cosines])
        return _Legs(np.concatenate([hits.rowids, matrix.rowids[vector_only]]), slots,
                     np.concatenate([hits.scores, np.zeros(vector_only.size)]), cosine, matrix,
                     np.concatenate([text_sims, np.zeros(vector_only.size)]))

    @staticmethod
    def _fetch(indexes: dict[str, SqliteIndex], page: list[_Candidate], select_fields: Sequence[str]) -> list[dict]:
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
                    loaded[(name, rowid)] = stored_row(body, vec_field, blob, select_fields)
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
    def _aggregate(indexes: dict[str, SqliteIndex], candidates: list[_Candidate], field: str) -> list[tuple[str, int]]:
        if not SAFE_KEY.match(field):
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

    def _warmer(self, index_name: str, index: SqliteIndex) -> PostingsWarmer | None:
        """The index's read-ahead; None once the store is closing."""
        with self.lock:
            if not self.warm_postings:
                return None
            warmer = self.warmers.get(index_name)
            if warmer is None or warmer.index is not index:
                warmer = self.warmers[index_name] = PostingsWarmer(index)
            return warmer

    def close(self) -> None:
        with self.lock:
            self.warm_postings = False  # no reading ahead starts after this
            warmers, self.warmers = list(self.warmers.values()), {}
        for warmer in warmers:
            warmer.stop(wait=WARMER_STOP_SECONDS)
        with self.lock:
            for index in self.indexes.values():
                index.close()
            self.indexes.clear()


def _sort_key(value: Any) -> tuple[bool, Any]:
    """Missing values sort first (ascending) without comparing None to a value."""
    return (value is not None, value if value is not None else 0)


def _memory_row(idx: SqliteIndex, cand: _Candidate, wanted: list[str]) -> dict[str, Any]:
    """A row's filter columns read from the in-memory matrix instead of the database."""
    matrix, slot = cand.matrix, cand.slot
    doc = int(matrix.doc[slot])
    values = {"id": matrix.ids[slot], "kb_id": idx.values["kb"][int(matrix.kb[slot])],
              "doc_id": idx.values["doc"][doc], "docnm_kwd": idx.doc_names.get(doc, ""),
              "available_int": int(matrix.available[slot])}
    return {k: values[k] for k in wanted}
