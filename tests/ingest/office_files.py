"""Small real office files, made by the libraries that read them (openpyxl, python-pptx,
python-docx, the standard library's email, Pillow), for the parser and template tests."""

from __future__ import annotations

import datetime
import io
from email.message import EmailMessage
from typing import Any

import pytest

openpyxl = pytest.importorskip("openpyxl")
pptx = pytest.importorskip("pptx")
PIL_Image = pytest.importorskip("PIL.Image")
PIL_ImageDraw = pytest.importorskip("PIL.ImageDraw")
PIL_ImageFont = pytest.importorskip("PIL.ImageFont")
FONT = "DejaVuSans.ttf"


def xlsx(*sheets: tuple[str, list[list[Any]]]) -> bytes:
    """A workbook with one sheet per (title, rows)."""
    book = openpyxl.Workbook()
    book.remove(book.active)
    for title, rows in sheets:
        sheet = book.create_sheet(title)
        for row in rows:
            sheet.append(row)
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


def products_xlsx() -> bytes:
    return xlsx(("Products", [
        ["Name", "Price", "Stock", "Added"],
        ["Widget", 9.5, 120, datetime.datetime(2024, 3, 1)],
        ["Gadget", 24.0, 7, datetime.datetime(2024, 5, 17)],
        ["Doohickey", 3.25, 0, datetime.datetime(2023, 11, 30)],
    ]))


def faq_xlsx() -> bytes:
    return xlsx(("FAQ", [
        ["Question", "Answer"],
        ["How do I reset my password?", "Open Settings, choose Security and press Reset password."],
        ["Which payment methods are accepted?", "Visa, Mastercard and bank transfer."],
        ["Can I cancel my subscription at any time?", "Yes, cancellation takes effect at the end of the month."],
    ]))


def pptx_deck(*slides: tuple[str, str], notes: dict[int, str] | None = None) -> bytes:
    """A deck of (title, body) slides on the title-and-content layout; ``notes`` by 0-based slide."""
    deck = pptx.Presentation()
    for index, (title, body) in enumerate(slides):
        slide = deck.slides.add_slide(deck.slide_layouts[1])
        slide.shapes.title.text = title
        slide.placeholders[1].text = body
        if notes and index in notes:
            slide.notes_slide.notes_text_frame.text = notes[index]
    out = io.BytesIO()
    deck.save(out)
    return out.getvalue()


def eml_message(attachments: dict[str, bytes] | None = None, html: str | None = None) -> bytes:
    message = EmailMessage()
    message["From"] = "Alice Example <alice@example.com>"
    message["To"] = "bob@example.com"
    message["Subject"] = "Quarterly budget review"
    message["Date"] = "Mon, 03 Jun 2024 10:00:00 +0000"
    message.set_content("Hi Bob,\n\nthe travel budget for Q3 is 12,000 euros.\n\nAlice")
    if html:
        message.add_alternative(html, subtype="html")
    for name, data in (attachments or {}).items():
        maintype, subtype = ("text", "plain") if name.endswith(".txt") else ("application", "octet-stream")
        message.add_attachment(data, maintype=maintype, subtype=subtype, filename=name)
    return message.as_bytes()


def text_image(lines: list[str], fmt: str = "PNG", size: tuple[int, int] = (900, 260)) -> bytes:
    """A white image with black text, one line per entry, large enough for OCR."""
    image = PIL_Image.new("RGB", size, "white")
    draw = PIL_ImageDraw.Draw(image)
    font = PIL_ImageFont.truetype(FONT, 40)
    for index, line in enumerate(lines):
        draw.text((30, 30 + 70 * index), line, fill="black", font=font)
    out = io.BytesIO()
    image.save(out, format=fmt)
    return out.getvalue()


def huge_png(width: int = 40_000, height: int = 40_000) -> bytes:
    """A PNG header declaring ``width`` × ``height`` pixels: made small (1 × 1) by Pillow, then its
    IHDR dimensions rewritten (the CRC fixed), the way a hostile upload lies about its size."""
    import struct
    import zlib

    out = io.BytesIO()
    PIL_Image.new("L", (1, 1)).save(out, format="PNG")
    data = bytearray(out.getvalue())
    ihdr = data.index(b"IHDR")
    data[ihdr + 4:ihdr + 12] = struct.pack(">II", width, height)
    data[ihdr + 17:ihdr + 21] = struct.pack(">I", zlib.crc32(bytes(data[ihdr:ihdr + 17])))
    return bytes(data)


def scanned_pdf(lines: list[str]) -> bytes:
    """A one-page PDF holding only an image of text: no text layer, as a scanner makes it."""
    image = PIL_Image.open(io.BytesIO(text_image(lines, size=(1200, 400))))
    out = io.BytesIO()
    image.save(out, format="PDF", resolution=150)
    return out.getvalue()
