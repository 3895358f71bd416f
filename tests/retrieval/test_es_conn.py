"""The exact requests ESConnection sends, through the real client over a fake HTTP node."""

from __future__ import annotations

import json
import math
from concurrent.futures import Future
from typing import Any

import numpy as np
import pytest
from elastic_transport import ApiResponseMeta, BaseNode, HttpHeaders
from elastic_transport import ConnectionError as TransportConnectionError
from elasticsearch import Elasticsearch

from rag.nlp.feedback import FEEDBACK_STRENGTH, moved_question
from rag.nlp.search import RANKING_FIELDS, Dealer, EmbeddedQuestion
from rag.utils.doc_store_conn import FusionExpr, MatchDenseExpr, MatchTextExpr, make_chunk_row
from rag.utils.es_conn import ESConnection

IDX = "ragline_t1"


class FakeNode(BaseNode):
    """Records every request; answers from ``replies`` (method, path prefix) → body."""

    calls: list[tuple[str, str, Any]] = []
    replies: dict[tuple[str, str], Any] = {}
    failures: list[Exception] = []

    def perform_request(self, method, target, body=None, headers=None, request_timeout=None):
        if FakeNode.failures:
            raise FakeNode.failures.pop(0)
        path, _, query = target.partition("?")
        parsed = None
        if body:
            text = body.decode()
            parsed = [json.loads(line) for line in text.splitlines() if line] if "x-ndjson" in str(
                headers.get("content-type", "")) else json.loads(text)
        FakeNode.calls.append((method, target, parsed))
        reply = next((v for (m, p), v in FakeNode.replies.items() if m == method and path.startswith(p)), {})
        status = 404 if reply is None else 200
        meta = ApiResponseMeta(status=status, http_version="1.1", duration=0.0, node=self.config,
                               headers=HttpHeaders({"x-elastic-product": "Elasticsearch",
                                                    "content-type": "application/json"}))
        from elastic_transport._node._base import NodeApiResponse

        return NodeApiResponse(meta, json.dumps(reply if reply is not None else {"found": False}).encode())


@pytest.fixture
def fake() -> type[FakeNode]:
    FakeNode.calls, FakeNode.replies, FakeNode.failures = [], {}, []
    return FakeNode


@pytest.fixture
def conn(fake) -> ESConnection:
    def factory(hosts):
        return Elasticsearch(hosts, node_class=FakeNode, max_retries=0)

    return ESConnection(["http://es:9200"], client_factory=factory)


def test_create_idx_sends_the_mapping_template(conn, fake):
    fake.replies[("HEAD", f"/{IDX}")] = None
    conn.create_idx(IDX, "kb", 384)
    method, target, body = fake.calls[-1]
    assert (method, target) == ("PUT", f"/{IDX}")
    assert body["mappings"]["dynamic_templates"][0]["dense_vector"]["match"] == "q_*_vec"
    assert body["mappings"]["dynamic_templates"][0]["dense_vector"]["mapping"]["similarity"] == "cosine"
    assert "dims" not in json.dumps(body["mappings"])  # any dimension: inferred from the first vector
    assert body["settings"]["analysis"]["analyzer"]["ragline_text"]["filter"][-1] == "porter_stem"


def test_bulk_insert_refreshes_before_returning(conn, fake):
    fake.replies[("HEAD", f"/{IDX}")] = {}
    fake.replies[("PUT", "/_bulk")] = {"errors": True, "items": [
        {"index": {"_id": "a", "status": 201}},
        {"index": {"_id": "b", "status": 400, "error": {"reason": "mapper_parsing_exception"}}}]}
    rows = [make_chunk_row("d1", "kb", "d1.txt", "one", [0.1, 0.2]), make_chunk_row("d1", "kb", "d1.txt", "two", [1, 0])]
    errors = conn.insert(rows, IDX, "kb")
    method, target, body = fake.calls[-1]
    assert method == "PUT" and target.startswith("/_bulk") and "refresh=true" in target
    assert body[0] == {"index": {"_index": IDX, "_id": rows[0]["id"]}}
    assert body[1]["q_2_vec"] == pytest.approx([0.1, 0.2]) and body[1]["kb_id"] == "kb"
    assert errors == ["b: mapper_parsing_exception"]


def computed(vector: tuple[float, ...]) -> Future:
    """``vector`` as a search process hands it over while the question is being embedded."""
    future: Future = Future()
    future.set_result(np.array(vector, dtype=np.float32))
    return future


@pytest.mark.parametrize("being_computed", [False, True], ids=["vector", "vector being computed"])
def test_hybrid_search_sends_independent_legs(conn, fake, being_computed):
    stats = {"hits": {"total": {"value": 10}, "hits": []}, "aggregations": {
        "n0": {"doc_count": 10}, "n1": {"doc_count": 4},
        "df0_0": {"doc_count": 2}, "df0_1": {"doc_count": 0},  # "cell"
        "df1_0": {"doc_count": 9}, "df1_1": {"doc_count": 1},  # "and"
        "df2_0": {"doc_count": 0}, "df2_1": {"doc_count": 0}}}  # "x": in no row
    fake.replies[("POST", "/_msearch")] = {"responses": [
        {"hits": {"total": {"value": 1}, "hits": [
            {"_id": "c1", "_score": 4.0, "_source": {"doc_id": "d1", "q_2_vec": [1.0, 0.0]}}]}},
        stats,
        {"hits": {"total": {"value": 2}, "hits": [
            {"_id": "c2", "_score": 0.9, "_source": {"doc_id": "d2"}},
            {"_id": "c1", "_score": 0.75, "_source": {"doc_id": "d1"}}]}}]}
    exprs = [MatchTextExpr(("content_ltks^2", "important_kwd^3"), 'cell AND "(x', 50),
             MatchDenseExpr("q_2_vec", computed((0.6, 0.8)) if being_computed else (0.6, 0.8), 50),
             FusionExpr(0.3, 100)]
    result = conn.search(["doc_id"], [], {"available_int": 1}, exprs, None, 0, 10, [IDX], ["kb"])
    _, target, body = fake.calls[-1]
    assert target.startswith("/_msearch")
    text_header, text_body, stats_body, knn_body = body[0], body[1], body[3], body[5]
    assert text_header["search_type"] == "dfs_query_then_fetch"  # one IDF across shards, as the stats count
    match = text_body["query"]["bool"]["must"][0]["combined_fields"]
    assert match["query"] == "cell and x" and match["operator"] == "or"
    assert match["fields"] == ["content_ltks^2", "important_tks^3"]
    assert {"terms": {"kb_id": ["kb"]}} in text_body["query"]["bool"]["filter"]
    assert "q_2_vec" in text_body["_source"]
    assert stats_body["size"] == 0 and stats_body["query"] == {"match_all": {}}
    assert stats_body["aggs"]["df0_1"] == {"filter": {"match": {"important_tks": "cell"}}}
    assert stats_body["aggs"]["n0"] == {"filter": {"exists": {"field": "content_ltks"}}}
    assert knn_body["knn"]["field"] == "q_2_vec" and knn_body["knn"]["k"] == 50
    assert knn_body["knn"]["query_vector"] == pytest.approx([0.6, 0.8])
    assert knn_body["knn"]["filter"]["bool"]["filter"] == [{"terms": {"available_int": [1]}},
                                                             {"terms": {"kb_id": ["kb"]}}]
    assert "query" not in knn_body  # the vector leg is not filtered by the text match
    rows = {r["id"]: r for r in result.rows}
    assert rows["c1"]["_vector_score"] == pytest.approx(0.5)  # ES's (1 + cos) / 2 mapped back: 2·0.75 − 1
    assert rows["c2"]["_vector_score"] == pytest.approx(0.8)
    assert rows["c2"]["vector_similarity"] == pytest.approx(0.8)  # the raw cosine
    assert rows["c1"]["vector_similarity"] == pytest.approx(0.5)
    # BM25 over its ceiling: Σ Lucene IDF of each word, with the largest count over the fields
    ceiling = sum(math.log(1 + (10 - df + 0.5) / (df + 0.5)) for df in (2, 9, 0))
    assert rows["c1"]["term_similarity"] == pytest.approx(4.0 / ceiling) and rows["c2"]["term_similarity"] == 0.0
    assert rows["c1"]["_score"] == pytest.approx(0.3 * 0.5 + 0.7 * 4.0 / ceiling)
    assert rows["c2"]["_score"] == pytest.approx(0.3 * 0.8)


def test_feedback_scores_the_knn_hits_from_their_vectors(conn, fake):
    """With feedback the kNN leg brings its hits' vectors back, and the similarity is the one
    ``rag.nlp.feedback`` gives the embedded store: the question moved toward the chunk the swapped
    weights rank first, asked of every candidate; the reported cosines stay raw."""
    stats = {"hits": {"total": {"value": 10}, "hits": []}, "aggregations": {
        "n0": {"doc_count": 10}, "df0_0": {"doc_count": 2}}}
    c1, c2, c3 = [0.8, 0.6], [0.6, 0.8], [0.0, 1.0]
    fake.replies[("POST", "/_msearch")] = {"responses": [
        {"hits": {"total": {"value": 1}, "hits": [
            {"_id": "c1", "_score": 4.0, "_source": {"doc_id": "d1", "q_2_vec": c1}}]}},
        stats,
        {"hits": {"total": {"value": 3}, "hits": [
            {"_id": "c2", "_score": (1 + 1.0) / 2, "_source": {"doc_id": "d2", "q_2_vec": c2}},
            {"_id": "c3", "_score": (1 + 0.8) / 2, "_source": {"doc_id": "d3", "q_2_vec": c3}},
            {"_id": "c1", "_score": (1 + 0.96) / 2, "_source": {"doc_id": "d1", "q_2_vec": c1}}]}}]}
    question = np.array([0.6, 0.8])
    exprs = [MatchTextExpr(("content_ltks",), "cell", 50), MatchDenseExpr("q_2_vec", tuple(question), 50),
             FusionExpr(0.3, 100, feedback=FEEDBACK_STRENGTH)]
    rows = {r["id"]: r for r in conn.search(["doc_id"], [], {}, exprs, None, 0, 10, [IDX], ["kb"]).rows}
    knn_body = fake.calls[-1][2][5]
    assert "q_2_vec" in knn_body["_source"]
    assert all("q_2_vec" not in row for row in rows.values())
    term = {cid: rows[cid]["term_similarity"] for cid in rows}
    assert term["c1"] > 0 and term["c2"] == term["c3"] == 0
    assert 0.7 * 0.96 + 0.3 * term["c1"] > 0.7 * 1.0  # c1 leads at the swapped weights (0.7 on the cosine)
    moved = moved_question(question, np.array(c1))
    for cid, vec in (("c1", c1), ("c2", c2), ("c3", c3)):
        assert rows[cid]["vector_similarity"] == pytest.approx(float(np.dot(question, vec)), abs=1e-6)
        asked = float(np.dot(moved, vec))
        assert rows[cid]["_score"] == pytest.approx(0.3 * asked + 0.7 * term[cid], abs=1e-6)
    assert rows["c2"]["_score"] != pytest.approx(0.3 * 1.0)  # the plain fusion's number


def test_update_and_delete_by_query(conn, fake):
    fake.replies[("POST", f"/{IDX}/_update_by_query")] = {"updated": 2}
    fake.replies[("POST", f"/{IDX}/_delete_by_query")] = {"deleted": 3}
    assert conn.update({"doc_id": ["d1"]}, {"available_int": 0}, IDX, "kb")
    _, target, body = fake.calls[-1]
    assert "refresh=true" in target
    assert body["query"] == {"bool": {"filter": [{"terms": {"doc_id": ["d1"]}}, {"terms": {"kb_id": ["kb"]}}]}}
    assert body["script"]["params"]["doc"] == {"available_int": 0}
    assert conn.delete({"id": "c1"}, IDX, "kb") == 3


def test_connection_errors_reconnect_and_retry(fake):
    built = []

    def factory(hosts):
        built.append(hosts)
        return Elasticsearch(hosts, node_class=FakeNode, max_retries=0)

    conn = ESConnection(["http://es:9200"], client_factory=factory, max_retries=2)
    fake.failures = [TransportConnectionError("refused"), TransportConnectionError("refused")]
    fake.replies[("GET", "/_cluster/health")] = {"status": "green", "number_of_nodes": 1}
    assert conn.health()["status"] == "green"
    assert len(built) == 3  # the first client and one fresh client per failure


def test_a_chats_search_ranks_without_the_texts_and_fetches_only_the_pages(conn, fake):
    """Each leg hands back the selected fields of every candidate it ranks, so a chat's search
    (``aggs=False``) ranks with the ranking fields alone and fetches the page's text by id."""
    hit = {"_id": "c1", "_score": 4.0, "_source": {"doc_id": "d1", "q_2_vec": [0.6, 0.8]}}
    stats = {"hits": {"total": {"value": 1}, "hits": []}, "aggregations": {}}
    fake.replies[("POST", "/_msearch")] = {"responses": [{"hits": {"total": {"value": 1}, "hits": [hit]}}, stats,
                                                         {"hits": {"total": {"value": 1}, "hits": [hit]}}]}
    fake.replies[("POST", f"/{IDX}/_search")] = {"hits": {"total": {"value": 1}, "hits": [
        {"_id": "c1", "_source": {"doc_id": "d1", "content_with_weight": "cells divide"}}]}}
    question = EmbeddedQuestion("cells", np.array([0.6, 0.8], dtype=np.float32), 1)
    result = Dealer(conn).retrieval("cells", question, "t1", ["kb"], 1, 6, 0.0, 0.3, aggs=False)
    ranking = next(body for method, target, body in fake.calls if target.startswith("/_msearch"))
    sources = [search["_source"] for search in ranking if "_source" in search]
    assert sources and all("content_with_weight" not in source for source in sources)
    assert all(set(source) - {"q_2_vec"} <= set(RANKING_FIELDS) for source in sources)
    fetch = [body for method, target, body in fake.calls if target.startswith(f"/{IDX}/_search")]
    assert len(fetch) == 1 and "content_with_weight" in fetch[0]["_source"]
    assert [chunk["content_with_weight"] for chunk in result["chunks"]] == ["cells divide"]
