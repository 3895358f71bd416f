"""The model registry: one object, built at start-up from plain settings, that hands out models.

It owns the LiteLLM Router (one for the process, so retries, fallbacks and rpm accounting see
every call), the model specs (limits, capabilities, prices), request validation, and the
per-tenant rate limit. Models are named ``name@factory``; ``extractive@Builtin`` is the chat
model when no LLM is configured.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import json
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from litellm.litellm_core_utils.logging_worker import GLOBAL_LOGGING_WORKER
from litellm.llms.custom_httpx.async_client_cleanup import close_litellm_async_clients
from litellm.types.router import Deployment

from rag.llm.chat_model import EXTRACTIVE_MODEL, ExtractiveChat, LiteLLMChat
from rag.llm.embedding_processes import EmbeddingProcesses, ProcessEmbedding
from rag.llm.errors import UnsupportedProviderError
from rag.llm.providers import BUILTIN_FACTORY, ProviderSettings, provider_for, split_model_name
from rag.llm.rate_limit import TenantRateLimiter
from rag.llm.rerank_model import LiteLLMRerank
from rag.llm.router import BudgetedRouter, build_router
from rag.llm.specs import ModelCatalog, ModelSpec, validate_request

DEFAULT_MODELS_YAML = Path(__file__).resolve().parents[2] / "conf" / "models.yaml"
KINDS = ("chat", "embedding", "rerank")
AB_PREFIX = "ab:"  # the model group of an A/B test: several deployments with weights


async def _stop_litellm_logging_worker() -> None:
    """Stop LiteLLM's process-wide logging worker if its tasks live on this loop.

    Left running, its task outlives the loop it was started on; but when another app's loop
    started it (tests run many), its tasks belong to a loop that may already be closed, and
    stopping them from here would fail. Only the loop that owns them stops them.
    """
    if getattr(GLOBAL_LOGGING_WORKER, "_bound_loop", None) is asyncio.get_running_loop():
        await GLOBAL_LOGGING_WORKER.stop()


class ModelRegistry:
    """Specs, validation and model objects for every ``name@factory`` the process uses."""

    def __init__(
        self,
        provider_settings: ProviderSettings,
        catalog: ModelCatalog,
        timeout: float = 60.0,
        max_retries: int = 2,
        rate_limit_rpm: int = 0,
        default_chat_model: str | None = None,
        direct_streaming: bool = True,
        embedding_processes: EmbeddingProcesses | None = None,
    ) -> None:
        self.provider_settings = provider_settings
        self.embedding_processes = embedding_processes  # where builtin embedding models compute (None: here)
        self.catalog = catalog
        self.timeout = timeout
        self.rate_limit_rpm = rate_limit_rpm
        self.default_chat_model = default_chat_model or EXTRACTIVE_MODEL
        self.router: BudgetedRouter = build_router(timeout, max_retries, rate_limit_rpm > 0, catalog.fallbacks,
                                                   direct_streaming)
        self.tenant_limiter = TenantRateLimiter(rate_limit_rpm)
        self._models: dict[tuple[str, str], Any] = {}
        self._specs: dict[str, ModelSpec] = {}
        self._lock = threading.RLock()

    @classmethod
    def from_config(
        cls,
        default_chat_model: str | None = None,
        api_base: str | None = None,
        openai_api_key: str | None = None,
        ollama_base_url: str = "http://localhost:11434",
        timeout: float = 60.0,
        max_retries: int = 2,
        rate_limit_rpm: int = 0,
        models_yaml_path: str | Path | None = DEFAULT_MODELS_YAML,
        fallbacks: dict[str, list[str]] | None = None,
        direct_streaming: bool = True,
        embedding_processes: EmbeddingProcesses | None = None,
    ) -> ModelRegistry:
        """Build from settings values (LLM_MODEL, LLM_API_BASE, ... LLM_RATE_LIMIT).

        ``fallbacks`` (primary → models tried in order when it fails) adds to those of models.yaml.
        ``direct_streaming`` False streams OpenAI-compatible answers through LiteLLM's wrapper too.
        ``embedding_processes``: builtin embedding models compute there instead of in this process.
        """
        catalog = ModelCatalog.load(models_yaml_path)
        catalog.fallbacks = {**catalog.fallbacks, **(fallbacks or {})}
        settings = ProviderSettings(api_base=api_base, openai_api_key=openai_api_key, ollama_base_url=ollama_base_url)
        return cls(settings, catalog, timeout, max_retries, rate_limit_rpm, default_chat_model, direct_streaming,
                   embedding_processes)

    async def aclose(self) -> None:
        """Close LiteLLM's cached HTTP clients at app shutdown, so none outlives the event loop.

        The registry is finished afterwards (its Router's clients are closed); a registry built
        later gets fresh clients.
        """
        await self.router.aclose_streams()
        await close_litellm_async_clients()
        await _stop_litellm_logging_worker()

    # -- specs and validation -----------------------------------------------------------------

    def spec(self, model_name: str) -> ModelSpec:
        with self._lock:
            if model_name.startswith(AB_PREFIX) and model_name not in self._specs:
                raise UnsupportedProviderError(f"No A/B test is called {model_name}.", model=model_name)
            if model_name not in self._specs:
                name, factory = split_model_name(model_name)
                keys = [] if factory.lower() == BUILTIN_FACTORY.lower() else provider_for(factory).model_map_keys(name)
                self._specs[model_name] = self.catalog.spec(model_name, factory, keys)
            return self._specs[model_name]

    def validate(self, model_name: str, gen_conf: dict[str, Any] | None) -> dict[str, Any]:
        """Generation parameters checked for this model (ValidationError naming the bad one)."""
        return validate_request(self.spec(model_name), gen_conf)

    def cost(self, model_name: str, prompt_tokens: int, completion_tokens: int) -> float | None:
        return self.spec(model_name).cost(prompt_tokens, completion_tokens)

    def admit(self, tenant_id: str, model_name: str) -> None:
        """Count one call against the tenant's per-model rpm (RateLimitError when over)."""
        self.tenant_limiter.admit(tenant_id, model_name)

    # -- A/B groups ---------------------------------------------------------------------------

    def ab_group(self, arms: Sequence[tuple[str, float]]) -> str:
        """The name of one Router model group whose deployments are these chat models, chosen
        per call in proportion to their weights by the Router's own weighted shuffle.

        Each deployment's ``model_info`` names its arm, so the call's answer (and its usage row)
        says which one served. The group's spec is the strictest of its arms' (smallest context
        window and output); its price is each arm's own. The same arms give the same group.
        """
        canonical = sorted((model, float(weight)) for model, weight in arms)
        if len(canonical) < 2 or len({model for model, _ in canonical}) != len(canonical):
            raise ValueError("an A/B test needs two or more different models")
        digest = hashlib.sha1(json.dumps(canonical).encode("utf-8")).hexdigest()[:16]
        group = f"{AB_PREFIX}{digest}"
        with self._lock:
            if group in self._specs:
                return group
            specs = [self.spec(model) for model, _ in canonical]
            if any(spec.extractive or split_model_name(spec.name)[1].lower() == BUILTIN_FACTORY.lower()
                   for spec in specs):
                raise UnsupportedProviderError("Builtin models cannot take part in an A/B test.", model=group)
            for model, weight in canonical:
                self._add_arm(group, model, weight)
            self._specs[group] = self._strictest(group, specs)
            self._models[("chat", group)] = LiteLLMChat(group, self.router, self.timeout)
        return group

    @staticmethod
    def _strictest(group: str, specs: list[ModelSpec]) -> ModelSpec:
        narrowest = min(specs, key=lambda spec: spec.context_window)
        return dataclasses.replace(
            narrowest, name=group, max_output_tokens=min(spec.max_output_tokens for spec in specs),
            temperature_max=min(spec.temperature_max for spec in specs),
            streaming=all(spec.streaming for spec in specs), input_cost_per_token=None, output_cost_per_token=None)

    def _add_arm(self, group: str, model_name: str, weight: float) -> None:
        name, factory = split_model_name(model_name)
        params = provider_for(factory).call_params(name, self.provider_settings, "chat")
        params.update(timeout=self.timeout, stream_timeout=self.timeout, weight=weight)
        self.router.add_deployment(Deployment(model_name=group, litellm_params=params,
                                              model_info={"id": f"{group}/{model_name}", "arm": model_name}))

    # -- model objects ------------------------------------------------------------------------

    def register(self, model_name: str, model: Any, kind: str = "chat") -> None:
        """Use this object for ``model_name`` (the builtin embedder built at start-up, tests)."""
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}")
        with self._lock:
            self._models[(kind, model_name)] = model

    def model(self, model_name: str | None, kind: str = "chat") -> Any:
        """The model object for a name and kind, built on first use and then shared."""
        model_name = model_name or (self.default_chat_model if kind == "chat" else None)
        if not model_name:
            raise UnsupportedProviderError(f"No {kind} model was named.")
        with self._lock:
            key = (kind, model_name)
            if key not in self._models:
                self._models[key] = self._build(model_name, kind)
            return self._models[key]

    def chat_model(self, model_name: str | None = None) -> Any:
        return self.model(model_name, "chat")

    def rerank_model(self, model_name: str) -> Any:
        return self.model(model_name, "rerank")

    def embedding_model(self, model_name: str) -> Any:
        return self.model(model_name, "embedding")

    def _build(self, model_name: str, kind: str) -> Any:
        name, factory = split_model_name(model_name)
        if factory.lower() == BUILTIN_FACTORY.lower():
            return self._build_builtin(model_name, kind)
        if kind == "embedding":
            return self._build_embedding(model_name, name, factory)
        self._ensure_deployment(model_name, kind)
        for fallback in self.catalog.fallbacks.get(model_name, []):
            self._ensure_deployment(fallback, kind)
        if kind == "rerank":
            return LiteLLMRerank(model_name, self.router, self.timeout)
        return LiteLLMChat(model_name, self.router, self.timeout)

    def _build_builtin(self, model_name: str, kind: str) -> Any:
        if kind == "chat" and model_name == EXTRACTIVE_MODEL:
            return ExtractiveChat()
        if kind == "embedding":
            from rag.llm.embedding_model import create_embedding_model

            model = create_embedding_model(model_name)  # refuses an unknown builtin name here
            if self.embedding_processes is not None:
                return ProcessEmbedding(model_name, self.embedding_processes)
            return model
        raise UnsupportedProviderError(f"There is no builtin {kind} model called {model_name}.", model=model_name)

    def _build_embedding(self, model_name: str, name: str, factory: str) -> Any:
        """Remote embeddings come from ``rag.llm.embedding_model`` with this registry's endpoint."""
        from rag.llm.embedding_model import LiteLLMEmbedding

        params = provider_for(factory).call_params(name, self.provider_settings)
        return LiteLLMEmbedding(
            params["model"], model_name=model_name, api_base=params.get("api_base"),
            api_key=params.get("api_key"), timeout=self.timeout,
        )

    def _ensure_deployment(self, model_name: str, kind: str) -> None:
        """Add the model to the Router once; its model group is the ``name@factory`` itself."""
        if self.router.has_model_id(model_name):
            return
        name, factory = split_model_name(model_name)
        params = provider_for(factory).call_params(name, self.provider_settings, kind)
        params.update(timeout=self.timeout, stream_timeout=self.timeout)
        if self.rate_limit_rpm > 0:
            params["rpm"] = self.rate_limit_rpm
        self.router.add_deployment(
            Deployment(model_name=model_name, litellm_params=params, model_info={"id": model_name})
        )
