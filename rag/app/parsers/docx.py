"""Word (.docx): paragraphs and tables in document order; Heading/Title styles give the path.

Tables are kept (rows as ``cell | cell`` lines) because specifications and price lists put
the facts people ask about in tables.

The package's size and element count are checked before this parser runs
(``rag.app.parsers.package``). Style names are looked up once per style, not once per
paragraph: python-docx's ``paragraph.style`` scans every style of the document for the
default one, about a millisecond per paragraph, which made a file of 100,000 empty
paragraphs cost 100 CPU-seconds.
"""

from __future__ import annotations

import io
import re
import zipfile

import docx
from docx.enum.style import WD_STYLE_TYPE
from docx.opc.exceptions import PackageNotFoundError
from docx.table import Table
from docx.text.paragraph import Paragraph
from lxml import etree

from rag.app.parsers.base import ParseError, Section, SectionBuilder

_HEADING_STYLE = re.compile(r"^heading\s*(\d)$", re.IGNORECASE)


def parse(data: bytes) -> list[Section]:
    document = _open(data)
    levels = _heading_levels(document)
    builder = SectionBuilder()
    for block in document.iter_inner_content():
        if isinstance(block, Paragraph):
            _add_paragraph(block, builder, levels)
        elif isinstance(block, Table):
            builder.add_text(_table_text(block) + "\n")
    return builder.sections()


def _open(data: bytes) -> docx.document.Document:
    try:
        return docx.Document(io.BytesIO(data))
    except (PackageNotFoundError, zipfile.BadZipFile, KeyError, ValueError) as exc:
        raise ParseError(f"The .docx file is corrupt or not a Word document: {exc}") from exc
    except etree.XMLSyntaxError as exc:
        raise ParseError(f"The .docx file has damaged XML: {exc}") from exc


class _HeadingLevels:
    """Heading level by paragraph style id, for the styles of one document (read once)."""

    def __init__(self, by_id: dict[str, int | None], default: int | None) -> None:
        self._by_id = by_id
        self._default = default

    def of(self, paragraph: Paragraph) -> int | None:
        """N for a Heading N style, 0 for Title (above every heading), ``None`` for body text.

        Like python-docx, an unknown or missing style id means the default paragraph style.
        """
        style_id = paragraph._p.style  # the w:pStyle value; ``paragraph.style`` is the slow path
        return self._by_id.get(style_id, self._default) if style_id else self._default


def _heading_levels(document: docx.document.Document) -> _HeadingLevels:
    styles = document.styles
    by_id = {style.style_id: _level_of(style.name) for style in styles if style.type == WD_STYLE_TYPE.PARAGRAPH}
    default = styles.default(WD_STYLE_TYPE.PARAGRAPH)
    return _HeadingLevels(by_id, _level_of(default.name) if default is not None else None)


def _level_of(style_name: str | None) -> int | None:
    name = style_name or ""
    if name.lower() == "title":
        return 0
    match = _HEADING_STYLE.match(name)
    return int(match.group(1)) if match else None


def _add_paragraph(paragraph: Paragraph, builder: SectionBuilder, levels: _HeadingLevels) -> None:
    text = paragraph.text
    level = levels.of(paragraph) if text.strip() else None  # an empty heading names nothing
    if level is not None:
        builder.add_heading(level, text)
    else:
        builder.add_text(text + "\n")


def _table_text(table: Table) -> str:
    rows = []
    for row in table.rows:
        cells = [" ".join(cell.text.split()) for cell in row.cells]
        if any(cells):
            rows.append(" | ".join(cells))
    return "\n".join(rows)
