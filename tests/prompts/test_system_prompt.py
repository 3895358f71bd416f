"""build_system_prompt and check_prompt_variables over RAGFlow's prompt config; placeholder rules."""

from __future__ import annotations

import pytest

from rag.prompts import (
    TONES,
    MissingVariableError,
    UnknownToneError,
    VariablesNotInPromptError,
    build_system_prompt,
    check_prompt_variables,
    citation_prompt,
    join_knowledge,
    kb_prompt,
)
from rag.prompts.template import placeholders, substitute

BLOCKS = kb_prompt([{"content_with_weight": "Paris is the capital of France.", "docnm_kwd": "fr.md"}], 500)


def config(system: str, *parameters: tuple[str, bool], **extra: object) -> dict:
    return {"system": system, "parameters": [{"key": k, "optional": o} for k, o in parameters], **extra}


def test_knowledge_and_variables_are_substituted_and_citation_rules_added() -> None:
    cfg = config("Hi {user}. Knowledge:\n{knowledge}\nEnd.", ("knowledge", False), ("user", False))
    prompt = build_system_prompt(cfg, BLOCKS, None, {"user": "Ada"})
    assert prompt.startswith("Hi Ada. Knowledge:\n" + join_knowledge(BLOCKS) + "\nEnd.")
    assert prompt.endswith(citation_prompt())


def test_tone_instruction_is_added_with_or_without_knowledge() -> None:
    cfg = config("You are a helper.")
    assert build_system_prompt(cfg, [], "concise", {}) == "You are a helper.\n\n" + TONES["concise"]
    with_knowledge = build_system_prompt(config("K: {knowledge}"), BLOCKS, "formal", {})
    assert TONES["formal"] in with_knowledge and citation_prompt() in with_knowledge
    assert TONES["casual"] in build_system_prompt(config("x", tone="casual"), [], None, {})


def test_unknown_tone_is_refused() -> None:
    with pytest.raises(UnknownToneError):
        build_system_prompt(config("x"), [], "grumpy", {})


def test_no_knowledge_means_no_citation_rules_and_empty_placeholder() -> None:
    prompt = build_system_prompt(config("Knowledge: [{knowledge}]"), [], None, {})
    assert prompt == "Knowledge: []"


def test_quote_off_drops_the_citation_rules() -> None:
    prompt = build_system_prompt(config("{knowledge}", quote=False), BLOCKS, None, {})
    assert citation_prompt() not in prompt and BLOCKS[0] in prompt


def test_knowledge_without_placeholder_is_appended_not_lost() -> None:
    prompt = build_system_prompt({"system": "You answer questions about cities."}, BLOCKS, None, {})
    assert prompt.startswith("You answer questions about cities.\n\n")
    assert BLOCKS[0] in prompt and citation_prompt() in prompt


def test_prompt_key_and_default_prompt() -> None:
    assert build_system_prompt({"prompt": "From API: {knowledge}"}, BLOCKS, None, {}).startswith(
        "From API: ID: 0"
    )
    default = build_system_prompt({}, BLOCKS, None, {})
    assert BLOCKS[0] in default and "{knowledge}" not in default


def test_missing_required_variable_raises_and_optional_becomes_empty() -> None:
    cfg = config("Hello {name}{suffix}!", ("name", False), ("suffix", True))
    with pytest.raises(MissingVariableError) as caught:
        build_system_prompt(cfg, [], None, {})
    assert caught.value.name == "name" and "name" in str(caught.value)
    assert build_system_prompt(cfg, [], None, {"name": "Ada"}) == "Hello Ada!"
    assert build_system_prompt(cfg, [], None, {"name": "Ada", "suffix": 42}) == "Hello Ada42!"


def test_json_examples_and_undeclared_braces_survive_substitution() -> None:
    system = (
        'Reply as JSON like {"a": 1, "b": {"c": [2]}} using {knowledge} for {user}; '
        "keep {other} and {{user}}."
    )
    prompt = build_system_prompt(config(system, ("user", False)), BLOCKS, None, {"user": "Ada"})
    expected = (
        'Reply as JSON like {"a": 1, "b": {"c": [2]}} using ' + join_knowledge(BLOCKS)
        + " for Ada; keep {other} and {user}."
    )
    assert prompt.startswith(expected)


def test_substituted_values_are_not_expanded_again() -> None:
    blocks = kb_prompt([{"content_with_weight": "literal {user} and {knowledge}", "docnm_kwd": "t"}], 500)
    cfg = config("{knowledge} / {user}", ("user", False))
    prompt = build_system_prompt(cfg, blocks, None, {"user": "{knowledge}"})
    assert prompt.startswith(blocks[0] + " / {knowledge}")


def test_placeholder_helpers() -> None:
    assert placeholders('{a} {{b}} {"c": 1} {d_1}') == {"a", "d_1"}
    assert substitute("{a}{b}", {"a": "{b}"}) == "{b}{b}"


def test_check_prompt_variables_lists_the_required_ones_missing() -> None:
    check_prompt_variables("Use {knowledge} for {user}.", [{"key": "knowledge", "optional": False},
                                                           {"key": "user", "optional": False}])
    check_prompt_variables("No knowledge here.", [{"key": "knowledge", "optional": True}])
    check_prompt_variables("Has {knowledge} but chat has no datasets.", [])
    with pytest.raises(VariablesNotInPromptError) as caught:
        parameters = [{"key": "user"}, {"key": "lang", "optional": False}, {"key": "tone", "optional": True}]
        check_prompt_variables('JSON {"user": 1} {{lang}}', parameters)
    assert caught.value.names == ["user", "lang"]
    message = str(caught.value)
    assert "'user'" in message and "'lang'" in message and "tone" not in message
