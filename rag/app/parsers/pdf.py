"""PDF: the text layer of each page, one section per page, with its page number.

Only the embedded text layer is read (pypdf); a scanned PDF has none and is refused with a
reason that says so, instead of silently producing a document with no chunks. OCR is out
of scope.
"""

from __future__ import annotations

import io

from pypdf import PdfReader
from pypdf.errors import FileNotDecryptedError, PyPdfError

from rag.app.parsers.base import ParseError, Section, tidy_text


def parse(data: bytes) -> list[Section]:
    reader = _open(data)
    sections = []
    for number, page in enumerate(reader.pages, start=1):
        text = tidy_text(_page_text(page, number))
        if text:
            sections.append(Section(text, page=number))
    if not sections:
        raise ParseError(
            f"The PDF has no text layer ({len(reader.pages)} page(s) of images or scans?); "
            "OCR is not supported."
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
