"""Every chunk_method template end to end through ``ragflow-sdk`` 0.22.1 against one live server:
a dataset created with the method, a small real file made by its library uploaded and parsed by
the server's workers, and retrieval of the expected chunk first. Beside them: a hostile sheet
fails alone with its reason, a table's typed fields and ``field_map`` are shown by the API, and
a dataset tagged from a tag set is found by a tag word its text does not hold.

One server serves the module (its start and the OCR models' first load are the slow parts)."""

from __future__ import annotations

import io
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from api.components import build_components
from api.db.services import tenant_service
from api.settings import load_settings
from tests.conftest import BUILTIN_EMBEDDING, _serve_in_thread, _wait_until_listening, free_port
from tests.ingest import office_files as files
from tests.ingest.documents import pdf_with_pages

ragflow_sdk = pytest.importorskip("ragflow_sdk")
docx = pytest.importorskip("docx")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, builtin_embedding) -> Iterator[tuple[str, str]]:
    """The module's live server: (base URL, an API key of tenant acme)."""
    settings = load_settings(environ={}, data_dir=tmp_path_factory.mktemp("templates") / "data", port=free_port(),
                             search_processes=0, embed_processes=0)
    parts = build_components(settings)
    parts.registry.register(BUILTIN_EMBEDDING, builtin_embedding, kind="embedding")
    thread, live = _serve_in_thread(settings, parts)
    _wait_until_listening(settings.host, settings.port)
    try:
        yield live.url, parts.db.call(tenant_service.create_key_for, "acme").key
    finally:
        live.loop.call_soon_threadsafe(live.stop.set)
        thread.join(30)
        parts.close()


@pytest.fixture
def rag(server: tuple[str, str]):
    url, key = server
    return ragflow_sdk.RAGFlow(api_key=key, base_url=url)


def api_get(server: tuple[str, str], path: str, **params: Any) -> Any:
    """``data`` of a GET on the HTTP API (for what the SDK's objects leave out)."""
    url, key = server
    body = httpx.get(f"{url}/api/v1{path}", params=params, headers={"Authorization": f"Bearer {key}"}).json()
    assert body["code"] == 0, body
    return body["data"]


def word_file(*items: tuple[str, str] | tuple[str, str, int]) -> bytes:
    """A .docx of ``("h", text, level)`` headings and ``("p", text)`` paragraphs, in order."""
    document = docx.Document()
    for kind, text, *level in items:
        if kind == "h":
            document.add_heading(text, level=level[0])
        else:
            document.add_paragraph(text)
    out = io.BytesIO()
    document.save(out)
    return out.getvalue()


def parsed(rag, method: str, name: str, data: bytes, chunks: int, parser_config: dict | None = None):
    """A dataset of ``method`` holding the file, parsed into ``chunks`` chunks; the dataset and document id."""
    dataset = rag.create_dataset(name=f"{method}-{name}", chunk_method=method)
    assert dataset.chunk_method == method
    if parser_config:
        dataset.update({"parser_config": parser_config})
    [doc] = dataset.upload_documents([{"display_name": name, "blob": data}])
    [(_, run, count, _)] = dataset.parse_documents([doc.id])
    assert (run, count) == ("DONE", chunks), dataset.list_documents(id=doc.id)[0].progress_msg
    return dataset, doc.id


def first_hit(rag, dataset, question: str) -> str:
    return rag.retrieve(dataset_ids=[dataset.id], question=question)[0].content


def test_qa_dataset_finds_the_question_first(rag) -> None:
    dataset, _ = parsed(rag, "qa", "faq.xlsx", files.faq_xlsx(), 3)
    assert first_hit(rag, dataset, "how can I reset my password") == (
        "Question: How do I reset my password?\tAnswer: Open Settings, choose Security and press Reset password.")
    assert first_hit(rag, dataset, "Which payment methods do you accept?").startswith(
        "Question: Which payment methods are accepted?")


def test_table_dataset_finds_the_row_and_a_hostile_sheet_fails_alone(rag, server) -> None:
    dataset = rag.create_dataset(name="products", chunk_method="table")
    hostile = files.xlsx(("Rows", [[f"row {index}"] for index in range(50_000)]))
    docs = dataset.upload_documents([{"display_name": "products.xlsx", "blob": files.products_xlsx()},
                                     {"display_name": "rows.xlsx", "blob": hostile}])
    by_name = {d.name: d.id for d in docs}
    finished = {doc_id: (run, chunks) for doc_id, run, chunks, _ in dataset.parse_documents(list(by_name.values()))}
    assert finished[by_name["products.xlsx"]] == ("DONE", 3)
    assert finished[by_name["rows.xlsx"]][0] == "FAIL"
    failed = dataset.list_documents(id=by_name["rows.xlsx"])[0]
    assert "more than 10,000 rows" in failed.progress_msg and "RAGLINE_PARSE_MAX_ROWS" in failed.progress_msg

    [hit] = rag.retrieve(dataset_ids=[dataset.id], question="Gadget")[:1]
    assert hit.content == "Name: Gadget; Price: 24; Stock: 7; Added: 2024-05-17"
    # The row's typed fields are stored on its chunk, and the dataset names the columns.
    chunk = api_get(server, f"/datasets/{dataset.id}/documents/{hit.document_id}/chunks/{hit.id}")
    assert (chunk["price_flt"], chunk["stock_long"], chunk["added_dt"]) == (24.0, 7, "2024-05-17 00:00:00")
    [shown] = api_get(server, "/datasets", id=dataset.id)
    assert shown["parser_config"]["field_map"] == {"name_kwd": "Name", "price_flt": "Price", "stock_long": "Stock",
                                                   "added_dt": "Added"}


def test_one_makes_the_document_one_chunk(rag) -> None:
    data = word_file(("h", "Travel policy", 1), ("p", "Employees book flights through the travel desk."),
                     ("p", "Hotel nights are reimbursed up to 150 euros."))
    dataset, _ = parsed(rag, "one", "policy.docx", data, 1)
    assert first_hit(rag, dataset, "hotel reimbursement") == (
        "Travel policy\nEmployees book flights through the travel desk.\nHotel nights are reimbursed up to 150 euros.")


def test_book_keeps_the_heading_path(rag) -> None:
    data = word_file(("h", "Volcanoes", 1), ("p", "Volcanoes form where plates meet."), ("h", "Eruptions", 2),
                     ("p", "Magma reaches the surface through vents."), ("h", "Glaciers", 1),
                     ("p", "Glaciers carve valleys over millennia."))
    dataset, _ = parsed(rag, "book", "geology.docx", data, 3)
    assert first_hit(rag, dataset, "How does magma reach the surface?") == (
        "Volcanoes > Eruptions\nMagma reaches the surface through vents.")


def test_laws_finds_the_clause(rag) -> None:
    data = word_file(("p", "SERVICE AGREEMENT"), ("p", "Chapter 1 General"),
                     ("p", "Article 1 This agreement governs the delivery of cloud services."),
                     ("p", "Article 2 The Customer shall pay every invoice within thirty days of its date."),
                     ("p", "Chapter 2 Liability"),
                     ("p", "Article 3 Neither party is liable for delays caused by force majeure."))
    dataset, _ = parsed(rag, "laws", "contract.docx", data, 4)
    assert first_hit(rag, dataset, "When must invoices be paid?") == (
        "Chapter 1 General > Article 2\nThe Customer shall pay every invoice within thirty days of its date.")


def test_manual_sections_by_numbered_titles(rag) -> None:
    data = pdf_with_pages("4 Maintenance\nClean the unit monthly.\n4.1 Replacing the filter\n1. Open the lid.\n"
                          "2. Pull the old filter out.\n4.2 Descaling\nUse citric acid once a year.")
    dataset, _ = parsed(rag, "manual", "manual.pdf", data, 3)
    assert first_hit(rag, dataset, "how do I replace the filter") == (
        "4 Maintenance > 4.1 Replacing the filter\n1. Open the lid.\n2. Pull the old filter out.")


def test_paper_keeps_the_abstract_whole(rag) -> None:
    abstract = ("We show that sparse widgets reduce the energy use of data centres by forty percent, "
                "measured over a year on two hundred servers.")
    data = pdf_with_pages(f"Sparse Widgets\nAbstract\n{abstract}\n1 Introduction\nWidgets matter for efficiency.\n"
                          "2 Method\nWe measured the power draw of servers.")
    dataset, _ = parsed(rag, "paper", "paper.pdf", data, 4)
    hit = first_hit(rag, dataset, "How much energy do sparse widgets save?")
    assert hit.startswith("Abstract\nWe show that sparse widgets") and hit.endswith("two hundred servers.")


def test_presentation_one_chunk_per_slide(rag) -> None:
    data = files.pptx_deck(("Roadmap", "Ship version 2 in May"), ("Pricing", "The Pro plan costs 20 euros a month"))
    dataset, _ = parsed(rag, "presentation", "deck.pptx", data, 2)
    assert first_hit(rag, dataset, "How much is the Pro plan?") == "Pricing\nThe Pro plan costs 20 euros a month"


def test_email_reads_headers_body_and_attachment(rag) -> None:
    data = files.eml_message({"itinerary.txt": b"Flights are booked through TravelCo for the Lisbon offsite."})
    dataset, _ = parsed(rag, "email", "budget.eml", data, 3, {"chunk_token_num": 40})
    assert first_hit(rag, dataset, "Which agency booked the Lisbon flights?") == (
        "Quarterly budget review > Attachment: itinerary.txt\n"
        "Flights are booked through TravelCo for the Lisbon offsite.")
    assert "travel budget for Q3" in first_hit(rag, dataset, "What is the travel budget for Q3?")


def test_picture_is_read_by_ocr(rag) -> None:
    dataset, _ = parsed(rag, "picture", "receipt.png", files.text_image(["Invoice number 48213"]), 1)
    assert "48213" in first_hit(rag, dataset, "invoice 48213")


def test_a_dataset_tagged_from_a_tag_set_is_found_by_its_tags(rag, server) -> None:
    tag_rows = files.xlsx(("Tags", [
        ["The striker scored twice in the football final", "sports"],
        ["The goalkeeper saved a penalty in the league match", "sports"],
        ["Shares fell after the central bank raised interest rates", "finance"],
        ["The quarterly earnings beat the analysts' forecast", "finance, markets"],
        ["A new vaccine trial reduced infections in patients", "health"],
    ]))
    tag_set, _ = parsed(rag, "tag", "tags.xlsx", tag_rows, 5)
    assert first_hit(rag, tag_set, "finance") in {"Shares fell after the central bank raised interest rates",
                                                  "The quarterly earnings beat the analysts' forecast"}
    article = word_file(("p", "The central bank raised interest rates again; shares of banks fell and "
                              "analysts cut their quarterly earnings forecasts."))
    dataset, doc_id = parsed(rag, "naive", "rates.docx", article, 1, {"tag_kb_ids": [tag_set.id], "topn_tags": 2})

    [chunk] = api_get(server, f"/datasets/{dataset.id}/documents/{doc_id}/chunks")["chunks"]
    assert chunk["tag_kwd"] == ["finance", "markets"]
    hits = rag.retrieve(dataset_ids=[dataset.id], question="markets")  # a word only its tags hold
    assert [hit.id for hit in hits] == [chunk["id"]]
    assert dataset.list_documents(id=doc_id)[0].progress_msg.startswith("Task done")
