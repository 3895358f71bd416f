"""Tones: the six named instructions, lookup, and the error the gateway turns into a 400."""

from __future__ import annotations

import pytest

from rag.prompts import TONES, UnknownToneError, tone_instruction

REQUIRED = ["professional", "friendly", "empathetic", "concise", "formal", "casual"]


def test_every_required_tone_has_its_own_paragraph() -> None:
    assert list(TONES)[: len(REQUIRED)] == REQUIRED
    texts = [TONES[name] for name in REQUIRED]
    assert len(set(texts)) == len(texts)
    assert all(len(text.split()) >= 10 and "\n" not in text for text in texts)
    assert "concise" in TONES["concise"].lower()


def test_lookup_ignores_case_and_spaces() -> None:
    assert tone_instruction(" Friendly ") == TONES["friendly"]


def test_unknown_tone_lists_the_known_ones() -> None:
    with pytest.raises(UnknownToneError) as caught:
        tone_instruction("sarcastic")
    assert caught.value.name == "sarcastic"
    assert caught.value.known == list(TONES)
    message = str(caught.value)
    assert "sarcastic" in message
    assert all(name in message for name in REQUIRED)
    assert isinstance(caught.value, ValueError)


def test_tones_cannot_be_changed_at_run_time() -> None:
    with pytest.raises(TypeError):
        TONES["rude"] = "Be rude."  # type: ignore[index]
