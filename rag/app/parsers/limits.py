"""Per-format limits: rows, slides, pages and image pixels a single document may hold.

The package check (``package.py``) stops a ZIP bomb before any parser sees it, and the parse
child's time and memory caps stop whatever slips through, but only after they are spent (up
to minutes of a parse slot). These limits are checked while reading, as soon as a count goes
over, so a hostile file fails in well under a second with a message that says what was too
large. The defaults fit real documents: a 10,000-row sheet is a large FAQ or price list, and
an image of 50 megapixels is a 7,000 × 7,000 scan. Each is a setting (``SETTINGS``, read in
``api.settings`` and handed to the parse children by ``rag.svr.parse_processes``); a document
over one fails with a message naming the setting that would let it through.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from rag.app.parsers.base import ParseError
from rag.app.parsers.package import PackageLimits

MEGAPIXEL = 1_000_000


@dataclass(frozen=True)
class FormatLimits:
    """What one document may hold, per kind of content."""

    max_rows: int = 10_000  # spreadsheet / CSV rows, all sheets together
    max_slides: int = 2_000
    max_pages: int = 5_000  # PDF pages
    max_ocr_pages: int = 200  # PDF pages without a text layer, each rendered and OCRed
    max_image_pixels: int = 50 * MEGAPIXEL  # one image's width × height, before it is decoded
    max_attachments: int = 50  # an e-mail's attachments read


# The environment variable that sets each limit (``api.settings.ENV_NAMES``), named in errors.
SETTINGS = {
    "max_rows": "RAGLINE_PARSE_MAX_ROWS",
    "max_slides": "RAGLINE_PARSE_MAX_SLIDES",
    "max_pages": "RAGLINE_PARSE_MAX_PAGES",
    "max_ocr_pages": "RAGLINE_PARSE_MAX_OCR_PAGES",
    "max_image_pixels": "RAGLINE_PARSE_MAX_IMAGE_MEGAPIXELS",
    "max_attachments": "RAGLINE_PARSE_MAX_ATTACHMENTS",
}


class FormatLimitError(ParseError):
    """The document holds more of something than its limit: it fails, nothing is chunked."""


def over_limit(count: int, limit: int, what: str, kind: str, limit_name: str) -> FormatLimitError:
    """The error for ``count`` ``what`` in a ``kind`` file over ``limit``, in one wording that
    names the setting of ``limit_name`` (a ``FormatLimits`` field)."""
    return FormatLimitError(f"The {kind} file holds more than {limit:,} {what}, the limit per document "
                            f"({SETTINGS[limit_name]}; it has at least {count:,}); split it into smaller files.")


@dataclass(frozen=True)
class ReadLimits:
    """Every limit a document is read under: its package's and its content's."""

    package: PackageLimits = field(default_factory=PackageLimits)
    formats: FormatLimits = field(default_factory=FormatLimits)
