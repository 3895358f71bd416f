"""Citation markers: the instruction to cite as ``[ID:n]``, and cleaning what models actually write.

Models asked for ``[ID:n]`` also produce ``[ID: 3]``, ``(ID:3)``, ``【ID:3】``, ``[id:3]``,
``[ID:3, ID:4]`` or ``[ID:3,4]``. ``repair_citations`` rewrites those to the canonical
``[ID:3][ID:4]`` that clients and ``insert_citations`` understand; text without the ``ID`` label
(``[1]``, ``(see ID card)``) is never touched.

All functions work on streaming prefixes. A marker only counts once its closing bracket has
arrived, so a prefix ending in ``"[ID:"`` keeps that half marker verbatim. Because every stream
event carries the whole answer so far, a streamer should show only the part before a possible
half marker, so that what it sends only ever grows::

    shown, pending = split_partial_citation(repair_citations(answer_so_far))
"""

from __future__ import annotations

import re

from rag.prompts.template import load_template

_OPEN = "[(（【"
_CLOSE = "])）】"
_LABEL = r"ID\s*[:：]\s*"
# A further id needs a separator or a blank before it: were both optional, a run of digits could
# be split into ids in exponentially many ways and a long one would stall the regex engine.
_SEPARATOR = r"(?:\s*[,，;；、]\s*|\s+)"
_MARKER = re.compile(
    rf"[{re.escape(_OPEN)}]\s*{_LABEL}[0-9]+(?:{_SEPARATOR}(?:{_LABEL})?[0-9]+)*\s*[{re.escape(_CLOSE)}]",
    re.IGNORECASE,
)
# What can follow an opening bracket in a marker whose closing bracket has not arrived yet. It
# is looser than the marker itself (any mix of digits, separators and the label's letters after
# the colon): it only decides what a streamer holds back, never what gets rewritten.
_PARTIAL_MARKER = re.compile(
    rf"[{re.escape(_OPEN)}]\s*(?:I(?:D\s*(?:[:：][\s0-9,，;；、:：ID]*)?)?)?", re.IGNORECASE
)
_MAX_PARTIAL_CHARS = 64
_NUMBER = re.compile(r"[0-9]+")
_CANONICAL = re.compile(r"\[ID:([0-9]+)\]")


def citation_prompt() -> str:
    """The system-prompt section telling the model to cite knowledge blocks as ``[ID:n]``."""
    return load_template("citation")


def repair_citations(text: str) -> str:
    """``text`` with every complete, malformed citation marker rewritten as ``[ID:n]`` markers."""
    return _MARKER.sub(lambda m: "".join(f"[ID:{int(n)}]" for n in _NUMBER.findall(m.group(0))), text)


def citation_ids(text: str) -> list[int]:
    """The chunk numbers ``text`` cites (malformed markers included), each once, first cited first."""
    seen: dict[int, None] = {}
    for match in _CANONICAL.finditer(repair_citations(text)):
        seen.setdefault(int(match.group(1)), None)
    return list(seen)


def strip_invalid_citations(text: str, n_chunks: int) -> str:
    """``text`` without the ``[ID:n]`` markers (and the blanks before them) whose n is not a chunk.

    Works on canonical markers: run ``repair_citations`` first.
    """

    pieces, last = [], 0
    for match in _CANONICAL.finditer(text):
        if int(match.group(1)) >= n_chunks:
            pieces.append(text[last : match.start()].rstrip(" \t"))
            last = match.end()
    pieces.append(text[last:])
    return "".join(pieces)


def split_partial_citation(text: str) -> tuple[str, str]:
    """``(ready, pending)``: ``pending`` is a tail that may still become a marker (``"[ID: 3"``).

    A streamer sends ``ready`` now and waits for more text before deciding about ``pending``;
    at the end of the stream the whole text is final.
    """
    window = max(len(text) - _MAX_PARTIAL_CHARS, 0)
    start = max(text.rfind(bracket, window) for bracket in _OPEN)
    if start < 0 or not _PARTIAL_MARKER.fullmatch(text, start):
        return text, ""
    return text[:start], text[start:]
