"""The sheets of an uploaded file for the row-based templates (table, qa, tag)."""

from __future__ import annotations

from rag.app.parsers import ParseError, check_limits
from rag.app.parsers.limits import ReadLimits
from rag.app.parsers.sheets import SHEET_EXTENSIONS, Sheet, read_sheets


def read_sheet_file(method: str, filename: str, data: bytes, limits: ReadLimits) -> list[Sheet]:
    """Sheets of an .xlsx/.xls/.csv/.txt file; ``ParseError`` naming ``method`` for other types."""
    extension = check_limits(filename, data, limits.package)
    if extension not in SHEET_EXTENSIONS:
        raise ParseError(f"The {method} chunk method reads {', '.join(SHEET_EXTENSIONS)} files, "
                         f"not {extension}; choose another chunk method for this document.")
    return read_sheets(extension, data, limits.formats)
