"""Templates end to end through ``ragflow-sdk`` 0.22.1 against a live server: a dataset created
with ``chunk_method`` qa or table, its uploads parsed by the workers, and retrieval of the
expected chunk first; a hostile sheet beside them fails alone with its reason."""

from __future__ import annotations

import pytest

from tests.ingest import office_files as files

ragflow_sdk = pytest.importorskip("ragflow_sdk")


def test_qa_dataset_finds_the_question_first(live_server) -> None:
    rag = ragflow_sdk.RAGFlow(api_key=live_server.key("acme"), base_url=live_server.url)
    dataset = rag.create_dataset(name="faq", chunk_method="qa")
    assert dataset.chunk_method == "qa"
    docs = dataset.upload_documents([{"display_name": "faq.xlsx", "blob": files.faq_xlsx()}])
    finished = dataset.parse_documents([d.id for d in docs])
    assert [(run, chunks) for _, run, chunks, _ in finished] == [("DONE", 3)]

    hits = rag.retrieve(dataset_ids=[dataset.id], question="how can I reset my password")
    assert hits[0].content == ("Question: How do I reset my password?\t"
                               "Answer: Open Settings, choose Security and press Reset password.")
    hits = rag.retrieve(dataset_ids=[dataset.id], question="Which payment methods do you accept?")
    assert hits[0].content.startswith("Question: Which payment methods are accepted?")


def test_table_dataset_finds_the_row_and_a_hostile_sheet_fails_alone(live_server) -> None:
    rag = ragflow_sdk.RAGFlow(api_key=live_server.key("acme"), base_url=live_server.url)
    dataset = rag.create_dataset(name="products", chunk_method="table")
    hostile = files.xlsx(("Rows", [[f"row {index}"] for index in range(50_000)]))
    docs = dataset.upload_documents([{"display_name": "products.xlsx", "blob": files.products_xlsx()},
                                     {"display_name": "rows.xlsx", "blob": hostile}])
    by_name = {d.name: d.id for d in docs}
    finished = {doc_id: (run, chunks) for doc_id, run, chunks, _ in dataset.parse_documents(list(by_name.values()))}
    assert finished[by_name["products.xlsx"]] == ("DONE", 3)
    assert finished[by_name["rows.xlsx"]][0] == "FAIL"
    failed = dataset.list_documents(id=by_name["rows.xlsx"])[0]
    assert "more than 10,000 rows" in failed.progress_msg

    hits = rag.retrieve(dataset_ids=[dataset.id], question="Gadget")
    assert hits[0].content == "Name: Gadget; Price: 24; Stock: 7; Added: 2024-05-17"
