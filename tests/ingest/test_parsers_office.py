"""Parsers of spreadsheets, slide decks, e-mails, images and scanned PDFs, on files the tests
make with the libraries themselves, and their limits on hostile files."""

from __future__ import annotations

import time

import pytest

from rag.app.parsers import (
    SUPPORTED_EXTENSIONS,
    FormatLimitError,
    FormatLimits,
    PackageLimits,
    ParseError,
    parse,
)
from tests.ingest import office_files as files


def test_new_types_are_supported_for_upload() -> None:
    for extension in (".xlsx", ".xls", ".pptx", ".eml", ".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff"):
        assert extension in SUPPORTED_EXTENSIONS


def test_xlsx_rows_read_with_their_headers() -> None:
    sections = parse("products.xlsx", files.products_xlsx())
    assert [s.text for s in sections] == [
        "Name: Widget; Price: 9.5; Stock: 120; Added: 2024-03-01",
        "Name: Gadget; Price: 24; Stock: 7; Added: 2024-05-17",
        "Name: Doohickey; Price: 3.25; Stock: 0; Added: 2023-11-30",
    ]


def test_xlsx_sheets_name_their_rows_when_there_are_several() -> None:
    data = files.xlsx(("Staff", [["Name", "Role"], ["Ann", "CEO"]]), ("Rooms", [["Room", "Seats"], ["Blue", 8]]))
    sections = parse("book.xlsx", data)
    assert [(s.title_path, s.text) for s in sections] == [(("Staff",), "Name: Ann; Role: CEO"),
                                                          (("Rooms",), "Room: Blue; Seats: 8")]


def test_sheet_with_50000_rows_fails_fast_on_the_row_limit() -> None:
    data = files.xlsx(("Rows", [[f"row {index}"] for index in range(50_000)]))
    started = time.monotonic()
    with pytest.raises(FormatLimitError, match="more than 10,000 rows"):
        parse("rows.xlsx", data)
    assert time.monotonic() - started < 5
    assert len(parse("rows.xlsx", data, format_limits=FormatLimits(max_rows=60_000))) == 49_999


def test_xlsx_is_a_guarded_package() -> None:
    with pytest.raises(ParseError, match="XML elements"):
        parse("products.xlsx", files.products_xlsx(), PackageLimits(max_xml_elements=50))


def test_damaged_xls_and_xlsx_fail_with_a_reason() -> None:
    with pytest.raises(ParseError, match=r"\.xls file is corrupt"):
        parse("old.xls", b"not an excel 97 workbook at all")
    with pytest.raises(ParseError, match="corrupt"):
        parse("new.xlsx", b"PK\x03\x04 truncated")


def test_pptx_one_section_per_slide_with_notes() -> None:
    data = files.pptx_deck(("Roadmap", "Ship version 2 in May"), ("Pricing", "The Pro plan costs 20 euros"),
                           notes={1: "Mention the launch discount"})
    sections = parse("deck.pptx", data)
    assert [(s.page, s.text) for s in sections] == [
        (1, "Roadmap\nShip version 2 in May"),
        (2, "Pricing\nThe Pro plan costs 20 euros\nMention the launch discount"),
    ]


def test_pptx_slide_limit_and_package_guard() -> None:
    data = files.pptx_deck(*[(f"Slide {n}", "text") for n in range(5)])
    with pytest.raises(FormatLimitError, match="more than 3 slides"):
        parse("deck.pptx", data, format_limits=FormatLimits(max_slides=3))
    with pytest.raises(ParseError, match="parts, over the limit"):
        parse("deck.pptx", data, PackageLimits(max_entries=5))


def test_eml_headers_body_and_text_attachment() -> None:
    data = files.eml_message({"itinerary.txt": b"Flights are booked through TravelCo.",
                              "photo.bin": b"\x00\x01binary"})
    sections = parse("mail.eml", data)
    subject = ("Quarterly budget review",)
    assert sections[0].title_path == subject and "From: Alice Example <alice@example.com>" in sections[0].text
    assert "Subject: Quarterly budget review" in sections[0].text
    assert sections[1].text == "Hi Bob,\n\nthe travel budget for Q3 is 12,000 euros.\n\nAlice"
    assert sections[2].title_path == (*subject, "Attachment: itinerary.txt")
    assert sections[2].text == "Flights are booked through TravelCo."
    assert len(sections) == 3  # the binary attachment is skipped


def test_eml_html_only_body_is_read_as_text() -> None:
    from email.message import EmailMessage

    message = EmailMessage()
    message["Subject"] = "Newsletter"
    message.set_content("<html><body><h1>News</h1><p>The office moves to Berlin.</p></body></html>", subtype="html")
    sections = parse("news.eml", message.as_bytes())
    assert any("The office moves to Berlin." in s.text for s in sections)


def test_eml_without_headers_is_refused() -> None:
    with pytest.raises(ParseError):
        parse("mail.eml", b"\x00\x01\x02 not mail")


@pytest.mark.parametrize("fmt,extension", [("PNG", ".png"), ("JPEG", ".jpg"), ("WEBP", ".webp"), ("BMP", ".bmp"),
                                           ("TIFF", ".tiff")])
def test_image_text_by_ocr(fmt: str, extension: str) -> None:
    sections = parse("scan" + extension, files.text_image(["Invoice number 48213"], fmt=fmt))
    assert len(sections) == 1 and "48213" in sections[0].text and "Invoice" in sections[0].text


def test_huge_png_fails_fast_without_decoding() -> None:
    started = time.monotonic()
    with pytest.raises(FormatLimitError, match="megapixels"):
        parse("huge.png", files.huge_png())
    with pytest.raises(FormatLimitError, match="megapixels"):
        parse("big.png", files.huge_png(9_000, 9_000))  # under Pillow's own bomb limit, over ours
    assert time.monotonic() - started < 2


def test_image_without_text_and_non_image_fail() -> None:
    with pytest.raises(ParseError, match="OCR found no text"):
        parse("blank.png", files.text_image([]))
    with pytest.raises(ParseError, match="not in a known image format"):
        parse("fake.png", b"this is not a png")


def test_scanned_pdf_page_is_read_by_ocr() -> None:
    sections = parse("scan.pdf", files.scanned_pdf(["Warranty lasts five years"]))
    assert len(sections) == 1 and sections[0].page == 1
    assert "Warranty" in sections[0].text and "years" in sections[0].text


def test_scanned_pdf_over_the_ocr_page_limit_fails() -> None:
    with pytest.raises(FormatLimitError, match="without a text layer"):
        parse("scan.pdf", files.scanned_pdf(["Warranty"]), format_limits=FormatLimits(max_ocr_pages=0))
