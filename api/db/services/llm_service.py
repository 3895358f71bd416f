"""LLMBundle: the async facade over one model for one tenant, with its accounting.

Everything above the model layer calls models through a bundle. It validates the request
against the model's spec, applies the tenant's rate limit, calls the model whatever its kind
(``rag.llm.invoke``), keeps reasoning apart from the answer, fills in token counts the
provider did not give (tiktoken), prices the call, and writes one usage row per call —
also when the call failed or the consumer of a stream went away.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import logging
import time
from collections.abc import AsyncIterator
from concurrent.futures import Executor
from typing import Any

import numpy as np

from api.db.services.cache_service import (
    BYPASS,
    HIT,
    MISS,
    CachedAnswer,
    CachePolicy,
    ResponseCacheStore,
    cache_key,
)
from api.db.services.usage_service import UsageRow, UsageSink
from rag.llm.chat_model import build_messages
from rag.llm.errors import LLMServiceError, translate_exception
from rag.llm.invoke import call_model, iterate_model
from rag.llm.registry import ModelRegistry
from rag.llm.specs import ModelSpec
from rag.llm.types import ChatDelta, ChatResult, TokenUsage
from rag.utils.token_utils import num_tokens

logger = logging.getLogger(__name__)


def _ms_since(started: float) -> float:
    return (time.perf_counter() - started) * 1000.0


def _prompt_tokens(system: str | None, history: list[dict]) -> int:
    return num_tokens(system or "") + sum(num_tokens(str(turn.get("content") or "")) for turn in history)


def _counted_usage(system: str | None, history: list[dict], result: ChatResult) -> TokenUsage:
    """Our own tiktoken count when the provider gave none (CPU work: run it in a thread)."""
    completion = num_tokens(result.text) + num_tokens(result.reasoning)
    return TokenUsage(prompt_tokens=_prompt_tokens(system, history), completion_tokens=completion, exact=False)


class ChatStream:
    """The answer of ``LLMBundle.chat_streamly``: iterate it for text deltas; once it has ended
    (finished, failed, or closed early) ``result`` holds the whole answer, the reasoning kept
    apart, the usage and the accounting. Close it (``aclose`` or ``async with``) to stop early.
    """

    def __init__(self, deltas: AsyncIterator[str], result: ChatResult) -> None:
        self._deltas = deltas
        self.result = result

    def __aiter__(self) -> ChatStream:
        return self

    async def __anext__(self) -> str:
        return await self._deltas.__anext__()

    async def aclose(self) -> None:
        await self._deltas.aclose()

    async def __aenter__(self) -> ChatStream:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


class LLMBundle:
    """One model (``name@factory``) of one kind for one tenant.

    ``kind`` is ``chat``, ``embedding`` or ``rerank``; ``model`` overrides the registry's
    object (tests, pre-built models). Dialog/conversation/message ids given here (or with
    ``bind``) are written on the usage rows.
    """

    def __init__(
        self,
        registry: ModelRegistry,
        tenant_id: str,
        model_name: str | None = None,
        usage_sink: UsageSink | None = None,
        kind: str = "chat",
        *,
        model: Any = None,
        dialog_id: str | None = None,
        conversation_id: str | None = None,
        message_id: str | None = None,
        executor: Executor | None = None,
    ) -> None:
        self.registry = registry
        self.executor = executor  # where a sync model's encode/similarity run (None: the default pool)
        self.tenant_id = tenant_id
        self.kind = kind
        self.model_name = model_name or (registry.default_chat_model if kind == "chat" else "")
        self.mdl = model if model is not None else registry.model(self.model_name, kind)
        self.usage_sink = usage_sink
        self.ids = {"dialog_id": dialog_id, "conversation_id": conversation_id, "message_id": message_id}
        self.cache: ResponseCacheStore | None = None
        self.cache_policy = CachePolicy()

    def with_cache(self, cache: ResponseCacheStore | None, policy: CachePolicy) -> LLMBundle:
        """The same bundle answering chat calls from ``cache`` when ``policy`` asks for it."""
        cached = copy.copy(self)
        cached.cache, cached.cache_policy = cache, policy
        return cached

    def bind(self, **ids: str | None) -> LLMBundle:
        """The same bundle writing these ids (dialog_id, conversation_id, message_id) on its rows."""
        bound = copy.copy(self)
        bound.ids = {**self.ids, **ids}
        return bound

    @property
    def spec(self) -> ModelSpec:
        return self.registry.spec(self.model_name)

    @property
    def max_length(self) -> int:
        """The context window, for fitting prompts."""
        return self.spec.context_window

    @property
    def is_extractive(self) -> bool:
        """True for the builtin extractive model: it cannot rewrite questions or pick keywords."""
        return self.spec.extractive

    # -- chat ---------------------------------------------------------------------------------

    def _cache_key(self, system: str | None, history: list[dict], conf: dict[str, Any], result: ChatResult
                   ) -> str | None:
        """The call's response-cache key, or None when this call does not use the cache (the
        reason is left on ``result.cache``)."""
        if self.cache is None or not self.cache.active or not self.cache_policy.enabled:
            return None
        if self.cache_policy.bypasses(conf):
            result.cache = BYPASS
            self.cache.count(BYPASS)
            return None
        result.cache = MISS
        return cache_key(self.tenant_id, self.model_name, build_messages(system, history), conf)

    async def _from_cache(self, key: str | None, result: ChatResult) -> CachedAnswer | None:
        """The cached answer under ``key``, filled into ``result`` and accounted at zero cost."""
        if key is None or self.cache is None:
            return None
        started = time.perf_counter()
        hit = await self.cache.lookup(self.tenant_id, key)
        if hit is None:
            return None
        result.text, result.cache, result.model, result.finish_reason = hit.text, HIT, hit.model, "stop"
        result.usage = TokenUsage(prompt_tokens=hit.prompt_tokens, completion_tokens=hit.completion_tokens)
        result.cost, result.latency_ms = 0.0, _ms_since(started)
        result.ttft_ms = result.latency_ms
        await self._record(cost=0.0, latency_ms=result.latency_ms, ttft_ms=result.ttft_ms, outcome="cached")
        return hit

    async def _to_cache(self, key: str | None, result: ChatResult) -> None:
        """Keep a complete answer for the next identical call; a cache failure never fails the answer."""
        if key is None or self.cache is None or result.outcome != "ok" or not result.text or result.usage is None:
            return
        answer = CachedAnswer(result.text, result.model or self.model_name, result.usage.prompt_tokens,
                              result.usage.completion_tokens, result.cost)
        try:
            await self.cache.store(self.tenant_id, key, answer)
        except Exception:
            logger.exception("could not cache an answer of %s for tenant %s", self.model_name, self.tenant_id)

    async def chat(self, system: str | None, history: list[dict], gen_conf: dict[str, Any] | None = None
                   ) -> ChatResult:
        """The whole answer. Raises an ``LLMServiceError``; the usage row is written either way."""
        conf = self.registry.validate(self.model_name, gen_conf)
        cached = ChatResult(model=self.model_name)
        key = self._cache_key(system, history, conf, cached)
        if await self._from_cache(key, cached) is not None:
            return cached
        self.registry.admit(self.tenant_id, self.model_name)
        started = time.perf_counter()
        try:
            result = await call_model(self.mdl.chat, system, history, conf)
        except asyncio.CancelledError:
            await self._record_failure("cancelled", 1, started, system, history)
            raise
        except Exception as exc:
            error = translate_exception(exc, self.model_name)
            await self._record_failure(error.outcome, error.attempts, started, system, history, error.arm)
            raise error from exc
        result.model = result.model or self.model_name
        result.cache = cached.cache
        await self._finish(result, started, system, history)
        await self._to_cache(key, result)
        return result

    def chat_streamly(self, system: str | None, history: list[dict], gen_conf: dict[str, Any] | None = None
                      ) -> ChatStream:
        """Answer text deltas as the model writes them (reasoning is not among them).

        A model's ``metadata`` attribute (the extractive model's note) is copied to the result.
        """
        result = ChatResult(model=self.model_name, metadata=dict(getattr(self.mdl, "metadata", None) or {}))
        return ChatStream(self._stream(system, history, gen_conf, result), result)

    async def _stream(self, system: str | None, history: list[dict], gen_conf: dict[str, Any] | None,
                      result: ChatResult) -> AsyncIterator[str]:
        conf = self.registry.validate(self.model_name, gen_conf)
        key = self._cache_key(system, history, conf, result)
        if await self._from_cache(key, result) is not None:
            yield result.text
            return
        self.registry.admit(self.tenant_id, self.model_name)
        started = time.perf_counter()
        texts: list[str] = []
        thoughts: list[str] = []
        complete = False
        try:
            async with contextlib.aclosing(iterate_model(self.mdl.chat_streamly, system, history, conf)) as items:
                async for item in items:
                    delta = ChatDelta(text=item) if isinstance(item, str) else item
                    self._absorb(delta, result)
                    thoughts.append(delta.reasoning)
                    if delta.text:
                        if result.ttft_ms is None:
                            result.ttft_ms = _ms_since(started)
                        texts.append(delta.text)
                        yield delta.text
            complete = True
        except (GeneratorExit, asyncio.CancelledError):
            result.outcome = "cancelled"
            raise
        except Exception as exc:
            error = translate_exception(exc, self.model_name)
            result.outcome, result.attempts = error.outcome, error.attempts
            result.arm = error.arm or result.arm
            raise error from exc
        finally:
            result.text, result.reasoning = "".join(texts), "".join(thoughts)
            await self._finish(result, started, system, history)
            if complete:
                await self._to_cache(key, result)

    @staticmethod
    def _absorb(delta: ChatDelta, result: ChatResult) -> None:
        result.usage = delta.usage or result.usage
        result.finish_reason = delta.finish_reason or result.finish_reason
        result.attempts = delta.attempts or result.attempts
        if delta.arm:
            result.arm = result.model = delta.arm

    # -- accounting ---------------------------------------------------------------------------

    async def _finish(self, result: ChatResult, started: float, system: str | None, history: list[dict]) -> None:
        """Latency, missing token counts, cost; then the usage row."""
        result.latency_ms = _ms_since(started)
        if result.usage is None:
            result.usage = await asyncio.to_thread(_counted_usage, system, history, result)
        result.cost = self._cost(result.usage.prompt_tokens, result.usage.completion_tokens, result.arm)
        await self._record(
            arm=result.arm,
            prompt_tokens=result.usage.prompt_tokens,
            completion_tokens=result.usage.completion_tokens,
            cost=result.cost,
            latency_ms=result.latency_ms,
            ttft_ms=result.ttft_ms,
            attempts=result.attempts,
            outcome=result.outcome,
        )

    async def _record_failure(self, outcome: str, attempts: int, started: float, system: str | None,
                              history: list[dict], arm: str | None = None) -> None:
        prompt = await asyncio.to_thread(_prompt_tokens, system, history)
        await self._record(prompt_tokens=prompt, latency_ms=_ms_since(started), attempts=attempts, outcome=outcome,
                           cost=self._cost(0, 0, arm), arm=arm)

    def _cost(self, prompt_tokens: int, completion_tokens: int, arm: str | None = None) -> float | None:
        """The price of the call at the rates of the model that served it (an A/B arm's own)."""
        try:
            return self.registry.cost(arm or self.model_name, prompt_tokens, completion_tokens)
        except LLMServiceError:
            return None

    async def _record(self, arm: str | None = None, **values: Any) -> None:
        """Write the usage row (under the arm's name when an A/B arm served); accounting trouble
        is logged, never raised into the answer."""
        if self.usage_sink is None:
            return
        try:
            await self.usage_sink.record(self._usage_row(arm, **values))
        except Exception:
            logger.exception("could not record usage of %s for tenant %s", self.model_name, self.tenant_id)

    def _usage_row(self, arm: str | None, **values: Any) -> UsageRow:
        return UsageRow(tenant_id=self.tenant_id, model=arm or self.model_name, kind=self.kind, arm=arm, **self.ids,
                        **values)

    def _record_soon(self, **values: Any) -> None:
        """``_record`` without waiting for the write: the caller has a question waiting on the
        result (the sink still writes the row; ``UsageService.settled`` waits for it)."""
        if self.usage_sink is None:
            return
        try:
            self.usage_sink.record_soon(self._usage_row(None, **values))
        except Exception:
            logger.exception("could not record usage of %s for tenant %s", self.model_name, self.tenant_id)

    # -- embeddings and rerank ----------------------------------------------------------------

    async def _timed(self, method: Any, *args: Any) -> Any:
        started = time.perf_counter()
        try:
            value, tokens = await call_model(method, *args, executor=self.executor)
        except asyncio.CancelledError:
            await self._record(latency_ms=_ms_since(started), outcome="cancelled")
            raise
        except Exception as exc:
            error = translate_exception(exc, self.model_name)
            await self._record(latency_ms=_ms_since(started), attempts=error.attempts, outcome=error.outcome)
            raise error from exc
        self.record_computed(int(tokens), _ms_since(started))
        return value, int(tokens)

    def record_computed(self, tokens: int, latency_ms: float) -> None:
        """Account for a call of this model that another process made for this bundle's caller
        (a search process embedding the question), as ``encode`` accounts for its own."""
        self._record_soon(prompt_tokens=tokens, cost=self._cost(tokens, 0), latency_ms=latency_ms)

    async def encode(self, texts: list[str]) -> tuple[np.ndarray, int]:
        """Document vectors, shape (len(texts), dim), and the tokens they cost."""
        return await self._timed(self.mdl.encode, list(texts))

    async def encode_queries(self, query: str) -> tuple[np.ndarray, int]:
        """The question's vector, shape (dim,)."""
        return await self._timed(self.mdl.encode_queries, query)

    async def similarity(self, query: str, texts: list[str]) -> tuple[np.ndarray, int]:
        """Relevance of each text to the query, in the texts' order.

        A rerank bundle asks its model; an embedding bundle uses cosine similarity.
        """
        if self.kind == "rerank" or hasattr(self.mdl, "similarity"):
            return await self._timed(self.mdl.similarity, query, list(texts))
        query_vector, query_tokens = await self.encode_queries(query)
        vectors, text_tokens = await self.encode(texts)
        norms = np.linalg.norm(vectors, axis=1) * (np.linalg.norm(query_vector) or 1.0)
        return (vectors @ query_vector) / np.where(norms == 0, 1.0, norms), query_tokens + text_tokens
