"""Real binary documents built in code, so no opaque fixtures are committed.

PDFs come from fpdf2 (a test-only dependency: pypdf reads text layers but cannot easily
write them); Word files from python-docx, the library the parser itself uses.
"""

from __future__ import annotations

import io
import zipfile

import docx
import pytest

fpdf = pytest.importorskip("fpdf", reason="fpdf2 builds the test PDFs: pip install fpdf2==2.8.9")


def pdf_with_pages(*pages: str) -> bytes:
    """A PDF with a real text layer, one page per argument."""
    document = fpdf.FPDF()
    document.set_font("helvetica", size=12)
    for text in pages:
        document.add_page()
        document.multi_cell(0, 8, text)
    return bytes(document.output())


def pdf_without_text() -> bytes:
    """A two-page PDF of drawings only, like a scan: it has pages but no text layer."""
    document = fpdf.FPDF()
    for _ in range(2):
        document.add_page()
        document.rect(20, 20, 100, 60, style="F")
    return bytes(document.output())


def docx_document() -> bytes:
    """Title, nested headings, body paragraphs and a table, in that order."""
    document = docx.Document()
    document.add_heading("Handbook", level=0)
    document.add_paragraph("Welcome to the handbook.")
    document.add_heading("Setup", level=1)
    document.add_paragraph("Install the package first.")
    document.add_heading("Linux", level=2)
    document.add_paragraph("Use apt on Debian.")
    table = document.add_table(rows=2, cols=2)
    for row, cells in zip(table.rows, [("Tool", "Version"), ("apt", "2.6")], strict=True):
        for cell, text in zip(row.cells, cells, strict=True):
            cell.text = text
    document.add_heading("Support", level=1)
    document.add_paragraph("Write to the help desk.")
    buffer = io.BytesIO()
    document.save(buffer)
    return buffer.getvalue()


def docx_with_broken_xml() -> bytes:
    """A valid ZIP package whose main document part is not XML."""
    source = zipfile.ZipFile(io.BytesIO(docx_document()))
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as target:
        for item in source.infolist():
            data = b"<w:document><broken" if item.filename == "word/document.xml" else source.read(item)
            target.writestr(item, data)
    return buffer.getvalue()


def docx_of_empty_paragraphs(paragraphs: int, text: str = "") -> bytes:
    """A real .docx (python-docx) whose body then gets ``paragraphs`` more paragraphs, written
    back with zipfile at the highest compression: the decompression bomb of issue 18 (2 million
    empty paragraphs fit in about 50 KB). With ``text``, each paragraph holds it (a long but
    legitimate document)."""
    document = docx.Document()
    document.add_paragraph("The first paragraph.")
    buffer = io.BytesIO()
    document.save(buffer)
    paragraph = f"<w:p><w:r><w:t>{text}</w:t></w:r></w:p>".encode() if text else b"<w:p/>"
    source = zipfile.ZipFile(io.BytesIO(buffer.getvalue()))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as package:
        for item in source.infolist():
            data = source.read(item.filename)
            if item.filename == "word/document.xml":
                data = data.replace(b"<w:body>", b"<w:body>" + paragraph * paragraphs, 1)
            package.writestr(item.filename, data)
    return out.getvalue()
