"""PowerPoint (.pptx): one section per slide, its page number the slide's number.

A slide's text is its shapes' text in the order the deck stores them (title first in every
layout python-pptx knows), tables as ``cell | cell`` rows, grouped shapes opened, and the
speaker notes last: notes often say what the slide only shows. The package check runs
before this parser; the slide count is checked before any slide is read.
"""

from __future__ import annotations

import io
import zipfile
from collections.abc import Iterator
from typing import Any

from rag.app.parsers.base import ParseError, Section, tidy_text
from rag.app.parsers.limits import FormatLimits, over_limit

MAX_GROUP_DEPTH = 8


def parse(data: bytes, limits: FormatLimits) -> list[Section]:
    presentation = _open(data)
    slides = presentation.slides
    if len(slides) > limits.max_slides:
        raise over_limit(len(slides), limits.max_slides, "slides", ".pptx", "max_slides")
    sections = []
    for number, slide in enumerate(slides, start=1):
        text = tidy_text("\n".join(_slide_lines(slide)))
        if text:
            sections.append(Section(text, page=number))
    return sections


def _open(data: bytes) -> Any:
    from pptx import Presentation
    from pptx.exc import PackageNotFoundError

    try:
        return Presentation(io.BytesIO(data))
    except (PackageNotFoundError, zipfile.BadZipFile, KeyError, ValueError, TypeError) as exc:
        raise ParseError(f"The .pptx file is corrupt or not a PowerPoint presentation: {exc}") from exc


def _slide_lines(slide: Any) -> Iterator[str]:
    yield from _shape_lines(slide.shapes, 0)
    if slide.has_notes_slide:
        notes = slide.notes_slide.notes_text_frame
        if notes is not None and notes.text.strip():
            yield notes.text


def _shape_lines(shapes: Any, depth: int) -> Iterator[str]:
    for shape in shapes:
        if getattr(shape, "shape_type", None) == 6 and depth < MAX_GROUP_DEPTH:  # MSO_SHAPE_TYPE.GROUP
            yield from _shape_lines(shape.shapes, depth + 1)
        elif getattr(shape, "has_table", False) and shape.has_table:
            yield from _table_lines(shape.table)
        elif getattr(shape, "has_text_frame", False) and shape.has_text_frame and shape.text_frame.text.strip():
            yield shape.text_frame.text


def _table_lines(table: Any) -> Iterator[str]:
    for row in table.rows:
        cells = [" ".join(cell.text.split()) for cell in row.cells]
        if any(cells):
            yield " | ".join(cells)
