"""``chunk_method`` table: one chunk per row of a spreadsheet or CSV, each value under its header.

A row reads ``Name: Widget; Price: 9.5; Added: 2024-03-01``. The first row of each sheet is
its header. Each column's type is inferred from its values (``int``, ``float``, ``date``,
``bool``, else text; a column takes a type when ``TYPE_SHARE`` of its values have it) and every
row also carries its values as typed fields named as RAGFlow names them, the header made
safe plus a suffix: ``price_flt``, ``stock_long``, ``added_dt`` (``YYYY-MM-DD HH:MM:SS``),
``in_stock_kwd`` / ``name_kwd`` (exact text), so numbers and dates can be filtered. A row is one
chunk whatever ``chunk_token_num`` says, as in RAGFlow. As in RAGFlow, the dataset records which
fields its tables have in ``parser_config.field_map`` (field → column header, ``field_map()``,
merged in by the worker after each table document), so a client or a query builder can see
the columns and their types without reading chunks.
"""

from __future__ import annotations

import datetime
import re
from collections import Counter
from typing import Any

from rag.app.naive import ChunkText
from rag.app.parsers.limits import ReadLimits
from rag.app.parsers.sheets import Cell, Sheet, cell_text
from rag.app.parsers.xlsx import row_line
from rag.app.sheet_files import read_sheet_file
from rag.utils.token_utils import num_tokens

TYPE_SHARE = 0.9
SUFFIX = {"int": "_long", "float": "_flt", "date": "_dt", "bool": "_kwd", "text": "_kwd"}
_DATE_FORMATS = ("%Y-%m-%d", "%Y/%m/%d", "%Y-%m-%d %H:%M:%S", "%Y-%m-%dT%H:%M:%S", "%d.%m.%Y")
_BOOLS = {"true": True, "false": False, "yes": True, "no": False}


def chunk_file(filename: str, data: bytes, parser_config: dict | None, limits: ReadLimits) -> list[ChunkText]:
    chunks: list[ChunkText] = []
    sheets = read_sheet_file("table", filename, data, limits)
    for sheet in sheets:
        chunks.extend(sheet_chunks(sheet, len(sheets) > 1))
    return chunks


def sheet_chunks(sheet: Sheet, named: bool) -> list[ChunkText]:
    """One chunk per data row of ``sheet`` (a sheet of one row is one chunk of its header)."""
    heading = sheet.name if named and sheet.name else None
    header = [cell_text(cell) or f"column{index}" for index, cell in enumerate(sheet.rows[0], start=1)]
    if len(sheet.rows) == 1:
        content = ", ".join(header)
        return [ChunkText(content, num_tokens(content), heading)]
    body = sheet.rows[1:]
    types = [column_type([row[index] if index < len(row) else None for row in body]) for index in range(len(header))]
    names = field_names(header, types)
    columns = tuple(zip(names, header, strict=True))
    chunks = []
    for row in body:
        content = row_line(header, row)
        if content:
            fields = tuple((name, value) for name, kind, cell in zip(names, types, row, strict=False)
                           if (value := typed_value(cell, kind)) is not None)
            chunks.append(ChunkText(content, num_tokens(content), heading, fields=fields, columns=columns))
    return chunks


def field_map(chunks: list[ChunkText]) -> dict[str, str]:
    """RAGFlow's ``parser_config.field_map`` of a table document: typed field → column header,
    over all its sheets (the field's suffix says the column's type)."""
    found: dict[str, str] = {}
    for piece in chunks:
        for name, header in piece.columns:
            found.setdefault(name, header)
    return found


def column_type(cells: list[Cell]) -> str:
    """``int``, ``float``, ``date``, ``bool`` or ``text``: the type ``TYPE_SHARE`` of the values share."""
    kinds = Counter(_kind(cell) for cell in cells if cell is not None)
    total = sum(kinds.values())
    if not total:
        return "text"
    for kind in ("bool", "int", "date"):
        if kinds[kind] >= TYPE_SHARE * total:
            return kind
    if kinds["int"] + kinds["float"] >= TYPE_SHARE * total:
        return "float"
    return "text"


def _kind(cell: Cell) -> str:
    if isinstance(cell, bool) or (isinstance(cell, str) and cell.lower() in _BOOLS):
        return "bool"
    if isinstance(cell, datetime.date) or _parse_date(cell) is not None:
        return "date"
    number = _number(cell)
    if number is None:
        return "text"
    return "int" if isinstance(number, int) else "float"


def _number(cell: Cell) -> int | float | None:
    if isinstance(cell, int | float) and not isinstance(cell, bool):
        return cell
    if isinstance(cell, str):
        text = cell.replace(",", "") if re.fullmatch(r"-?\d{1,3}(,\d{3})+(\.\d+)?", cell) else cell
        for kind in (int, float):
            try:
                return kind(text)
            except ValueError:
                pass
    return None


def _parse_date(cell: Cell) -> datetime.datetime | None:
    if isinstance(cell, datetime.datetime):
        return cell
    if isinstance(cell, datetime.date):
        return datetime.datetime.combine(cell, datetime.time())
    if isinstance(cell, str):
        for form in _DATE_FORMATS:
            try:
                return datetime.datetime.strptime(cell, form)
            except ValueError:
                pass
    return None


def typed_value(cell: Cell, kind: str) -> Any:
    """The cell as its column's type, ``None`` when it is empty or does not have that type."""
    if cell is None:
        return None
    if kind == "bool":
        return cell if isinstance(cell, bool) else _BOOLS.get(str(cell).lower())
    if kind == "date":
        moment = _parse_date(cell)
        return moment.isoformat(sep=" ", timespec="seconds") if moment else None
    if kind in ("int", "float"):
        number = _number(cell)
        if number is None:
            return None
        return int(number) if kind == "int" and float(number).is_integer() else float(number)
    return cell_text(cell)


def field_names(header: list[str], types: list[str]) -> list[str]:
    """RAGFlow-style field names: the header lower-cased, non-word characters as ``_``, a type
    suffix; a repeated name gets ``_2``, ``_3``."""
    names: list[str] = []
    for title, kind in zip(header, types, strict=True):
        base = re.sub(r"\W+", "_", title.lower(), flags=re.ASCII).strip("_") or "column"
        name = base + SUFFIX[kind]
        count = 2
        while name in names:
            name = f"{base}_{count}{SUFFIX[kind]}"
            count += 1
        names.append(name)
    return names
