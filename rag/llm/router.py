"""LiteLLM's Router, bounded by one time budget per call.

The Router does the reliability work: per-attempt timeouts, retries with exponential backoff
and jitter that honour ``Retry-After``, fallbacks to other models, per-model rpm limits. Two
things it cannot know are added here, through the two hooks it calls on every attempt:

* the whole call (all attempts and sleeps) must end within LLM_TIMEOUT: a retry whose sleep
  would overrun the budget is not taken; the last error is raised instead (so a 429 asking
  for 60 s fails fast as a rate limit instead of sleeping into a timeout);
* the number of attempts, for the usage row.

Both live in a ``CallBudget`` put in a context variable by the caller (``call_budget``).

The Router also looks up each deployment's model info twice per call and deep-copies LiteLLM's
map entry each time (about 1 ms per call here); deployments never change once added, so the
result is cached per deployment.
"""

from __future__ import annotations

import contextlib
import contextvars
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import litellm
from litellm import Router

from rag.llm.errors import retry_after_seconds


@dataclass
class CallBudget:
    deadline: float  # time.monotonic() by which the call must be over
    attempts: int = 0

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

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._model_info_cache: dict[tuple[Any, ...], dict] = {}

    def get_router_model_info(self, deployment: Any, received_model_name: str, id: str | None = None) -> Any:
        deployment_id = id or ((deployment.get("model_info") or {}).get("id") if deployment is not None else None)
        if deployment_id is None:
            return super().get_router_model_info(deployment, received_model_name, id)
        key = (deployment_id, received_model_name)
        if key not in self._model_info_cache:
            self._model_info_cache[key] = super().get_router_model_info(deployment, received_model_name, id)
        return dict(self._model_info_cache[key])

    async def make_call(self, original_function: Any, *args: Any, **kwargs: Any) -> Any:
        budget = CURRENT_BUDGET.get()
        if budget is not None:
            budget.attempts += 1
        return await super().make_call(original_function, *args, **kwargs)

    def _time_to_sleep_before_retry(self, e: Exception, *args: Any, **kwargs: Any) -> int | float:
        """LiteLLM's backoff, but never shorter than the provider's Retry-After (LiteLLM ignores
        values over 60 s) and never past the deadline: then the error is raised at once."""
        delay = max(super()._time_to_sleep_before_retry(e, *args, **kwargs), retry_after_seconds(e) or 0.0)
        budget = CURRENT_BUDGET.get()
        if budget is not None and delay >= budget.remaining():
            raise e
        return delay


def build_router(timeout: float, max_retries: int, rate_limited: bool,
                 fallbacks: dict[str, list[str]]) -> BudgetedRouter:
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
    )
