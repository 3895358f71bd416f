"""Typed failures of the model layer, and the one place LiteLLM's exceptions are translated.

Callers above ``rag.llm`` never see a LiteLLM, openai or httpx exception: every failure is an
``LLMServiceError`` with a human sentence (safe to show a user), the model it concerns, and
the HTTP status the API layer should answer with. ``outcome`` is the short word written to the
usage row, so accounting and the error envelope agree on what happened.
"""

from __future__ import annotations

import asyncio

import litellm
import openai

MAX_DETAIL_CHARS = 300


class LLMServiceError(Exception):
    """Base of every model-layer failure."""

    http_status = 502
    outcome = "error"

    def __init__(self, message: str, *, model: str | None = None, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.model = model
        self.retry_after = retry_after
        self.attempts = 1  # calls made to the provider, retries and fallbacks included
        self.arm: str | None = None  # the A/B arm that failed, when the model is an A/B group


class ProviderError(LLMServiceError):
    """The provider refused us for reasons of configuration: bad key, unknown model, no access."""


class UnsupportedProviderError(LLMServiceError):
    """The ``name@factory`` names a factory Ragline has no route to."""

    http_status = 400
    outcome = "unsupported"


class ValidationError(LLMServiceError):
    """The request is not acceptable for this model (parameter out of range, prompt too long)."""

    http_status = 400
    outcome = "invalid"


class TransformationError(LLMServiceError):
    """The provider answered, but not in a shape we can turn into an answer."""

    outcome = "bad_response"


class APICallError(LLMServiceError):
    """The call failed on the way: server errors, dropped connections, cut streams."""


class RateLimitError(LLMServiceError):
    """Too many requests: the provider's limit, or Ragline's own per-model/per-tenant limit."""

    http_status = 429
    outcome = "rate_limited"


class LLMTimeoutError(LLMServiceError):
    """No complete answer within the time budget (LLM_TIMEOUT), retries included."""

    http_status = 504
    outcome = "timeout"


def _detail(exc: BaseException) -> str:
    """The provider's own words, shortened; LiteLLM prefixes them with its class names."""
    text = str(getattr(exc, "message", None) or exc).strip().splitlines()
    first = text[0] if text else type(exc).__name__
    return first[:MAX_DETAIL_CHARS]


def _caused_by_timeout(exc: BaseException) -> bool:
    """Stream read timeouts surface as connection errors; look for the timeout underneath."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, (TimeoutError, asyncio.TimeoutError, openai.APITimeoutError)):
            return True
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return "timeout" in str(exc).lower()


def retry_after_seconds(exc: BaseException) -> float | None:
    """The provider's Retry-After (seconds form), if the failure carried one."""
    response = getattr(exc, "response", None)
    headers = getattr(exc, "litellm_response_headers", None) or getattr(response, "headers", None)
    value = headers.get("retry-after") if headers is not None else None
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


def translate_exception(exc: BaseException, model: str | None = None) -> LLMServiceError:
    """Map any exception raised while calling a model to the typed hierarchy (idempotent)."""
    if isinstance(exc, LLMServiceError):
        if exc.model is None:
            exc.model = model
        return exc
    who = f"The model {model}" if model else "The model"
    if isinstance(exc, (litellm.Timeout, TimeoutError, asyncio.TimeoutError)):
        return LLMTimeoutError(f"{who} did not answer in time.", model=model)
    if isinstance(exc, openai.RateLimitError):
        return RateLimitError(
            f"{who} is rate limited; try again later ({_detail(exc)}).", model=model, retry_after=retry_after_seconds(exc)
        )
    if isinstance(exc, litellm.LiteLLMUnknownProvider):
        return UnsupportedProviderError(f"{who} names a provider LiteLLM cannot route: {_detail(exc)}", model=model)
    if isinstance(exc, litellm.ContextWindowExceededError):
        return ValidationError(f"The prompt is longer than {model or 'the model'} accepts.", model=model)
    if isinstance(exc, (openai.AuthenticationError, openai.PermissionDeniedError, openai.NotFoundError)):
        return ProviderError(f"{who} was refused by its provider: {_detail(exc)}", model=model)
    if isinstance(exc, (openai.BadRequestError, openai.UnprocessableEntityError)):
        return ValidationError(f"{who} rejected the request: {_detail(exc)}", model=model)
    if isinstance(exc, openai.APIResponseValidationError):
        return TransformationError(f"{who} sent a response that could not be read: {_detail(exc)}", model=model)
    if isinstance(exc, openai.APIConnectionError) and _caused_by_timeout(exc):
        return LLMTimeoutError(f"{who} stopped sending data before the answer was complete.", model=model)
    if isinstance(exc, (openai.APIError, litellm.APIError)):
        return APICallError(f"{who} failed: {_detail(exc)}", model=model)
    if isinstance(exc, (KeyError, TypeError, ValueError, AttributeError)):
        return TransformationError(f"{who} returned something unexpected: {_detail(exc)}", model=model)
    return APICallError(f"{who} failed: {_detail(exc)}", model=model)
