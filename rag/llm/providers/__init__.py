"""The factories Ragline can route to. Adding one: a module with a ``PROVIDER`` and a line below."""

from __future__ import annotations

from rag.llm.errors import UnsupportedProviderError
from rag.llm.providers import litellm_routed, ollama, openai, openai_compatible
from rag.llm.providers.base import Provider, ProviderSettings

BUILTIN_FACTORY = "Builtin"

PROVIDERS: dict[str, Provider] = {
    provider.factory.lower(): provider
    for provider in (
        openai.PROVIDER,
        ollama.PROVIDER,
        openai_compatible.PROVIDER,
        *litellm_routed.PROVIDERS,
    )
}


def split_model_name(model_name: str) -> tuple[str, str]:
    """``gpt-4o-mini@OpenAI`` → (``gpt-4o-mini``, ``OpenAI``); the name may itself hold ``@``."""
    name, sep, factory = model_name.rpartition("@")
    if not sep or not name or not factory:
        raise UnsupportedProviderError(
            f"Model names are written name@factory (e.g. gpt-4o-mini@OpenAI), not {model_name!r}.",
            model=model_name,
        )
    return name, factory


def provider_for(factory: str) -> Provider:
    provider = PROVIDERS.get(factory.lower())
    if provider is None:
        known = ", ".join(sorted([BUILTIN_FACTORY, *(p.factory for p in PROVIDERS.values())]))
        raise UnsupportedProviderError(f"Unknown model factory {factory!r}; known factories: {known}.")
    return provider


__all__ = ["BUILTIN_FACTORY", "PROVIDERS", "Provider", "ProviderSettings", "provider_for", "split_model_name"]
