"""Tagging a dataset's chunks from tag sets (``parser_config.tag_kb_ids``, ``rag.app.tagging``):
the ranking on its own, then through the worker with a real tag set in the chunk store, the tags
stored and found by a search, and every tag set that cannot be used skipped with a note."""

from __future__ import annotations

import random

import pytest

from api.components import Components
from api.db.services import document_service, knowledgebase_service, tenant_service
from rag.app import tagging
from rag.app.naive import ChunkText
from rag.utils.doc_store_conn import MatchTextExpr, index_name
from tests.ingest.test_worker_pipeline import drain, executor_for
from tests.ingest.worker_support import FakeEmbedding, document, queue

TAG_ROWS = (b"description,tag\n"
            b"The striker scored twice in the football final,sports\n"
            b"The goalkeeper saved a penalty in the league match,sports\n"
            b"Shares fell after the central bank raised interest rates,finance\n"
            b"The quarterly earnings beat the analysts' forecast,\"finance, markets\"\n"
            b"A new vaccine trial reduced infections in patients,health\n")
ARTICLE = (b"Interest rates and earnings\n\n"
           b"The central bank raised interest rates again; shares of banks fell and quarterly earnings "
           b"forecasts were cut by analysts.\n")


@pytest.fixture
def ready(parts: Components) -> Components:
    from api.db.migrate import upgrade

    upgrade(parts.db)
    return parts


def test_tags_are_those_of_the_best_matching_rows_most_weight_first() -> None:
    rows = [(["finance", "markets"], 5.0), (["finance"], 4.0), (["sports"], 6.0), (["health"], 0.5)]
    assert tagging.best_tags(rows, 2) == ("finance", "sports")
    assert tagging.best_tags(rows, 10) == ("finance", "sports", "markets", "health")
    assert tagging.best_tags([(["x"], 0.0)], 3) == ()


def test_a_chunk_is_searched_by_its_most_frequent_words_without_stopwords() -> None:
    assert tagging.match_terms("The bank and the bank's rates: rates, rates!", 2) == "rates bank"
    assert tagging.match_terms("the and of") == ""


def test_chunks_without_tags_get_them_and_a_tag_set_row_keeps_its_own() -> None:
    searched: list[str] = []

    def search(terms: str, rows: int) -> list[tuple[list[str], float]]:
        searched.append(terms)
        return [(["finance"], 2.0)] if "bank" in terms else []

    chunks = [ChunkText("Bank rates rose.", 4), ChunkText("Nothing relevant here.", 4),
              ChunkText("A row of a tag set.", 6, tags=("own",))]
    tagged = tagging.tag_chunks(chunks, search, 3)
    assert [c.tags for c in tagged] == [("finance",), (), ("own",)]
    assert len(searched) == 2  # the tag set's row is not searched for


def test_parser_config_is_read_leniently() -> None:
    assert tagging.tag_set_ids({"tag_kb_ids": ["a", "b", "a", " "]}) == ["a", "b"]
    assert tagging.tag_set_ids({"tag_kb_ids": "a, b"}) == ["a", "b"]
    assert tagging.tag_set_ids({"tag_kb_ids": None}) == tagging.tag_set_ids({}) == []
    assert tagging.topn_tags({}) == 3 and tagging.topn_tags({"topn_tags": 1}) == 1
    assert tagging.topn_tags({"topn_tags": 99}) == 10 and tagging.topn_tags({"topn_tags": "x"}) == 3


def _dataset(parts: Components, tenant_id: str, method: str, files: dict[str, bytes],
             parser_config: dict | None = None) -> tuple[str, list[str]]:
    def seed() -> tuple[str, list[str]]:
        kb = knowledgebase_service.create(tenant_id, {
            "name": f"kb-{random.random()}", "embedding_model": "fake@Builtin", "chunk_method": method,
            "parser_config": parser_config or {}})
        if not files:
            return kb["id"], []
        docs = document_service.upload(tenant_id, kb["id"], [document_service.Upload(n, d) for n, d in files.items()],
                                       parts.storage)
        return kb["id"], [doc["id"] for doc in docs]

    kb_id, doc_ids = parts.db.call(seed)
    if doc_ids:
        queue(parts, tenant_id, kb_id, doc_ids)
    return kb_id, doc_ids


def _stored(parts: Components, tenant_id: str, kb_id: str) -> list[dict]:
    result = parts.doc_store.search(["content_with_weight", "tag_kwd"], [], {}, [], None, 0, 1000,
                                    [index_name(tenant_id)], [kb_id])
    return result.rows


async def test_a_dataset_is_tagged_from_its_tag_set_and_the_tags_are_searchable(ready: Components) -> None:
    tenant_id = ready.db.call(tenant_service.get_or_create_tenant, "acme").id
    tag_kb, _ = _dataset(ready, tenant_id, "tag", {"tags.csv": TAG_ROWS})
    await drain(executor_for(ready, FakeEmbedding()))
    kb_id, [doc_id] = _dataset(ready, tenant_id, "naive", {"article.txt": ARTICLE},
                               {"tag_kb_ids": [tag_kb], "topn_tags": 2})
    await drain(executor_for(ready, FakeEmbedding()))

    doc = document(ready, doc_id)
    assert doc.run == "DONE" and doc.progress_msg.startswith("Task done:") and "\n" not in doc.progress_msg
    [chunk] = _stored(ready, tenant_id, kb_id)
    assert chunk["tag_kwd"] == ["finance", "markets"]
    # The tag word is not in the text, and the full-text search finds the chunk by it.
    found = ready.doc_store.search(["id"], [], {}, [MatchTextExpr(("content_ltks", "important_tks^3"), "markets", 10)],
                                   None, 0, 10, [index_name(tenant_id)], [kb_id])
    assert [row["id"] for row in found.rows] == [chunk["id"]]


async def test_unusable_tag_sets_are_skipped_with_a_note_and_the_document_still_parses(ready: Components) -> None:
    tenant_id = ready.db.call(tenant_service.get_or_create_tenant, "acme").id
    other_tenant = ready.db.call(tenant_service.get_or_create_tenant, "globex").id
    naive_kb, _ = _dataset(ready, tenant_id, "naive", {"notes.txt": b"Plain notes about finance."})
    empty_tag_set, _ = _dataset(ready, tenant_id, "tag", {})
    foreign_tag_set, _ = _dataset(ready, other_tenant, "tag", {"tags.csv": TAG_ROWS})
    await drain(executor_for(ready, FakeEmbedding()))
    wanted = ["no-such-dataset", naive_kb, empty_tag_set, foreign_tag_set]
    kb_id, [doc_id] = _dataset(ready, tenant_id, "naive", {"article.txt": ARTICLE}, {"tag_kb_ids": wanted})
    await drain(executor_for(ready, FakeEmbedding()))

    doc = document(ready, doc_id)
    assert doc.run == "DONE" and doc.chunk_num == 1
    assert doc.progress_msg.splitlines()[1:] == [
        "Tag set no-such-dataset skipped: no such dataset.",
        f"Tag set {naive_kb} skipped: its chunk_method is naive, not tag.",
        f"Tag set {foreign_tag_set} skipped: no such dataset.",  # another tenant's is not found
        f"Tag set {empty_tag_set} skipped: it has no parsed tag rows.",
    ]
    assert not _stored(ready, tenant_id, kb_id)[0].get("tag_kwd")
