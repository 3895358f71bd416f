"""A local Ollama server (``llama3.1@Ollama``) at OLLAMA_BASE_URL.

LiteLLM's model map is not consulted: asking it about an Ollama model means a request to
the server, and local models are free; specs come from conf/models.yaml or the defaults.
"""

from __future__ import annotations

from typing import Any

from rag.llm.providers.base import Provider, ProviderSettings


class OllamaProvider(Provider):
    def call_params(self, name: str, settings: ProviderSettings, kind: str = "chat") -> dict[str, Any]:
        return {**super().call_params(name, settings, kind), "api_base": settings.ollama_base_url}


PROVIDER = OllamaProvider(factory="Ollama", prefix="ollama_chat/")
