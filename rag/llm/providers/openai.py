"""OpenAI's own API (``gpt-4o-mini@OpenAI``); key from OPENAI_API_KEY.

LLM_API_BASE, when set, is honoured here too: it is how OpenAI traffic goes through a proxy
(or a gateway with the same model names) while keeping OpenAI's prices and specs.
"""

from __future__ import annotations

from typing import Any

from rag.llm.providers.base import Provider, ProviderSettings


class OpenAIProvider(Provider):
    def call_params(self, name: str, settings: ProviderSettings, kind: str = "chat") -> dict[str, Any]:
        params = super().call_params(name, settings, kind)
        if settings.openai_api_key:
            params["api_key"] = settings.openai_api_key
        if settings.api_base:
            params["api_base"] = settings.api_base
        return params


PROVIDER = OpenAIProvider(factory="OpenAI", prefix="openai/", model_map_provider="openai")
