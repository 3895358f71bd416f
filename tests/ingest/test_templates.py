"""The chunk_method templates (rag.app.chunking) on small files the tests make: each template's
chunks, their text and count, and what they carry besides (questions, tags, typed fields)."""

from __future__ import annotations

import io

import pytest

from rag.app import table
from rag.app.chunking import CHUNKERS, chunk_document
from rag.app.parsers import FormatLimitError, FormatLimits, ParseError
from rag.app.parsers.limits import ReadLimits
from tests.ingest import office_files as files

CONTRACT = b"""SERVICE AGREEMENT
Chapter 1 General
Article 1 This agreement governs the delivery of cloud services by the Supplier to the Customer.
Article 2 The Customer shall pay every invoice within thirty days of its date.
Chapter 2 Liability
Article 3 Neither party is liable for delays caused by force majeure.
1. Notices must be in writing.
2. Notices take effect on receipt.
"""


def contents(method: str, name: str, data: bytes, config: dict | None = None) -> list[str]:
    return [chunk.content for chunk in chunk_document(method, name, data, config or {})]


def test_every_ragflow_template_has_a_chunker() -> None:
    assert set(CHUNKERS) == {"naive", "qa", "table", "one", "book", "laws", "manual", "paper", "presentation",
                             "email", "picture", "tag"}


def test_qa_from_xlsx_matches_by_question_and_returns_both() -> None:
    chunks = chunk_document("qa", "faq.xlsx", files.faq_xlsx(), {})
    assert len(chunks) == 3  # the header row is skipped
    first = chunks[0]
    assert first.content == ("Question: How do I reset my password?\t"
                             "Answer: Open Settings, choose Security and press Reset password.")
    assert first.match_text == first.embed_text == "How do I reset my password?"
    assert first.questions == ("How do I reset my password?",)


def test_qa_from_tab_separated_txt_with_continued_answer() -> None:
    data = b"What is Ragline?\tA RAG server.\nIt speaks RAGFlow's API.\nIs it free?,Yes.\n"
    assert contents("qa", "faq.txt", data) == ["Question: What is Ragline?\tAnswer: A RAG server.\nIt speaks RAGFlow's API.",
                                               "Question: Is it free?\tAnswer: Yes."]


def test_qa_from_csv_and_markdown_headings() -> None:
    csv_data = b"question,answer\nWhere is the office?,In Berlin.\n"
    assert contents("qa", "faq.csv", csv_data) == ["Question: Where is the office?\tAnswer: In Berlin."]
    md = b"# FAQ\n\n## How long is the warranty?\n\nFive years.\n\n## Who pays shipping?\n\nWe do.\n"
    assert contents("qa", "faq.md", md) == ["Question: How long is the warranty?\tAnswer: Five years.",
                                            "Question: Who pays shipping?\tAnswer: We do."]


def test_qa_from_docx_headings() -> None:
    docx = pytest.importorskip("docx")
    document = docx.Document()
    document.add_heading("What is the refund window?", level=2)
    document.add_paragraph("Thirty days from delivery.")
    out = io.BytesIO()
    document.save(out)
    assert contents("qa", "faq.docx", out.getvalue()) == [
        "Question: What is the refund window?\tAnswer: Thirty days from delivery."]


def test_qa_without_pairs_fails_with_a_reason() -> None:
    with pytest.raises(ParseError, match="No question/answer pairs"):
        chunk_document("qa", "notes.md", b"just some text without headings", {})


def test_table_one_chunk_per_row_with_typed_fields() -> None:
    chunks = chunk_document("table", "products.xlsx", files.products_xlsx(), {"chunk_token_num": 4})
    assert [c.content for c in chunks] == [
        "Name: Widget; Price: 9.5; Stock: 120; Added: 2024-03-01",
        "Name: Gadget; Price: 24; Stock: 7; Added: 2024-05-17",
        "Name: Doohickey; Price: 3.25; Stock: 0; Added: 2023-11-30",
    ]
    assert dict(chunks[1].fields) == {"name_kwd": "Gadget", "price_flt": 24.0, "stock_long": 7,
                                      "added_dt": "2024-05-17 00:00:00"}
    assert table.field_map(chunks) == {"name_kwd": "Name", "price_flt": "Price", "stock_long": "Stock",
                                       "added_dt": "Added"}


def test_table_infers_csv_column_types() -> None:
    data = b"City,Population,Founded,Capital\nBerlin,3850809,1237-01-01,yes\nHamburg,1945532,0808-01-01,no\n"
    chunks = chunk_document("table", "cities.csv", data, {})
    assert chunks[0].content == "City: Berlin; Population: 3850809; Founded: 1237-01-01; Capital: yes"
    assert dict(chunks[1].fields) == {"city_kwd": "Hamburg", "population_long": 1945532,
                                      "founded_dt": "0808-01-01 00:00:00", "capital_kwd": False}


def test_table_refuses_a_non_tabular_file() -> None:
    with pytest.raises(ParseError, match="table chunk method reads"):
        chunk_document("table", "notes.md", b"# Notes", {})


def test_row_limit_holds_for_row_templates() -> None:
    limits = ReadLimits(formats=FormatLimits(max_rows=2))
    for method in ("table", "qa", "tag"):
        with pytest.raises(FormatLimitError, match="more than 2 rows"):
            chunk_document(method, "faq.xlsx", files.faq_xlsx(), {}, limits)


def test_one_makes_a_single_chunk() -> None:
    md = b"# Guide\n\nFirst part.\n\n## Install\n\nRun the installer.\n"
    assert contents("one", "guide.md", md, {"chunk_token_num": 3}) == [
        "Guide\nFirst part.\nGuide > Install\nRun the installer."]


def test_laws_one_chunk_per_article_with_its_path() -> None:
    assert contents("laws", "contract.txt", CONTRACT) == [
        "SERVICE AGREEMENT",
        "Chapter 1 General > Article 1\nThis agreement governs the delivery of cloud services by the Supplier to the Customer.",
        "Chapter 1 General > Article 2\nThe Customer shall pay every invoice within thirty days of its date.",
        "Chapter 2 Liability > Article 3\nNeither party is liable for delays caused by force majeure.",
        "Chapter 2 Liability > Article 3 > 1\nNotices must be in writing.",
        "Chapter 2 Liability > Article 3 > 2\nNotices take effect on receipt.",
    ]


def test_laws_on_a_pdf_keeps_the_path_across_pages() -> None:
    from tests.ingest.documents import pdf_with_pages

    data = pdf_with_pages("Chapter 1 Scope\nArticle 1 The rules apply to all members.",
                          "Article 2 Members pay fees yearly.")
    chunks = chunk_document("laws", "rules.pdf", data, {})
    assert [c.content for c in chunks] == ["Chapter 1 Scope > Article 1\nThe rules apply to all members.",
                                           "Chapter 1 Scope > Article 2\nMembers pay fees yearly."]
    assert [c.page for c in chunks] == [1, 2]


def test_manual_sections_by_numbered_titles_steps_stay_text() -> None:
    text = (b"4 Maintenance\nClean the unit monthly.\n4.1 Replacing the filter\n1. Open the lid.\n"
            b"2. Pull the old filter out.\n4.2 Descaling\nUse citric acid.\n")
    assert contents("manual", "manual.txt", text) == [
        "4 Maintenance\nClean the unit monthly.",
        "4 Maintenance > 4.1 Replacing the filter\n1. Open the lid.\n2. Pull the old filter out.",
        "4 Maintenance > 4.2 Descaling\nUse citric acid.",
    ]


def test_book_never_mixes_chapters() -> None:
    text = b"Part I\nChapter 1: Storms\nWind rises.\nChapter 2: Calm\nThe sea rests.\n"
    assert contents("book", "novel.txt", text, {"chunk_token_num": 512}) == [
        "Part I > Chapter 1: Storms\nWind rises.", "Part I > Chapter 2: Calm\nThe sea rests."]


def test_book_keeps_docx_heading_paths() -> None:
    docx = pytest.importorskip("docx")
    document = docx.Document()
    document.add_heading("Volcanoes", level=1)
    document.add_heading("Eruptions", level=2)
    document.add_paragraph("Magma reaches the surface.")
    out = io.BytesIO()
    document.save(out)
    assert contents("book", "geo.docx", out.getvalue()) == ["Volcanoes > Eruptions\nMagma reaches the surface."]


def test_paper_keeps_the_abstract_whole() -> None:
    abstract = " ".join(f"Sentence {n} of the abstract explains the finding." for n in range(30))
    text = f"Deep Widgets\nAbstract\n{abstract}\n1 Introduction\nWidgets matter.\n2.1 Data\nWe used data.\n"
    chunks = contents("paper", "paper.txt", text.encode(), {"chunk_token_num": 64})
    assert chunks[1] == f"Abstract\n{abstract}"
    assert chunks[2:] == ["1 Introduction\nWidgets matter.", "1 Introduction > 2.1 Data\nWe used data."]
    assert len(chunks) == 4


def test_presentation_one_chunk_per_slide() -> None:
    data = files.pptx_deck(("Roadmap", "Ship version 2 in May"), ("Pricing", "The Pro plan costs 20 euros"))
    chunks = chunk_document("presentation", "deck.pptx", data, {"chunk_token_num": 512})
    assert [(c.page, c.content) for c in chunks] == [(1, "Roadmap\nShip version 2 in May"),
                                                     (2, "Pricing\nThe Pro plan costs 20 euros")]


def test_presentation_one_chunk_per_pdf_page() -> None:
    from tests.ingest.documents import pdf_with_pages

    chunks = chunk_document("presentation", "deck.pdf", pdf_with_pages("Slide one text", "Slide two text"), {})
    assert [(c.page, c.content) for c in chunks] == [(1, "Slide one text"), (2, "Slide two text")]


def test_email_headers_body_attachment() -> None:
    data = files.eml_message({"itinerary.txt": b"Flights are booked through TravelCo."})
    chunks = contents("email", "mail.eml", data, {"chunk_token_num": 40})
    assert chunks[0].startswith("Quarterly budget review\nFrom: Alice Example")
    assert any("travel budget for Q3 is 12,000 euros" in c for c in chunks)
    assert chunks[-1] == "Quarterly budget review > Attachment: itinerary.txt\nFlights are booked through TravelCo."


def test_picture_ocr_text() -> None:
    chunks = contents("picture", "receipt.png", files.text_image(["Invoice number 48213"]))
    assert len(chunks) == 1 and "48213" in chunks[0]


def test_tag_rows_carry_their_tags() -> None:
    data = files.xlsx(("Tags", [["The invoice is overdue", "billing, finance"],
                                ["The server is down", "outage"]]))
    chunks = chunk_document("tag", "tags.xlsx", data, {})
    assert [(c.content, c.tags, c.keywords) for c in chunks] == [
        ("The invoice is overdue", ("billing", "finance"), ("billing", "finance")),
        ("The server is down", ("outage",), ("outage",))]


def test_tag_with_a_tag_description_header() -> None:
    chunks = chunk_document("tag", "tags.csv", b"tag,description\nbilling,Questions about invoices\n", {})
    assert [(c.content, c.tags) for c in chunks] == [("Questions about invoices", ("billing",))]


@pytest.mark.parametrize("method", ["resume", "knowledge_graph", "audio", "", None, "unknown"])
def test_methods_not_built_are_chunked_as_naive(method: str | None) -> None:
    assert contents(method, "a.md", b"# T\n\nText.") == contents("naive", "a.md", b"# T\n\nText.")
