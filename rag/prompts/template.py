"""Prompt texts from ``templates/*.md`` and the one placeholder syntax they and chat prompts share.

Prompts are edited as plain Markdown files, so wording changes need no code change. They are
read once per process (``functools.cache``): they ship with the code and never change while it
runs.

Placeholders are ``{name}``. Substitution is a single regex pass over known names instead of
``str.format``, because prompts written by users routinely contain JSON examples such as
``{"a": 1}`` that ``str.format`` rejects, and because a substituted value (a retrieved chunk, a
user variable) that itself contains ``{name}`` must reach the model verbatim, never be expanded
again. ``{{name}}`` is the escaped form and yields a literal ``{name}``, as with ``str.format``.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from pathlib import Path

TEMPLATE_DIR = Path(__file__).parent / "templates"

_PLACEHOLDER = re.compile(r"\{\{(\w+)\}\}|\{(\w+)\}")


@functools.cache
def load_template(name: str) -> str:
    """The text of ``templates/<name>.md`` without surrounding blank lines."""
    return (TEMPLATE_DIR / f"{name}.md").read_text(encoding="utf-8").strip()


def placeholders(text: str) -> set[str]:
    """Names written as ``{name}`` in ``text`` (escaped ``{{name}}`` excluded)."""
    return {match.group(2) for match in _PLACEHOLDER.finditer(text) if match.group(2)}


def substitute(text: str, values: Mapping[str, object]) -> str:
    """``text`` with each ``{name}`` whose name is in ``values`` replaced by ``str(value)``.

    Unknown names and every other brace are left exactly as written; ``{{name}}`` becomes the
    literal ``{name}``.
    """

    def replace(match: re.Match[str]) -> str:
        escaped, name = match.group(1), match.group(2)
        if escaped is not None:
            return "{" + escaped + "}"
        return str(values[name]) if name in values else match.group(0)

    return _PLACEHOLDER.sub(replace, text)


def render(name: str, **values: object) -> str:
    """Template ``name`` with ``values`` substituted."""
    return substitute(load_template(name), values)
