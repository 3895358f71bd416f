"""``DocStoreConnection`` over Elasticsearch 8/9 with the official client.

One index per tenant, created from ``conf/mapping.json``; its dynamic template maps any
``q_<dim>_vec`` to a cosine ``dense_vector`` so every embedding dimension works without a fixed
list. Writes refresh before returning, so a chunk added through the API is searchable when the
call returns. Connection errors and timeouts are retried with back-off on a fresh client.

A ranked search sends the text leg, the kNN leg and the text leg's term statistics in one
``_msearch``. The text leg is ``combined_fields`` (BM25F: field weights scale term frequencies,
one IDF per term, as FTS5 scores the SQLite backend; it never parses user text as query syntax)
with DFS so IDF is the same on every shard. ``term_similarity`` is its score over the query's
BM25 ceiling, worked out from the statistics; ``vector_similarity`` is the raw cosine (ES
reports a kNN score as ``(1 + cos) / 2``; it is mapped back). Both, and their weighted sum,
follow ``rag.nlp.similarity`` exactly as the SQLite backend does.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
from elasticsearch import ApiError, ConnectionError, ConnectionTimeout, Elasticsearch, NotFoundError

from rag.nlp import highlight
from rag.nlp import tokens as text_tokens
from rag.nlp.feedback import feedback_similarity
from rag.nlp.similarity import TERM_SIM, VECTOR_SIM, bm25_bound, fuse_rows, lucene_idf, term_similarities
from rag.utils.doc_store_conn import (
    SCORE,
    TERM_SCORE,
    VECTOR_SCORE,
    DocStoreError,
    FusionExpr,
    MatchDenseExpr,
    MatchExpr,
    MatchTextExpr,
    OrderByExpr,
    SearchResult,
    as_list,
    parse_field_boosts,
    query_vector,
    split_match_exprs,
    vector_dim,
)

log = logging.getLogger(__name__)
MAPPING_PATH = Path(__file__).resolve().parents[2] / "conf" / "mapping.json"
# Keyword fields are matched through their tokenised twin, which is the analysed text field.
TEXT_FIELD_FOR = {"important_kwd": "important_tks", "question_kwd": "question_tks", "docnm_kwd": "title_tks",
                  "content_with_weight": "content_ltks"}
MAX_QUERY_CHARS = 8000  # ES caps clause counts; the queryer already sends at most 64 terms
T = TypeVar("T")


def build_filter(condition: dict, kb_ids: Sequence[str]) -> list[dict]:
    """ES ``bool.filter`` clauses: one ``terms`` per condition key, plus the dataset list."""
    clauses = [{"terms": {key: as_list(value)}} for key, value in condition.items()]
    if kb_ids:
        clauses.append({"terms": {"kb_id": list(kb_ids)}})
    return clauses


def text_fields(expr: MatchTextExpr) -> dict[str, float]:
    """Analysed field → weight of the text leg (``combined_fields`` takes weights of at least 1)."""
    boosts: dict[str, float] = {}
    for name, boost in parse_field_boosts(expr.fields).items():
        if boost > 0:
            field_name = TEXT_FIELD_FOR.get(name, name)
            boosts[field_name] = max(boosts.get(field_name, 0.0), boost, 1.0)
    return boosts


def query_words(expr: MatchTextExpr) -> list[str]:
    """The words the text leg searches, in order, capped in characters like the query itself."""
    kept, size = [], 0
    for word in text_tokens(expr.matching_text):
        size += len(word) + 1
        if size > MAX_QUERY_CHARS:
            break
        kept.append(word)
    return kept


def text_query(expr: MatchTextExpr, filters: list[dict]) -> dict:
    """The BM25 leg: ``combined_fields`` (BM25F) over the weighted analysed fields, terms ORed."""
    fields = [f"{name}^{boost:g}" for name, boost in text_fields(expr).items()]
    match = {"combined_fields": {"query": " ".join(query_words(expr)), "fields": fields, "operator": "or"}}
    return {"bool": {"must": [match], "filter": filters}}


def term_stats_query(expr: MatchTextExpr) -> dict:
    """Rows per field and, per distinct word and field, rows holding it: what the text leg's
    IDF is computed from (all rows of the indexes, as DFS sees them, not just the filtered)."""
    fields = list(text_fields(expr))
    aggs: dict[str, dict] = {f"n{j}": {"filter": {"exists": {"field": f}}} for j, f in enumerate(fields)}
    for i, word in enumerate(dict.fromkeys(query_words(expr))):
        for j, f in enumerate(fields):
            aggs[f"df{i}_{j}"] = {"filter": {"match": {f: word}}}
    return {"size": 0, "track_total_hits": True, "query": {"match_all": {}}, "aggs": aggs}


def text_ceiling(expr: MatchTextExpr, stats: dict) -> float:
    """The query's BM25 ceiling from ``term_stats_query``'s reply.

    ``combined_fields`` takes a term's document frequency and the row count as the largest over
    its fields; Lucene's term factor stays below 1, so each word adds its IDF. Repeated words
    count as often as the query repeats them, as they are scored.
    """
    aggs = stats.get("aggregations", {})
    fields = list(text_fields(expr))
    rows = max([int(aggs.get(f"n{j}", {}).get("doc_count", 0)) for j in range(len(fields))], default=0)
    order = {word: i for i, word in enumerate(dict.fromkeys(query_words(expr)))}
    idfs = []
    for word in query_words(expr):
        df = max([int(aggs.get(f"df{order[word]}_{j}", {}).get("doc_count", 0)) for j in range(len(fields))],
                 default=0)
        idfs.append(lucene_idf(rows, df))
    return bm25_bound(idfs, 1.0)


def knn_query(expr: MatchDenseExpr, filters: list[dict]) -> dict:
    return {
        "field": expr.vector_column_name,
        "query_vector": query_vector(expr).tolist(),
        "k": expr.topn,
        "num_candidates": min(max(expr.topn * 2, 100), 10000),
        "filter": {"bool": {"filter": filters}},
    }


class ESConnection:
    """Elasticsearch chunk store; ``client_factory`` lets tests plug in a fake transport."""

    ranks_then_reads_the_page = False  # each leg's hits carry the selected fields of every candidate

    def __init__(self, hosts: list[str], *, max_retries: int = 3, request_timeout: float = 30,
                 refresh: str = "true", mapping_path: Path = MAPPING_PATH,
                 client_factory: Callable[[list[str]], Elasticsearch] | None = None) -> None:
        self.hosts = hosts
        self.max_retries = max_retries
        self.refresh = refresh
        self.mapping = json.loads(Path(mapping_path).read_text(encoding="utf-8"))
        self.client_factory = client_factory or (
            lambda h: Elasticsearch(h, request_timeout=request_timeout, retry_on_timeout=True, max_retries=1))
        self.lock = threading.Lock()
        self.client = self.client_factory(hosts)

    def _call(self, action: Callable[[Elasticsearch], T]) -> T:
        """Runs ``action`` against the client, reconnecting and retrying on transport failures."""
        for attempt in range(self.max_retries + 1):
            try:
                return action(self.client)
            except (ConnectionError, ConnectionTimeout) as exc:
                if attempt == self.max_retries:
                    raise DocStoreError(f"Elasticsearch unreachable: {exc}") from exc
                log.warning("Elasticsearch %s (attempt %d); reconnecting", type(exc).__name__, attempt + 1)
                time.sleep(min(0.2 * 2**attempt, 5))
                self._reconnect()
        raise AssertionError("unreachable")

    def _reconnect(self) -> None:
        with self.lock:
            try:
                self.client.close()
            finally:
                self.client = self.client_factory(self.hosts)

    def create_idx(self, index_name: str, kb_id: str, vector_size: int) -> None:
        if self.index_exist(index_name, kb_id):
            return
        try:
            self._call(lambda es: es.indices.create(index=index_name, settings=self.mapping["settings"],
                                                    mappings=self.mapping["mappings"]))
        except ApiError as exc:
            if "resource_already_exists" not in str(exc):
                raise

    def delete_idx(self, index_name: str, kb_id: str) -> None:
        if kb_id:
            self.delete({"kb_id": kb_id}, index_name, kb_id)
            return
        self._call(lambda es: es.indices.delete(index=index_name, ignore_unavailable=True))

    def index_exist(self, index_name: str, kb_id: str) -> bool:
        return bool(self._call(lambda es: es.indices.exists(index=index_name)))

    def insert(self, rows: list[dict], index_name: str, kb_id: str) -> list[str]:
        if not rows:
            return []
        self.create_idx(index_name, kb_id, 0)
        operations: list[dict] = []
        for row in rows:
            source = {key: _jsonable(value) for key, value in row.items()}
            source.setdefault("kb_id", kb_id)
            operations += [{"index": {"_index": index_name, "_id": row["id"]}}, source]
        reply = self._call(lambda es: es.bulk(operations=operations, refresh=self.refresh))
        errors = []
        for item in reply.get("items", []):
            result = next(iter(item.values()))
            if result.get("error"):
                errors.append(f"{result.get('_id')}: {result['error'].get('reason', result['error'])}")
        return errors

    def update(self, condition: dict, new_value: dict, index_name: str, kb_id: str) -> bool:
        script = {"source": "for (e in params.doc.entrySet()) { ctx._source[e.getKey()] = e.getValue(); }",
                  "lang": "painless", "params": {"doc": {k: _jsonable(v) for k, v in new_value.items()}}}
        query = {"bool": {"filter": build_filter(condition, [kb_id] if kb_id else [])}}
        try:
            reply = self._call(lambda es: es.update_by_query(index=index_name, query=query, script=script,
                                                             refresh=True, conflicts="proceed"))
        except NotFoundError:
            return False
        return reply.get("updated", 0) > 0

    def delete(self, condition: dict, index_name: str, kb_id: str) -> int:
        query = {"bool": {"filter": build_filter(condition, [kb_id] if kb_id else [])}}
        try:
            reply = self._call(lambda es: es.delete_by_query(index=index_name, query=query, refresh=True,
                                                             conflicts="proceed"))
        except NotFoundError:
            return 0
        return int(reply.get("deleted", 0))

    def get(self, chunk_id: str, index_name: str, kb_ids: list[str]) -> dict | None:
        try:
            reply = self._call(lambda es: es.get(index=index_name, id=chunk_id))
        except NotFoundError:
            return None
        source = dict(reply["_source"])
        if kb_ids and source.get("kb_id") not in kb_ids:
            return None
        source["id"] = reply["_id"]
        return source

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
        text, dense, fusion = split_match_exprs(match_exprs)
        filters = build_filter(condition, kb_ids)
        source = _source_fields(select_fields, highlight_fields, agg_fields)
        if text is None and dense is None:
            return self._filtered(source, filters, order_by, offset, limit, index_names, agg_fields)
        rows = self._ranked(source, filters, text, dense, fusion, index_names)
        page = rows[offset : offset + limit] if limit > 0 else rows[offset:]
        query_tokens = text_tokens(text.matching_text) if text else []
        highlights = {row["id"]: highlight(str(row.get(highlight_fields[0], "")), query_tokens)
                      for row in page if highlight_fields and query_tokens}
        aggs = {f: _count(rows, f) for f in agg_fields or []}
        return SearchResult(len(rows), [_select(r, select_fields) for r in page], highlights, aggs)

    def _filtered(self, source, filters, order_by, offset, limit, index_names, agg_fields) -> SearchResult:
        body: dict[str, Any] = {
            "query": {"bool": {"filter": filters}}, "from": offset, "size": limit if limit > 0 else 10000,
            "track_total_hits": True, "_source": source,
            "sort": [{name: {"order": "desc" if desc else "asc", "unmapped_type": "keyword"}}
                     for name, desc in (order_by.fields if order_by else ())] or ["_doc"],
        }
        if agg_fields:
            body["aggs"] = {f: {"terms": {"field": f, "size": 10000}} for f in agg_fields}
        reply = self._call(lambda es: es.search(index=",".join(index_names), ignore_unavailable=True, **body))
        rows = [_hit_row(hit) for hit in reply["hits"]["hits"]]
        aggs = {f: [(b["key"], b["doc_count"]) for b in reply.get("aggregations", {}).get(f, {}).get("buckets", [])]
                for f in agg_fields or []}
        return SearchResult(reply["hits"]["total"]["value"], rows, {}, aggs)

    def _ranked(self, source, filters, text, dense, fusion, index_names) -> list[dict]:
        """Both legs in one ``_msearch``; each text hit also gets its exact cosine."""
        index = ",".join(index_names)
        header = {"index": index, "ignore_unavailable": True}
        searches: list[dict] = []
        vector_name = dense.vector_column_name if dense else None
        if text is not None:
            text_source = source + [vector_name] if (dense and source is not True) else source
            searches += [{**header, "search_type": "dfs_query_then_fetch"},
                         {"query": text_query(text, filters), "size": text.topn, "_source": text_source},
                         header, term_stats_query(text)]
        feedback = fusion is not None and fusion.feedback > 0 and dense is not None
        if dense is not None:  # with feedback, the kNN hits' vectors too: the moved question is asked of them
            knn_source = source + [vector_name] if (feedback and source is not True) else source
            searches += [header, {"knn": knn_query(dense, filters), "size": dense.topn, "_source": knn_source}]
        replies = self._call(lambda es: es.msearch(searches=searches))["responses"]
        for reply in replies:
            if "error" in reply:
                raise DocStoreError(f"Elasticsearch search failed: {reply['error']}")
        found: dict[str, dict] = {}
        vectors: dict[str, np.ndarray] = {}  # unit vectors of the candidates, by chunk id
        query = None
        if dense is not None:
            query = query_vector(dense, unit=True)
        if text is not None:
            ceiling = text_ceiling(text, replies[1])
            for hit in replies[0]["hits"]["hits"]:
                row = found[hit["_id"]] = _hit_row(hit)
                row[TERM_SCORE], row[VECTOR_SCORE] = float(hit["_score"] or 0.0), _cosine(row, vector_name, query,
                                                                                         vectors)
                row[TERM_SIM] = float(term_similarities(np.array([row[TERM_SCORE]]), ceiling)[0])
        if dense is not None:
            for hit in replies[-1]["hits"]["hits"]:
                row = found.setdefault(hit["_id"], {**_hit_row(hit), TERM_SCORE: 0.0, TERM_SIM: 0.0})
                row[VECTOR_SCORE] = 2 * float(hit["_score"] or 0.0) - 1
                _take_vector(row, vector_name, query, vectors)  # out of the row; kept for feedback
        rows = list(found.values())
        if fusion is not None:
            for row in rows:
                row[VECTOR_SIM] = row[VECTOR_SCORE]
            scores = _feedback_scores(rows, vectors, query, fusion) if feedback else None
            return fuse_rows(rows, fusion.vector_weight, fusion.min_score, SCORE, scores)[: fusion.topn]
        key = TERM_SCORE if dense is None else VECTOR_SCORE
        for row in rows:
            row[SCORE] = row[key]
        return sorted(rows, key=lambda r: r[SCORE], reverse=True)

    def get_total(self, result: SearchResult) -> int:
        return result.total

    def health(self) -> dict:
        reply = self._call(lambda es: es.cluster.health())
        return {"type": "elasticsearch", "status": reply.get("status"), "nodes": reply.get("number_of_nodes")}

    def close(self) -> None:
        self.client.close()


def _jsonable(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return value.astype(float).tolist()
    if isinstance(value, np.generic):
        return value.item()
    return value


def _source_fields(select_fields, highlight_fields, agg_fields) -> list[str] | bool:
    if not select_fields or "*" in select_fields:
        return True
    return list(dict.fromkeys([*select_fields, *(highlight_fields or []), *(agg_fields or [])]))


def _hit_row(hit: dict) -> dict:
    row = dict(hit.get("_source") or {})
    row["id"] = hit["_id"]
    return row


def _take_vector(row: dict, vector_name: str | None, query: np.ndarray | None,
                 vectors: dict[str, np.ndarray]) -> np.ndarray | None:
    """A hit's stored vector, normalised, taken out of the row (callers never asked for it) and
    kept in ``vectors`` by chunk id; None when it is missing or not the query's size."""
    vector = row.pop(vector_name, None) if vector_name else None
    if vector is None or query is None or vector_dim(vector_name) != query.size:
        return None
    vec = np.asarray(vector, dtype=np.float32)
    vectors[row["id"]] = unit = vec / max(float(np.linalg.norm(vec)), 1e-12)
    return unit


def _cosine(row: dict, vector_name: str | None, query: np.ndarray | None, vectors: dict[str, np.ndarray]) -> float:
    """Exact cosine of a text hit's stored vector with the query; 0 when either is missing."""
    unit = _take_vector(row, vector_name, query, vectors)
    return 0.0 if unit is None else float(unit @ query)


def _feedback_scores(rows: list[dict], vectors: dict[str, np.ndarray], query: np.ndarray | None,
                     fusion: FusionExpr) -> np.ndarray | None:
    """The rows' similarity with cross-leg feedback (``rag.nlp.feedback``), scored from the
    vectors the hits brought back, as the embedded store scores it from its matrix."""
    if query is None:
        return None
    unit = [vectors.get(row["id"]) for row in rows]

    def cosines_with(moved: np.ndarray) -> np.ndarray:
        return np.array([np.nan if vec is None else float(vec @ moved) for vec in unit])

    return feedback_similarity(np.array([row[TERM_SIM] for row in rows]), np.array([row[VECTOR_SIM] for row in rows]),
                               query, fusion.vector_weight, lambda i: unit[i], cosines_with, fusion.feedback)


def _select(row: dict, select_fields: Sequence[str]) -> dict:
    if not select_fields or "*" in select_fields:
        return row
    keep = set(select_fields) | {"id", SCORE, TERM_SCORE, VECTOR_SCORE, "term_similarity", "vector_similarity"}
    return {k: v for k, v in row.items() if k in keep}


def _count(rows: list[dict], field: str) -> list[tuple[str, int]]:
    counts: dict[str, int] = {}
    for row in rows:
        value = str(row.get(field, ""))
        counts[value] = counts.get(value, 0) + 1
    return sorted(counts.items(), key=lambda kv: kv[1], reverse=True)
