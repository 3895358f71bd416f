"""Word (.docx): paragraphs and tables in document order; Heading/Title styles give the path.

Tables are kept (rows as ``cell | cell`` lines) because specifications and price lists put
the facts people ask about in tables.
"""

from __future__ import annotations

import io
import re
import zipfile

import docx
from docx.opc.exceptions import PackageNotFoundError
from docx.table import Table
from docx.text.paragraph import Paragraph
from lxml import etree

from rag.app.parsers.base import ParseError, Section, SectionBuilder

_HEADING_STYLE = re.compile(r"^heading\s*(\d)$", re.IGNORECASE)
# python-docx inflates every part in memory: refuse packages that would expand beyond this.
MAX_EXPANDED_BYTES = 512 * 2**20


def parse(data: bytes) -> list[Section]:
    document = _open(data)
    builder = SectionBuilder()
    for block in document.iter_inner_content():
        if isinstance(block, Paragraph):
            _add_paragraph(block, builder)
        elif isinstance(block, Table):
            builder.add_text(_table_text(block) + "\n")
    return builder.sections()


def _open(data: bytes) -> docx.document.Document:
    if not zipfile.is_zipfile(io.BytesIO(data)):
        raise ParseError("The .docx file is corrupt or truncated (not a valid ZIP package).")
    with zipfile.ZipFile(io.BytesIO(data)) as package:
        expanded = sum(item.file_size for item in package.infolist())
    if expanded > MAX_EXPANDED_BYTES:
        raise ParseError(f"The .docx file expands to {expanded // 2**20} MiB, over the "
                         f"{MAX_EXPANDED_BYTES // 2**20} MiB limit (a ZIP bomb?).")
    try:
        return docx.Document(io.BytesIO(data))
    except (PackageNotFoundError, zipfile.BadZipFile, KeyError, ValueError) as exc:
        raise ParseError(f"The .docx file is corrupt or not a Word document: {exc}") from exc
    except etree.XMLSyntaxError as exc:
        raise ParseError(f"The .docx file has damaged XML: {exc}") from exc


def _add_paragraph(paragraph: Paragraph, builder: SectionBuilder) -> None:
    level = _heading_level(paragraph)
    if level is not None:
        builder.add_heading(level, paragraph.text)
    else:
        builder.add_text(paragraph.text + "\n")


def _heading_level(paragraph: Paragraph) -> int | None:
    """N for a Heading N style, 0 for Title (above every heading), ``None`` for body text."""
    name = paragraph.style.name if paragraph.style is not None else ""
    if name.lower() == "title":
        return 0
    match = _HEADING_STYLE.match(name)
    return int(match.group(1)) if match else None


def _table_text(table: Table) -> str:
    rows = []
    for row in table.rows:
        cells = [" ".join(cell.text.split()) for cell in row.cells]
        if any(cells):
            rows.append(" | ".join(cells))
    return "\n".join(rows)
