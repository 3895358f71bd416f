"""A table document through the worker: its rows' typed fields are stored on their chunks, the
store filters by them, and the dataset records the columns in ``parser_config.field_map``."""

from __future__ import annotations

import random

import pytest

from api.components import Components
from api.db.services import document_service, knowledgebase_service, tenant_service
from rag.utils.doc_store_conn import index_name
from tests.ingest import office_files as files
from tests.ingest.test_worker_pipeline import drain, executor_for
from tests.ingest.worker_support import FakeEmbedding, dataset, document, queue


@pytest.fixture
def ready(parts: Components) -> Components:
    from api.db.migrate import upgrade

    upgrade(parts.db)
    return parts


async def test_typed_fields_are_stored_filterable_and_recorded_on_the_dataset(ready: Components) -> None:
    def seed() -> tuple[str, str, list[str]]:
        tenant_id = tenant_service.get_or_create_tenant("acme").id
        kb = knowledgebase_service.create(tenant_id, {"name": f"kb-{random.random()}", "embedding_model": "fake@Builtin",
                                                      "chunk_method": "table"})
        uploads = [document_service.Upload("products.xlsx", files.products_xlsx()),
                   document_service.Upload("stores.csv", b"Store,Opened\nMitte,2021-04-01\n")]
        docs = document_service.upload(tenant_id, kb["id"], uploads, ready.storage)
        return tenant_id, kb["id"], [doc["id"] for doc in docs]

    tenant_id, kb_id, doc_ids = ready.db.call(seed)
    queue(ready, tenant_id, kb_id, doc_ids)
    await drain(executor_for(ready, FakeEmbedding()))
    assert [document(ready, d).run for d in doc_ids] == ["DONE", "DONE"]

    store, index = ready.doc_store, index_name(tenant_id)

    def contents(condition: dict) -> list[str]:
        rows = store.search(["content_with_weight"], [], condition, [], None, 0, 100, [index], [kb_id]).rows
        return sorted(row["content_with_weight"] for row in rows)

    assert contents({"price_flt": 24.0}) == ["Name: Gadget; Price: 24; Stock: 7; Added: 2024-05-17"]
    assert contents({"stock_long": [0, 120]}) == ["Name: Doohickey; Price: 3.25; Stock: 0; Added: 2023-11-30",
                                                 "Name: Widget; Price: 9.5; Stock: 120; Added: 2024-03-01"]
    assert contents({"added_dt": "2023-11-30 00:00:00"}) == ["Name: Doohickey; Price: 3.25; Stock: 0; Added: 2023-11-30"]
    # Both documents' columns are recorded, RAGFlow's way: field -> column header.
    assert dataset(ready, kb_id).parser_config["field_map"] == {
        "name_kwd": "Name", "price_flt": "Price", "stock_long": "Stock", "added_dt": "Added",
        "store_kwd": "Store", "opened_dt": "Opened"}
    # and the dataset API shows them
    shown = ready.db.call(knowledgebase_service.get, tenant_id, kb_id)
    assert shown["parser_config"]["field_map"]["price_flt"] == "Price"
