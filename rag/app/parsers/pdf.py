"""PDF: the text of each page, one section per page, with its page number.

The embedded text layer is read with pypdf. Pages without one (scans) are rendered with
PDFium (``pypdfium2``) and read by OCR (``ocr``), at most ``FormatLimits.max_ocr_pages`` of
them per document, each page's pixels checked before rendering. A PDF over
``FormatLimits.max_pages`` pages is refused before any page is read.
"""

from __future__ import annotations

import io

from pypdf import PdfReader
from pypdf.errors import FileNotDecryptedError, PyPdfError

from rag.app.parsers.base import ParseError, Section, tidy_text
from rag.app.parsers.limits import FormatLimits, over_limit
from rag.app.parsers.ocr import check_pixels, image_text

OCR_DPI = 200  # enough for 9-point text; more costs time without better recognition
POINTS_PER_INCH = 72
# A page with fewer characters than this in its text layer is treated as a scan (a stamp or
# a page number over an image is not the page's text).
MIN_TEXT_LAYER_CHARS = 16


def parse(data: bytes, limits: FormatLimits | None = None) -> list[Section]:
    limits = limits or FormatLimits()
    reader = _open(data)
    if len(reader.pages) > limits.max_pages:
        raise over_limit(len(reader.pages), limits.max_pages, "pages", "PDF", "max_pages")
    texts = {number: tidy_text(_page_text(page, number)) for number, page in enumerate(reader.pages, start=1)}
    scanned = [number for number, text in texts.items() if len(text) < MIN_TEXT_LAYER_CHARS]
    if scanned:
        texts.update({number: text for number, text in _ocr_pages(data, scanned, limits).items() if text})
    sections = [Section(text, page=number) for number, text in sorted(texts.items()) if text]
    if not sections:
        raise ParseError(
            f"The PDF has no text layer and OCR found no text on its {len(reader.pages)} page(s) "
            "(drawings only, or an unreadable scan?)."
        )
    return sections


def _open(data: bytes) -> PdfReader:
    if not data.lstrip().startswith(b"%PDF"):
        raise ParseError("The file is not a PDF (no %PDF header).")
    try:
        reader = PdfReader(io.BytesIO(data))
        if reader.is_encrypted and not reader.decrypt(""):
            raise ParseError("The PDF is encrypted with a password.")
        _ = len(reader.pages)
    except FileNotDecryptedError as exc:
        raise ParseError("The PDF is encrypted with a password.") from exc
    except (PyPdfError, ValueError, KeyError, TypeError, AttributeError, IndexError) as exc:
        # pypdf signals damaged files with assorted exception types.
        raise ParseError(f"The PDF is damaged and cannot be read: {exc}") from exc
    return reader


def _page_text(page, number: int) -> str:
    try:
        return page.extract_text() or ""
    except (PyPdfError, ValueError, KeyError, TypeError, AttributeError, IndexError) as exc:
        raise ParseError(f"Page {number} of the PDF cannot be read: {exc}") from exc


def _ocr_pages(data: bytes, numbers: list[int], limits: FormatLimits) -> dict[int, str]:
    """OCR text of the given 1-based pages; over ``max_ocr_pages`` scanned pages fails the PDF."""
    if len(numbers) > limits.max_ocr_pages:
        raise over_limit(len(numbers), limits.max_ocr_pages, "pages without a text layer (each needs OCR)", "PDF",
                         "max_ocr_pages")
    import pypdfium2

    try:
        document = pypdfium2.PdfDocument(data)
    except pypdfium2.PdfiumError as exc:
        raise ParseError(f"The PDF's scanned pages cannot be rendered for OCR: {exc}") from exc
    scale = OCR_DPI / POINTS_PER_INCH
    texts = {}
    try:
        for number in numbers:
            page = document[number - 1]
            width, height = page.get_size()
            check_pixels(int(width * scale), int(height * scale), limits.max_image_pixels, f"PDF's page {number}")
            image = page.render(scale=scale).to_pil()
            texts[number] = tidy_text(image_text(image))
    finally:
        document.close()
    return texts
