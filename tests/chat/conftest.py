"""Fixtures for the chat pipeline: a server whose LLM is the stub, and a dataset with chunks."""

from __future__ import annotations

import pytest

STUB_MODEL = "stub-chat@OpenAI-API-Compatible"


@pytest.fixture
def settings(make_settings, stub_llm):
    """Settings whose default chat model is the stub, reached through LiteLLM like a provider."""
    return make_settings(llm_model=STUB_MODEL, llm_api_base=stub_llm.api_base, llm_timeout=10, llm_max_retries=1)
