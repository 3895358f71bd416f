"""Tones: named style instructions added to a system prompt.

The texts live in ``templates/tones.md``, one ``## name`` section per tone, so the list of tones
is whatever that file defines (professional, friendly, empathetic, concise, formal, casual).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from types import MappingProxyType

from rag.prompts.template import load_template

_SECTION = re.compile(r"(?m)^##[ \t]+(\w+)[ \t]*$")


def _parse_tones(text: str) -> Mapping[str, str]:
    """``{name: paragraph}`` from ``## name`` headed sections, in file order."""
    heads = list(_SECTION.finditer(text))
    tones = {}
    for head, following in zip(heads, [*heads[1:], None], strict=True):
        body = text[head.end() : following.start() if following else len(text)]
        tones[head.group(1).lower()] = " ".join(body.split())
    return MappingProxyType(tones)


TONES: Mapping[str, str] = _parse_tones(load_template("tones"))


class UnknownToneError(ValueError):
    """A tone name that ``TONES`` does not define; the message lists the known ones (the gateway
    answers 400 with it)."""

    def __init__(self, name: str, known: list[str] | tuple[str, ...]) -> None:
        self.name = name
        self.known = list(known)
        super().__init__(f"Unknown tone '{name}'. Known tones: {', '.join(self.known)}.")


def tone_instruction(name: str) -> str:
    """The instruction paragraph of tone ``name`` (case and surrounding spaces ignored)."""
    key = name.strip().lower()
    if key not in TONES:
        raise UnknownToneError(name, tuple(TONES))
    return TONES[key]
