"""Excel workbooks (.xlsx through openpyxl, .xls through xlrd): one section per row.

Like CSV, each row reads ``column: value; column: value`` with the first row of its sheet as
the column names, so a chunk of rows 500 to 520 still says which number is which. Sections of
a workbook with several sheets carry the sheet's name as their heading. The row limit and
streaming read are ``sheets.read_sheets``'s.
"""

from __future__ import annotations

from rag.app.parsers.base import Section
from rag.app.parsers.limits import FormatLimits
from rag.app.parsers.sheets import Sheet, cell_text, read_sheets


def parse_xlsx(data: bytes, limits: FormatLimits) -> list[Section]:
    return _sections(read_sheets(".xlsx", data, limits))


def parse_xls(data: bytes, limits: FormatLimits) -> list[Section]:
    return _sections(read_sheets(".xls", data, limits))


def _sections(sheets: list[Sheet]) -> list[Section]:
    named = len(sheets) > 1
    sections = []
    for sheet in sheets:
        path = (sheet.name,) if named and sheet.name else ()
        header = [cell_text(cell) for cell in sheet.rows[0]]
        if len(sheet.rows) == 1:
            sections.append(Section(", ".join(name for name in header if name), path))
            continue
        names = [name or f"column{index}" for index, name in enumerate(header, start=1)]
        for row in sheet.rows[1:]:
            line = row_line(names, row)
            if line:
                sections.append(Section(line, path))
    return sections


def row_line(names: list[str], row: list) -> str:
    """``name: value; name: value`` for the row's non-empty cells (extra cells get ``columnN``)."""
    pairs = []
    for index, cell in enumerate(row):
        value = cell_text(cell)
        if value:
            name = names[index] if index < len(names) else f"column{index + 1}"
            pairs.append(f"{name}: {value}")
    return "; ".join(pairs)
