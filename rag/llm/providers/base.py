"""What a provider module declares: how ``name@factory`` becomes LiteLLM call parameters.

Each factory is one small module with one ``Provider`` object; ``providers/__init__.py``
registers it with one line. The registry asks a provider for the LiteLLM model string, the
credentials and endpoint, and which entry of LiteLLM's model map describes the model.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class ProviderSettings:
    """The operator's endpoints and keys, as plain values (``rag`` never imports ``api``)."""

    api_base: str | None = None
    openai_api_key: str | None = None
    ollama_base_url: str = "http://localhost:11434"


@dataclass(frozen=True)
class Provider:
    """One factory. ``prefix`` is LiteLLM's provider route (``openai/``, ``anthropic/`` ...).

    ``model_map_provider`` names the provider in LiteLLM's model map, or None when the map
    cannot describe this factory's models (local servers, arbitrary endpoints).
    ``rerank_prefix`` is the route for rerank models when it differs from ``prefix``.
    """

    factory: str
    prefix: str
    model_map_provider: str | None = None
    rerank_prefix: str | None = None

    def litellm_model(self, name: str, kind: str = "chat") -> str:
        if kind == "rerank" and self.rerank_prefix is not None:
            return self.rerank_prefix + name
        return self.prefix + name

    def call_params(self, name: str, settings: ProviderSettings, kind: str = "chat") -> dict[str, Any]:
        """``litellm_params`` for a Router deployment of this model (model, endpoint, key)."""
        return {"model": self.litellm_model(name, kind)}

    def model_map_keys(self, name: str) -> list[str]:
        """Keys under which LiteLLM's model map may describe this model, best first."""
        if self.model_map_provider is None:
            return []
        return [f"{self.model_map_provider}/{name}", name]
