"""Translation of LiteLLM/openai exceptions into the typed hierarchy, and its HTTP statuses."""

from __future__ import annotations

import httpx
import litellm
import pytest

from rag.llm.errors import (
    APICallError,
    LLMServiceError,
    LLMTimeoutError,
    ProviderError,
    RateLimitError,
    TransformationError,
    UnsupportedProviderError,
    ValidationError,
    translate_exception,
)

MODEL = "m@OpenAI"
REQUEST = httpx.Request("POST", "http://x/v1/chat/completions")


def _response(status: int, headers: dict | None = None) -> httpx.Response:
    return httpx.Response(status, headers=headers or {}, request=REQUEST)


@pytest.mark.parametrize(
    ("exc", "expected", "status"),
    [
        (litellm.Timeout("slow", model=MODEL, llm_provider="openai"), LLMTimeoutError, 504),
        (TimeoutError(), LLMTimeoutError, 504),
        (litellm.RateLimitError("busy", "openai", MODEL, response=_response(429, {"retry-after": "7"})),
         RateLimitError, 429),
        (litellm.AuthenticationError("bad key", "openai", MODEL), ProviderError, 502),
        (litellm.NotFoundError("no such model", MODEL, "openai"), ProviderError, 502),
        (litellm.BadRequestError("bad", MODEL, "openai"), ValidationError, 400),
        (litellm.ContextWindowExceededError("too long", MODEL, "openai"), ValidationError, 400),
        (litellm.InternalServerError("boom", "openai", MODEL), APICallError, 502),
        (litellm.APIConnectionError("reset by peer", "openai", MODEL), APICallError, 502),
        (litellm.APIConnectionError("Timeout on reading data from socket", "openai", MODEL), LLMTimeoutError, 504),
        (KeyError("choices"), TransformationError, 502),
        (RuntimeError("odd"), APICallError, 502),
    ],
)
def test_translation(exc: Exception, expected: type[LLMServiceError], status: int) -> None:
    error = translate_exception(exc, MODEL)
    assert type(error) is expected
    assert error.http_status == status and error.model == MODEL
    assert MODEL in error.message or expected is ValidationError
    assert "Traceback" not in error.message


def test_rate_limit_carries_retry_after() -> None:
    exc = litellm.RateLimitError("busy", "openai", MODEL, response=_response(429, {"retry-after": "7"}))
    assert translate_exception(exc, MODEL).retry_after == 7.0


def test_typed_errors_pass_through_unchanged() -> None:
    original = UnsupportedProviderError("nope")
    assert translate_exception(original, MODEL) is original and original.model == MODEL
    assert original.http_status == 400


def test_hierarchy() -> None:
    for cls in (ProviderError, UnsupportedProviderError, ValidationError, TransformationError, APICallError,
                RateLimitError, LLMTimeoutError):
        assert issubclass(cls, LLMServiceError)
