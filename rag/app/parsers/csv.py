"""CSV: one section per row, each row as ``column: value; column: value``.

Repeating the header in every row keeps each chunk self-explaining: a chunk holding rows 500
to 520 still says which number is the price and which the stock.
"""

from __future__ import annotations

import csv
import io

from rag.app.parsers.base import ParseError, Section
from rag.app.parsers.txt import decode_text

_DELIMITERS = ",;\t|"


def parse(data: bytes) -> list[Section]:
    text = decode_text(data)
    rows = read_rows(text)
    if not rows:
        raise ParseError("The CSV file has no rows.")
    if len(rows) == 1:
        return [Section(", ".join(rows[0]))]
    header = _column_names(rows[0])
    return [Section(line) for line in (_row_line(header, row) for row in rows[1:]) if line]


def read_rows(text: str) -> list[list[str]]:
    """Non-empty rows of stripped cells, in the dialect sniffed from the first 8 KiB."""
    try:
        dialect = csv.Sniffer().sniff(text[:8192], delimiters=_DELIMITERS)
    except csv.Error:
        dialect = csv.excel
    try:
        rows = list(csv.reader(io.StringIO(text), dialect))
    except csv.Error as exc:
        raise ParseError(f"The CSV file is malformed: {exc}") from exc
    return [[cell.strip() for cell in row] for row in rows if any(cell.strip() for cell in row)]


def _column_names(header: list[str]) -> list[str]:
    return [name or f"column{index}" for index, name in enumerate(header, start=1)]


def _row_line(header: list[str], row: list[str]) -> str:
    pairs = []
    for index, value in enumerate(row):
        if value:
            name = header[index] if index < len(header) else f"column{index + 1}"
            pairs.append(f"{name}: {value}")
    return "; ".join(pairs)
