"""File parsers: ``parse(filename, data)`` → sections, one module per format.

The extension picks the parser (content sniffing would let a renamed binary through to the
wrong parser); ``SUPPORTED_EXTENSIONS`` is the single list the upload route checks against,
so an upload is refused with the same rule that would later fail to parse it.

ZIP-based formats (``PACKAGE_FORMATS``) pass ``rag.app.parsers.package``'s limits before
their parser sees them; a new one (.xlsx, .pptx) is guarded by being listed there.
"""

from __future__ import annotations

import os
from collections.abc import Callable

from rag.app.parsers import csv, docx, html, json, md, pdf, txt
from rag.app.parsers.base import IngestError, ParseError, Section, UnsupportedFormatError
from rag.app.parsers.package import PackageLimitError, PackageLimits, check_package

__all__ = [
    "SUPPORTED_EXTENSIONS",
    "PACKAGE_FORMATS",
    "IngestError",
    "PackageLimitError",
    "PackageLimits",
    "ParseError",
    "Section",
    "UnsupportedFormatError",
    "file_extension",
    "parse",
    "require_supported",
]

_PARSERS: dict[str, Callable[[bytes], list[Section]]] = {
    ".txt": txt.parse,
    ".md": md.parse,
    ".markdown": md.parse,
    ".html": html.parse,
    ".htm": html.parse,
    ".pdf": pdf.parse,
    ".docx": docx.parse,
    ".csv": csv.parse,
    ".json": json.parse,
}

SUPPORTED_EXTENSIONS: tuple[str, ...] = tuple(_PARSERS)
PACKAGE_FORMATS: frozenset[str] = frozenset({".docx"})


def file_extension(filename: str) -> str:
    """The lower-cased extension with its dot (``.pdf``), ``""`` when there is none."""
    return os.path.splitext(filename)[1].lower()


def require_supported(filename: str) -> str:
    """The file's extension, or ``UnsupportedFormatError`` naming it — the upload-time check."""
    extension = file_extension(filename)
    if extension not in _PARSERS:
        raise UnsupportedFormatError(extension, SUPPORTED_EXTENSIONS)
    return extension


def parse(filename: str, data: bytes, limits: PackageLimits | None = None) -> list[Section]:
    """Sections of the file, in document order, never empty.

    Raises ``UnsupportedFormatError`` for an unknown extension and ``ParseError`` (with the
    reason in its message) for an empty, binary, damaged or text-less file, or a package over
    ``limits`` (default: ``PackageLimits()``).
    """
    extension = require_supported(filename)
    parser = _PARSERS[extension]
    if not data.strip():
        raise ParseError("The file is empty.")
    if extension in PACKAGE_FORMATS:
        check_package(data, extension, limits or PackageLimits())
    sections = [section for section in parser(data) if section.text.strip()]
    if not sections:
        raise ParseError("The file contains no text.")
    return sections
