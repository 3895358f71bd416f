"""The gateway routes answer through the stub LLM, reached through LiteLLM like a provider."""

from __future__ import annotations

import pytest

STUB_MODEL = "stub-chat@OpenAI-API-Compatible"


@pytest.fixture
def settings(make_settings, stub_llm):
    return make_settings(llm_model=STUB_MODEL, llm_api_base=stub_llm.api_base, llm_timeout=5, llm_max_retries=0)
