"""Rows of cells from spreadsheets and delimited text: what ``table``, ``qa`` and ``tag`` read.

Cells keep the type the file gives them (``int``, ``float``, ``datetime``, ``bool``, ``str``)
so the ``table`` template can record column types; delimited text gives strings only.

Reading streams (openpyxl's read-only mode) and counts as it goes, so a sheet over
``FormatLimits.max_rows`` fails at the first row over the limit instead of after loading
everything. Rows with no value are skipped but counted against a scan budget
(``SCAN_FACTOR`` × the row limit) so a sheet of a million empty rows cannot keep a parse busy.
"""

from __future__ import annotations

import csv as csv_module
import datetime
import io
import zipfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from rag.app.parsers.base import ParseError
from rag.app.parsers.limits import FormatLimits, over_limit
from rag.app.parsers.txt import decode_text

SHEET_EXTENSIONS = (".xlsx", ".xls", ".csv", ".txt")
SCAN_FACTOR = 10
MAX_COLUMNS = 1_000  # cells past this in a row are dropped: no real table is that wide
Cell = Any


@dataclass(frozen=True)
class Sheet:
    """One sheet's non-empty rows, trailing empty cells trimmed; ``None`` is an empty cell."""

    name: str
    rows: list[list[Cell]]


def read_sheets(extension: str, data: bytes, limits: FormatLimits) -> list[Sheet]:
    """The sheets of an .xlsx/.xls/.csv/.txt file, within ``limits.max_rows`` rows in all."""
    counter = _RowCounter(limits, extension)
    if extension == ".xlsx":
        sheets = _xlsx_sheets(data, counter)
    elif extension == ".xls":
        sheets = _xls_sheets(data, counter)
    elif extension in (".csv", ".txt"):
        sheets = [Sheet("", counter.take(_delimited_rows(decode_text(data), extension)))]
    else:
        raise ParseError(f"{extension} is not a spreadsheet or delimited text file.")
    sheets = [sheet for sheet in sheets if sheet.rows]
    if not sheets:
        raise ParseError(f"The {extension} file has no rows.")
    return sheets


class _RowCounter:
    """Keeps non-empty rows, counting them (and all rows scanned) against the limits."""

    def __init__(self, limits: FormatLimits, kind: str) -> None:
        self._limits = limits
        self._kind = kind
        self.kept = 0
        self.scanned = 0

    @property
    def _scan_budget(self) -> int:
        return self._limits.max_rows * SCAN_FACTOR

    def expect(self, rows: int) -> None:
        """Fail before reading when a format declares more rows than the scan budget (.xls)."""
        if self.scanned + rows > self._scan_budget:
            raise over_limit(self.scanned + rows, self._scan_budget, "rows", self._kind, "max_rows")

    def take(self, rows: Iterable[Iterable[Cell]]) -> list[list[Cell]]:
        kept = []
        for raw in rows:
            self.scanned += 1
            if self.scanned > self._scan_budget:
                raise over_limit(self.scanned, self._scan_budget, "rows (most of them empty)", self._kind, "max_rows")
            row = _trimmed(raw)
            if row:
                self.kept += 1
                if self.kept > self._limits.max_rows:
                    raise over_limit(self.kept, self._limits.max_rows, "rows", self._kind, "max_rows")
                kept.append(row)
        return kept


def _trimmed(raw: Iterable[Cell]) -> list[Cell]:
    row = [_clean(cell) for _, cell in zip(range(MAX_COLUMNS), raw, strict=False)]
    while row and row[-1] is None:
        row.pop()
    return row


def _clean(cell: Cell) -> Cell:
    if isinstance(cell, str):
        cell = cell.strip()
        return cell or None
    return cell


def _xlsx_sheets(data: bytes, counter: _RowCounter) -> list[Sheet]:
    import openpyxl  # imported here: only spreadsheet parses pay for it

    try:
        book = openpyxl.load_workbook(io.BytesIO(data), read_only=True, data_only=True)
    except (zipfile.BadZipFile, KeyError, ValueError, OSError, TypeError) as exc:
        raise ParseError(f"The .xlsx file is corrupt or not a workbook: {exc}") from exc
    try:
        return [Sheet(sheet.title, counter.take(sheet.iter_rows(values_only=True))) for sheet in book.worksheets]
    except (KeyError, ValueError, TypeError, AttributeError) as exc:
        raise ParseError(f"The .xlsx file has a damaged sheet: {exc}") from exc
    finally:
        book.close()


def _xls_sheets(data: bytes, counter: _RowCounter) -> list[Sheet]:
    import xlrd

    try:
        book = xlrd.open_workbook(file_contents=data, on_demand=True)
    except (xlrd.XLRDError, AssertionError, ValueError, IndexError, KeyError, EOFError) as exc:
        raise ParseError(f"The .xls file is corrupt or not an Excel 97-2003 workbook: {exc}") from exc
    sheets = []
    for index in range(book.nsheets):
        sheet = book.sheet_by_index(index)
        counter.expect(sheet.nrows)
        sheets.append(Sheet(sheet.name, counter.take(_xls_rows(sheet, book.datemode))))
        book.unload_sheet(index)
    return sheets


def _xls_rows(sheet: Any, datemode: int) -> Iterator[list[Cell]]:
    import xlrd

    for row in range(sheet.nrows):
        yield [_xls_value(cell, datemode, xlrd) for cell in sheet.row(row)[:MAX_COLUMNS]]


def _xls_value(cell: Any, datemode: int, xlrd: Any) -> Cell:
    if cell.ctype in (xlrd.XL_CELL_EMPTY, xlrd.XL_CELL_BLANK, xlrd.XL_CELL_ERROR):
        return None
    if cell.ctype == xlrd.XL_CELL_DATE:
        try:
            return xlrd.xldate.xldate_as_datetime(cell.value, datemode)
        except (ValueError, OverflowError, xlrd.xldate.XLDateError):
            return cell.value
    if cell.ctype == xlrd.XL_CELL_BOOLEAN:
        return bool(cell.value)
    if cell.ctype == xlrd.XL_CELL_NUMBER and float(cell.value).is_integer():
        return int(cell.value)
    return cell.value


def _delimited_rows(text: str, extension: str) -> Iterator[list[str]]:
    """CSV by its sniffed dialect; .txt lines split on tabs, or on commas when a line has no tab
    (RAGFlow's rule for Q&A and tag text files)."""
    if extension == ".csv":
        from rag.app.parsers.csv import read_rows

        yield from read_rows(text)
        return
    for line in text.splitlines():
        if line.strip():
            yield next(csv_module.reader([line], delimiter="\t" if "\t" in line else ","))


def cell_text(cell: Cell) -> str:
    """A cell as the text a chunk shows: whole numbers without ``.0``, dates in ISO form."""
    if cell is None:
        return ""
    if isinstance(cell, bool):
        return "true" if cell else "false"
    if isinstance(cell, float) and cell.is_integer():
        return str(int(cell))
    if isinstance(cell, datetime.datetime):
        return cell.date().isoformat() if cell.time() == datetime.time() else cell.isoformat(sep=" ")
    if isinstance(cell, datetime.date | datetime.time):
        return cell.isoformat()
    return " ".join(str(cell).split())
