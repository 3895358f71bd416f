"""Factories LiteLLM routes by itself; their keys come from the environment LiteLLM reads
(ANTHROPIC_API_KEY, AZURE_API_KEY/AZURE_API_BASE, GEMINI_API_KEY, ...).

``LiteLLM`` is the escape hatch: ``anthropic/claude-3-5-haiku-latest@LiteLLM`` passes the
name to LiteLLM unchanged, so any provider it knows works without a module here.
"""

from __future__ import annotations

from rag.llm.providers.base import Provider


class PassthroughProvider(Provider):
    """The name already is a LiteLLM model string (``provider/model``)."""

    def model_map_keys(self, name: str) -> list[str]:
        return [name, name.split("/", 1)[-1]]


PROVIDERS = (
    Provider(factory="Anthropic", prefix="anthropic/", model_map_provider="anthropic"),
    Provider(factory="Azure-OpenAI", prefix="azure/", model_map_provider="azure"),
    Provider(factory="Gemini", prefix="gemini/", model_map_provider="gemini"),
    Provider(factory="Mistral", prefix="mistral/", model_map_provider="mistral"),
    Provider(factory="Groq", prefix="groq/", model_map_provider="groq"),
    Provider(factory="DeepSeek", prefix="deepseek/", model_map_provider="deepseek"),
    Provider(factory="Cohere", prefix="cohere/", model_map_provider="cohere"),
    Provider(factory="Jina", prefix="jina_ai/", model_map_provider="jina_ai"),
    PassthroughProvider(factory="LiteLLM", prefix=""),
)
