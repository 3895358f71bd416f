"""Limits for ZIP-based formats (.docx today; .xlsx and .pptx are the same kind of package).

A package of a few kilobytes can expand to gigabytes (a decompression bomb), or to a few
megabytes of XML that hold millions of elements: an 18 KB .docx of empty paragraphs held
two million of them, and python-docx spent minutes and a gigabyte on its object model. The
parsers of these formats build their whole tree in memory, so the package is checked before
any of them sees it, cheaply and with bounded memory:

- the entry count and the sum of the entries' declared sizes (``zipfile`` never inflates an
  entry beyond its declared size: a lying header ends in a CRC error, not in more data);
- the elements of every XML part, counted by a streaming parse that discards each element
  once counted, and stopped at the first element over the limit.

``check_package`` is format-agnostic: a new ZIP-based format is guarded by being listed in
``rag.app.parsers.PACKAGE_FORMATS``.
"""

from __future__ import annotations

import io
import zipfile
from dataclasses import dataclass

from lxml import etree

from rag.app.parsers.base import ParseError

MIB = 2**20
XML_SUFFIXES = (".xml", ".rels")


@dataclass(frozen=True)
class PackageLimits:
    """What one package may hold; the defaults are the settings' defaults (``api.settings``)."""

    max_expanded_bytes: int = 256 * MIB
    max_entries: int = 10_000
    max_xml_elements: int = 1_000_000


class PackageLimitError(ParseError):
    """The package is over a limit: the document fails with the reason, nothing is parsed."""


def check_package(data: bytes, kind: str, limits: PackageLimits) -> None:
    """Raise ``ParseError`` unless ``data`` is a ZIP package within ``limits``.

    ``kind`` names the format in messages (``.docx``). Corrupt packages get the same message
    their parser would give, so the reason shown does not depend on which check ran first.
    """
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as package:
            _check_entries(package, kind, limits)
            _check_elements(package, kind, limits)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, NotImplementedError) as error:
        raise ParseError(f"The {kind} file is corrupt or truncated (not a valid ZIP package): {error}") from error


def _check_entries(package: zipfile.ZipFile, kind: str, limits: PackageLimits) -> None:
    entries = package.infolist()
    if len(entries) > limits.max_entries:
        raise PackageLimitError(f"The {kind} file holds {len(entries)} parts, over the limit of "
                                f"{limits.max_entries} (a decompression bomb?).")
    expanded = sum(entry.file_size for entry in entries)
    if expanded > limits.max_expanded_bytes:
        raise PackageLimitError(
            f"The {kind} file expands to {expanded / MIB:.0f} MiB, over the limit of "
            f"{limits.max_expanded_bytes / MIB:.0f} MiB (RAGLINE_PARSE_MAX_EXPANDED_MB; a decompression bomb?).")


def _check_elements(package: zipfile.ZipFile, kind: str, limits: PackageLimits) -> None:
    """Count the elements of every XML part against one budget for the whole package."""
    elements = 0
    for entry in package.infolist():
        if entry.filename.lower().endswith(XML_SUFFIXES):
            elements += _count_elements(package, entry, limits.max_xml_elements - elements)
            if elements > limits.max_xml_elements:
                raise PackageLimitError(
                    f"The {kind} file holds more than {limits.max_xml_elements:,} XML elements, the limit "
                    "(RAGLINE_PARSE_MAX_XML_ELEMENTS; a decompression bomb?).")


def _count_elements(package: zipfile.ZipFile, entry: zipfile.ZipInfo, budget: int) -> int:
    """Elements of one XML part, counting at most ``budget + 1`` of them.

    Damaged XML is left to the format's parser to report. Entities are not expanded
    (``resolve_entities=False``), so they cannot be a second bomb inside the count.
    """
    count = 0
    with package.open(entry) as stream:
        parser = etree.iterparse(stream, events=("end",), resolve_entities=False, no_network=True,
                                 huge_tree=False)
        try:
            for _, element in parser:
                count += 1
                if count > budget:
                    return count
                _discard(element)
        except etree.XMLSyntaxError:
            return count
    return count


def _discard(element: etree._Element) -> None:
    """Drop an element already counted, and its earlier siblings, so memory stays flat."""
    element.clear(keep_tail=False)
    parent = element.getparent()
    if parent is not None:
        while element.getprevious() is not None:
            del parent[0]
