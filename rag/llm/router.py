"""LiteLLM's Router, bounded by one time budget per call.

The Router does the reliability work: per-attempt timeouts, retries with exponential backoff
and jitter that honour ``Retry-After``, fallbacks to other models, per-model rpm limits. Two
things it cannot know are added here, through the two hooks it calls on every attempt:

* the whole call (all attempts and sleeps) must end within LLM_TIMEOUT: a retry whose sleep
  would overrun the budget is not taken; the last error is raised instead (so a 429 asking
  for 60 s fails fast as a rate limit instead of sleeping into a timeout);
* the number of attempts, for the usage row;
* which deployment an A/B model group sent the call to (its ``model_info["arm"]``), so the
  answer and its usage row say which arm served, or failed.

Both live in a ``CallBudget`` put in a context variable by the caller (``call_budget``).

Streamed chat answers go through ``astream_chat``: the same retries, fallbacks and rpm checks,
but an OpenAI-compatible deployment's answer is read off the wire by ``rag.llm.sse_stream``
instead of LiteLLM's per-chunk wrapper (the reason is measured there).

The Router also looks up each deployment's model info twice per call and deep-copies LiteLLM's
map entry each time (about 1 ms per call here); deployments never change once added, so the
result is cached per deployment.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import litellm
from litellm import Router

from rag.llm.errors import retry_after_seconds
from rag.llm.sse_stream import EnvRoutes, StreamPiece, open_chat_stream, speaks_openai

STREAM_CONNECTIONS = 1000  # answers streaming at once from one process, per event loop
SSE_LINE_BYTES = 1 << 20  # the longest SSE line a provider may send (aiohttp's default is 64 KB)


@dataclass
class CallBudget:
    deadline: float  # time.monotonic() by which the call must be over
    attempts: int = 0
    arm: str | None = None  # the A/B arm the latest attempt went to (None outside A/B groups)

    def remaining(self) -> float:
        return max(self.deadline - time.monotonic(), 0.0)


CURRENT_BUDGET: contextvars.ContextVar[CallBudget | None] = contextvars.ContextVar("llm_call_budget", default=None)


@contextlib.contextmanager
def call_budget(timeout: float) -> Iterator[CallBudget]:
    budget = CallBudget(deadline=time.monotonic() + timeout)
    token = CURRENT_BUDGET.set(budget)
    try:
        yield budget
    finally:
        CURRENT_BUDGET.reset(token)


class BudgetedRouter(Router):
    """A Router that counts attempts, never sleeps past the caller's deadline, and caches
    deployments' model info."""

    def __init__(self, *args: Any, direct_streaming: bool = True, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.direct_streaming = direct_streaming
        self._model_info_cache: dict[tuple[Any, ...], dict] = {}
        self._stream_clients: dict[asyncio.AbstractEventLoop, aiohttp.ClientSession] = {}
        self._routes = EnvRoutes()

    async def astream_chat(self, model: str, messages: list[dict], options: dict[str, Any]) -> Any:
        """Open a streamed answer of ``model`` (a model group); an async iterable of
        ``StreamPiece`` with ``aclose()``. Retries and fallbacks happen here, before the first
        piece, exactly as in ``acompletion``."""
        kwargs: dict[str, Any] = {"model": model, "messages": messages, "stream": True,
                                  "stream_options": {"include_usage": True}, "ragline_options": options,
                                  "original_function": self._open_chat_stream}
        self._update_kwargs_before_fallbacks(model=model, kwargs=kwargs)
        return await self.async_function_with_fallbacks(**kwargs)

    async def _open_chat_stream(self, model: str, messages: list[dict], **kwargs: Any) -> Any:
        """One attempt on one deployment of ``model`` (the Router's ``original_function``)."""
        options = kwargs.pop("ragline_options", None) or {}
        deployments = self.get_model_list(model_name=model) or []
        if not self.direct_streaming or not deployments or not all(
                speaks_openai(d["litellm_params"]) for d in deployments):
            return LiteLLMPieces(await self._acompletion(model, messages, **kwargs, **options))
        deployment = await self._deployment(model, deployments, messages, kwargs)
        await self.async_routing_strategy_pre_call_checks(deployment=deployment, logging_obj=None,
                                                          parent_otel_span=None)
        self._update_kwargs_with_deployment(deployment=deployment, kwargs=kwargs)
        return await open_chat_stream(self._stream_client(), deployment["litellm_params"], messages, options,
                                      self._routes)

    async def _deployment(self, model: str, deployments: list[dict], messages: list[dict],
                          kwargs: dict[str, Any]) -> dict:
        """The deployment of ``model`` to call. A group of one deployment under the shuffle
        strategy (no rpm limits) with cooldowns, pre-call checks, tag filtering and routing
        groups off, as ``build_router`` makes it, has no choice to make; the Router's general
        selection cost the loop about 0.5 ms per answer under chat load."""
        if (len(deployments) == 1 and self.routing_strategy == "simple-shuffle" and self.disable_cooldowns
                and not self.enable_pre_call_checks and not self.enable_tag_filtering and not self.routing_groups):
            return deployments[0]
        return await self.async_get_available_deployment(model=model, messages=messages, request_kwargs=kwargs)

    def _stream_client(self) -> aiohttp.ClientSession:
        """The HTTP client of the running loop (a connection belongs to the loop that opened it)."""
        loop = asyncio.get_running_loop()
        client = self._stream_clients.get(loop)
        if client is None:
            for stale in [other for other in self._stream_clients if other.is_closed()]:
                del self._stream_clients[stale]
            connector = aiohttp.TCPConnector(limit=STREAM_CONNECTIONS, limit_per_host=STREAM_CONNECTIONS)
            # No trust_env: HTTP(S)_PROXY / NO_PROXY and netrc do apply, as they do to httpx and
            # LiteLLM's other calls, but looked up once per origin (``EnvRoutes``), not per request.
            client = self._stream_clients[loop] = aiohttp.ClientSession(connector=connector,
                                                                        read_bufsize=SSE_LINE_BYTES)
        return client

    async def aclose_streams(self) -> None:
        """Close the running loop's stream client (others belong to loops that are gone)."""
        client = self._stream_clients.pop(asyncio.get_running_loop(), None)
        if client is not None:
            await client.close()

    def get_router_model_info(self, deployment: Any, received_model_name: str, id: str | None = None) -> Any:
        deployment_id = id or ((deployment.get("model_info") or {}).get("id") if deployment is not None else None)
        if deployment_id is None:
            return super().get_router_model_info(deployment, received_model_name, id)
        key = (deployment_id, received_model_name)
        if key not in self._model_info_cache:
            self._model_info_cache[key] = super().get_router_model_info(deployment, received_model_name, id)
        return dict(self._model_info_cache[key])

    def _update_kwargs_with_deployment(self, deployment: dict, kwargs: dict, *args: Any, **more: Any) -> None:
        """Called once the Router has chosen the attempt's deployment (streamed or not)."""
        budget = CURRENT_BUDGET.get()
        if budget is not None:
            budget.arm = (deployment.get("model_info") or {}).get("arm") or budget.arm
        super()._update_kwargs_with_deployment(deployment, kwargs, *args, **more)

    async def make_call(self, original_function: Any, *args: Any, **kwargs: Any) -> Any:
        budget = CURRENT_BUDGET.get()
        if budget is not None:
            budget.attempts += 1
        return await super().make_call(original_function, *args, **kwargs)

    async def increment_deployment_usage_for_response(self, response: object,
                                                      request_kwargs: dict[str, object]) -> None:
        """Count the call in the per-minute tpm/rpm counters only when something reads them.

        Their readers are the usage-based strategy and the pre-call checks, which enforce
        deployments' rpm limits; the simple-shuffle Router ``build_router`` makes without limits
        has neither, and counting built LiteLLM's deployment models anew on every call (about 2 %
        of the serving process's CPU under chat_load, profiled with py-spy).
        """
        if self.routing_strategy == "simple-shuffle" and not self.enable_pre_call_checks:
            return
        await super().increment_deployment_usage_for_response(response=response, request_kwargs=request_kwargs)

    def _time_to_sleep_before_retry(self, e: Exception, *args: Any, **kwargs: Any) -> int | float:
        """LiteLLM's backoff, but never shorter than the provider's Retry-After (LiteLLM ignores
        values over 60 s) and never past the deadline: then the error is raised at once."""
        delay = max(super()._time_to_sleep_before_retry(e, *args, **kwargs), retry_after_seconds(e) or 0.0)
        budget = CURRENT_BUDGET.get()
        if budget is not None and delay >= budget.remaining():
            raise e
        return delay


class LiteLLMPieces:
    """LiteLLM's stream of a provider without an OpenAI-compatible endpoint, as ``StreamPiece``s."""

    def __init__(self, stream: Any) -> None:
        self.stream = stream
        self._hidden_params: dict[str, Any] = {}

    async def __aiter__(self) -> AsyncIterator[StreamPiece]:
        async for chunk in self.stream:
            usage = getattr(chunk, "usage", None)
            piece = StreamPiece(usage={"prompt_tokens": usage.prompt_tokens,
                                       "completion_tokens": usage.completion_tokens} if usage else None)
            if chunk.choices:
                choice = chunk.choices[0]
                piece.text = choice.delta.content or ""
                piece.reasoning = getattr(choice.delta, "reasoning_content", None) or ""
                piece.finish_reason = choice.finish_reason
            yield piece

    async def aclose(self) -> None:
        await self.stream.aclose()


def build_router(timeout: float, max_retries: int, rate_limited: bool,
                 fallbacks: dict[str, list[str]], direct_streaming: bool = True) -> BudgetedRouter:
    """An empty Router; deployments are added per model on first use (``add_deployment``).

    Cooldowns are off: every model group has a single deployment, so cooling it down would
    only turn one provider hiccup into a minute of refusals. The usage-based strategy is the
    one that enforces deployments' ``rpm``; it is chosen only when a limit is set. LiteLLM's
    "Give Feedback / Get Help" banner on every provider error is switched off: failures reach
    the logs once, as typed errors, from the API layer.
    """
    litellm.suppress_debug_info = True
    return BudgetedRouter(
        model_list=[],
        num_retries=max_retries,
        timeout=timeout,
        retry_after=0,
        disable_cooldowns=True,
        fallbacks=[{primary: list(targets)} for primary, targets in fallbacks.items()],
        routing_strategy="usage-based-routing-v2" if rate_limited else "simple-shuffle",
        direct_streaming=direct_streaming,
    )
