"""File parsers: ``parse(filename, data)`` → sections, one module per format.

The extension picks the parser (content sniffing would let a renamed binary through to the
wrong parser); ``SUPPORTED_EXTENSIONS`` is the single list the upload route checks against,
so an upload is refused with the same rule that would later fail to parse it.

Two kinds of limits hold before and while a parser reads (both fail the document with the
reason): ZIP-based formats (``PACKAGE_FORMATS``: .docx, .xlsx, .pptx) pass
``rag.app.parsers.package``'s size and element checks before their parser sees them, and
``FormatLimits`` bounds rows, slides, pages and image pixels as they are read.
"""

from __future__ import annotations

import os
from collections.abc import Callable

from rag.app.parsers import csv, docx, eml, html, image, json, md, pdf, pptx, txt, xlsx
from rag.app.parsers.base import IngestError, ParseError, Section, UnsupportedFormatError
from rag.app.parsers.limits import FormatLimitError, FormatLimits
from rag.app.parsers.package import PackageLimitError, PackageLimits, check_package

__all__ = [
    "SUPPORTED_EXTENSIONS",
    "PACKAGE_FORMATS",
    "FormatLimitError",
    "FormatLimits",
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

Parser = Callable[[bytes, FormatLimits], list[Section]]


def _unlimited(parser: Callable[[bytes], list[Section]]) -> Parser:
    """A parser of a format whose size is bounded by its bytes alone (text, HTML, JSON)."""
    return lambda data, _limits: parser(data)


def _eml(data: bytes, limits: FormatLimits) -> list[Section]:
    """E-mail, its text attachments parsed by their own parsers within the same limits."""
    return eml.parse(data, limits, lambda name, payload: parse(name, payload, format_limits=limits))


_PARSERS: dict[str, Parser] = {
    ".txt": _unlimited(txt.parse),
    ".md": _unlimited(md.parse),
    ".markdown": _unlimited(md.parse),
    ".html": _unlimited(html.parse),
    ".htm": _unlimited(html.parse),
    ".pdf": pdf.parse,
    ".docx": _unlimited(docx.parse),
    ".csv": _unlimited(csv.parse),
    ".json": _unlimited(json.parse),
    ".xlsx": xlsx.parse_xlsx,
    ".xls": xlsx.parse_xls,
    ".pptx": pptx.parse,
    ".eml": _eml,
    **{extension: image.parse for extension in image.EXTENSIONS},
}

SUPPORTED_EXTENSIONS: tuple[str, ...] = tuple(_PARSERS)
PACKAGE_FORMATS: frozenset[str] = frozenset({".docx", ".xlsx", ".pptx"})


def file_extension(filename: str) -> str:
    """The lower-cased extension with its dot (``.pdf``), ``""`` when there is none."""
    return os.path.splitext(filename)[1].lower()


def require_supported(filename: str) -> str:
    """The file's extension, or ``UnsupportedFormatError`` naming it — the upload-time check."""
    extension = file_extension(filename)
    if extension not in _PARSERS:
        raise UnsupportedFormatError(extension, SUPPORTED_EXTENSIONS)
    return extension


def check_limits(filename: str, data: bytes, limits: PackageLimits | None = None) -> str:
    """The file's extension once it is supported, non-empty and (for a package) within ``limits``.

    The checks every reader of a file runs first, whether it wants sections (``parse``) or
    rows (the ``table``, ``qa`` and ``tag`` templates).
    """
    extension = require_supported(filename)
    if not data.strip():
        raise ParseError("The file is empty.")
    if extension in PACKAGE_FORMATS:
        check_package(data, extension, limits or PackageLimits())
    return extension


def parse(filename: str, data: bytes, limits: PackageLimits | None = None,
          format_limits: FormatLimits | None = None) -> list[Section]:
    """Sections of the file, in document order, never empty.

    Raises ``UnsupportedFormatError`` for an unknown extension and ``ParseError`` (with the
    reason in its message) for an empty, binary, damaged or text-less file, a package over
    ``limits`` (default: ``PackageLimits()``) or content over ``format_limits``.
    """
    extension = check_limits(filename, data, limits)
    sections = [section for section in _PARSERS[extension](data, format_limits or FormatLimits())
                if section.text.strip()]
    if not sections:
        raise ParseError("The file contains no text.")
    return sections
