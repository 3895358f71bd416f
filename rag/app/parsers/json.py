"""JSON: flattened to ``path: value`` lines (``items[2].price: 9.5``).

Flat lines keep every value next to the key that names it, which is what a question about a
value needs; a top-level array gets one section per element so a record is not split from
its own fields when chunks are packed.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

from rag.app.parsers.base import ParseError, Section
from rag.app.parsers.txt import decode_text


def parse(data: bytes) -> list[Section]:
    try:
        value = json.loads(decode_text(data))
    except json.JSONDecodeError as exc:
        raise ParseError(f"The JSON is invalid: {exc.msg} at line {exc.lineno} column {exc.colno}.") from exc
    except RecursionError as exc:
        raise ParseError("The JSON is nested too deeply to read.") from exc
    items = enumerate(value) if isinstance(value, list) else [(None, value)]
    sections = []
    for index, item in items:
        prefix = "" if index is None else f"[{index}]"
        try:
            text = "\n".join(flatten(item, prefix))
        except RecursionError as exc:
            raise ParseError("The JSON is nested too deeply to read.") from exc
        if text:
            sections.append(Section(text))
    return sections


def flatten(value: object, path: str = "") -> Iterator[str]:
    """``path: value`` lines for every scalar leaf; a bare scalar at the root is just its value."""
    if isinstance(value, dict):
        for key, child in value.items():
            yield from flatten(child, f"{path}.{key}" if path else str(key))
    elif isinstance(value, list):
        for index, child in enumerate(value):
            yield from flatten(child, f"{path}[{index}]")
    elif value is not None and value != "":
        scalar = json.dumps(value) if isinstance(value, bool) else str(value)
        yield f"{path}: {scalar}" if path else scalar
