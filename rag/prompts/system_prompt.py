"""The system prompt of a chat: RAGFlow's prompt config filled in, plus tone and citation rules.

A chat's prompt config (RAGFlow's ``prompt_config``) holds the prompt text under ``system`` (or
``prompt``, the name the HTTP API uses) with ``{knowledge}`` and other ``{variables}``, and
``parameters``: ``[{"key": name, "optional": bool}]`` declaring the variables. ``knowledge`` is
filled in by retrieval; the others come from the caller of a completion.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from rag.prompts.citations import citation_prompt
from rag.prompts.context import join_knowledge
from rag.prompts.template import load_template, placeholders, render, substitute
from rag.prompts.tones import tone_instruction

KNOWLEDGE = "knowledge"


class PromptVariableError(ValueError):
    """A chat prompt and its declared variables do not agree."""


class MissingVariableError(PromptVariableError):
    """A required variable of the prompt was not given a value for this completion."""

    def __init__(self, name: str) -> None:
        self.name = name
        super().__init__(f"Required prompt variable '{name}' has no value.")


class VariablesNotInPromptError(PromptVariableError):
    """Required variables are declared but the prompt text never uses them (API code 102)."""

    def __init__(self, names: Sequence[str]) -> None:
        self.names = list(names)
        listed = ", ".join(f"'{name}'" for name in self.names)
        super().__init__(f"Required prompt variable(s) {listed} not used in the prompt; "
                         "add them as {name} or mark them optional.")


def _required(parameters: Sequence[Mapping[str, Any]]) -> list[str]:
    """Keys of the parameters that are not optional (a missing ``optional`` means required)."""
    return [str(p["key"]) for p in parameters if p.get("key") and not p.get("optional", False)]


def check_prompt_variables(prompt_text: str, parameters: Sequence[Mapping[str, Any]]) -> None:
    """Refuse a chat whose required variables do not appear in its prompt as ``{name}``.

    Called when a chat is created or updated. ``{knowledge}`` in a prompt of a chat without
    datasets is fine: it is filled with nothing.
    """
    used = placeholders(prompt_text)
    missing = [key for key in _required(parameters) if key not in used]
    if missing:
        raise VariablesNotInPromptError(missing)


def prompt_text(prompt_config: Mapping[str, Any]) -> str:
    """The prompt text of a config: ``system``, else ``prompt``, else Ragline's default prompt."""
    return str(prompt_config.get("system") or prompt_config.get("prompt") or load_template("default_system"))


def build_system_prompt(
    prompt_config: Mapping[str, Any],
    knowledge: Sequence[str],
    tone: str | None,
    variables: Mapping[str, Any],
) -> str:
    """The system prompt for one completion.

    ``knowledge`` is the list of blocks from ``kb_prompt`` (empty when nothing was retrieved or
    the chat has no datasets). Steps: substitute ``{knowledge}`` and the ``variables`` (a
    declared optional variable without a value becomes empty, undeclared ``{names}`` and other
    braces stay as written); if there is knowledge but the prompt has no ``{knowledge}`` (a
    gateway system prompt, say), append it in a section of its own so it is not lost; add the
    tone's instruction (``tone``, else the config's ``tone``); when there is knowledge and the
    config does not turn quoting off (``quote: false``), add the citation rules.

    Raises ``MissingVariableError`` for a required variable without a value and
    ``UnknownToneError`` for an unknown tone.
    """
    text = prompt_text(prompt_config).strip()
    parameters = prompt_config.get("parameters") or []
    for key in _required(parameters):
        if key != KNOWLEDGE and key not in variables:
            raise MissingVariableError(key)
    values: dict[str, Any] = {str(p["key"]): "" for p in parameters if p.get("key")}
    values.update(variables)
    values[KNOWLEDGE] = join_knowledge(knowledge)
    parts = [substitute(text, values)]
    if knowledge and KNOWLEDGE not in placeholders(text):
        parts.append(render("knowledge_section", knowledge=values[KNOWLEDGE]))
    tone = tone or prompt_config.get("tone")
    if tone:
        parts.append(tone_instruction(tone))
    if knowledge and prompt_config.get("quote", True):
        parts.append(citation_prompt())
    return "\n\n".join(part for part in parts if part.strip())
