"""Any server speaking OpenAI's API at LLM_API_BASE (vLLM, LM Studio, llama.cpp, the test stub).

Rerank has no OpenAI shape; such servers expose vLLM's/Jina's ``/rerank``, LiteLLM's
``hosted_vllm`` route.
"""

from __future__ import annotations

from typing import Any

from rag.llm.errors import UnsupportedProviderError
from rag.llm.providers.base import Provider, ProviderSettings

NO_KEY = "not-needed"


class OpenAICompatibleProvider(Provider):
    def call_params(self, name: str, settings: ProviderSettings, kind: str = "chat") -> dict[str, Any]:
        if not settings.api_base:
            raise UnsupportedProviderError(
                f"The model {name}@{self.factory} needs LLM_API_BASE (the server's URL, ending in /v1).",
                model=f"{name}@{self.factory}",
            )
        return {
            **super().call_params(name, settings, kind),
            "api_base": settings.api_base,
            "api_key": settings.openai_api_key or NO_KEY,
        }


PROVIDER = OpenAICompatibleProvider(
    factory="OpenAI-API-Compatible", prefix="openai/", model_map_provider="openai", rerank_prefix="hosted_vllm/"
)
