"""Streamed chat completions of OpenAI-compatible endpoints, read straight off the wire.

Why this exists: LiteLLM's stream wrapper builds an openai-SDK pydantic object and then a
LiteLLM ``ModelResponseStream`` for every chunk, about 0.5 ms of CPU per chunk here, against
about 0.03 ms for reading the SSE line and ``json.loads`` (``python -m
tests.bench.stream_overhead``). That work runs on the event loop; 200 answers streaming at
50 tokens/s would need several cores for it alone. The transport is aiohttp (its parser is
C): a short RAG answer (a 15 KB prompt, 18 tokens) cost the loop 1.1 ms of CPU through it
against 2.5 ms through httpx, whose pure-Python HTTP layers were the largest share of the
loop's time under chat_load after the database. So for deployments LiteLLM itself would
send to an OpenAI-compatible endpoint (``openai/...``), the Router still retries, falls
back, enforces rpm and chooses among a group's deployments (``BudgetedRouter.astream_chat``), and only
the transport of the answer is this module's. Every other provider streams through LiteLLM.

Failures are raised as LiteLLM's exception types (which subclass the openai SDK's), so the
Router's retry rules and ``rag.llm.errors.translate_exception`` treat them exactly as they
treat LiteLLM's own.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import httpx
import litellm
from aiohttp.helpers import basicauth_from_netrc, get_env_proxy_for_url, netrc_from_env
from aiohttp.http_exceptions import HttpProcessingError
from litellm.utils import get_optional_params
from yarl import URL

OPENAI_PREFIX = "openai/"
DEFAULT_OPENAI_BASE = "https://api.openai.com/v1"
ERROR_BODY_CHARS = 500


@dataclass
class StreamPiece:
    """What one chunk of a streamed answer says, whichever transport read it."""

    text: str = ""
    reasoning: str = ""
    finish_reason: str | None = None
    usage: dict[str, Any] | None = None  # prompt_tokens / completion_tokens as the provider sent them


def speaks_openai(litellm_params: dict[str, Any]) -> bool:
    """True for deployments LiteLLM would call through its OpenAI client."""
    return str(litellm_params.get("model", "")).startswith(OPENAI_PREFIX)


def piece_of(chunk: dict[str, Any]) -> StreamPiece:
    """A parsed SSE ``data:`` object as a piece (reasoning under either name providers use)."""
    piece = StreamPiece(usage=chunk.get("usage") or None)
    choices = chunk.get("choices") or []
    if choices:
        choice = choices[0]
        delta = choice.get("delta") or {}
        piece.text = delta.get("content") or ""
        piece.reasoning = delta.get("reasoning_content") or delta.get("reasoning") or ""
        piece.finish_reason = choice.get("finish_reason")
    return piece


class SSEChatStream:
    """One open answer: ``async for piece in stream``; ``aclose()`` drops the connection.

    ``_hidden_params`` is where the Router notes response headers and retry counts on
    whatever its call returned.
    """

    def __init__(self, response: aiohttp.ClientResponse, model: str) -> None:
        self.response = response
        self.model = model
        self._hidden_params: dict[str, Any] = {}

    def __aiter__(self) -> AsyncIterator[StreamPiece]:
        return self._pieces()

    async def _pieces(self) -> AsyncIterator[StreamPiece]:
        try:
            async for raw in self.response.content:  # one line at a time
                line = raw.decode("utf-8").strip()
                if not line.startswith("data:"):
                    continue  # blank separators, ": keep-alive" comments, "event:" names
                data = line[5:].strip()
                if data == "[DONE]":
                    # Read the body's end too (as the openai SDK does): a response released
                    # with bytes unread takes its connection along, and each answer would open one.
                    await self.response.read()
                    return
                chunk = json.loads(data)
                if "error" in chunk:
                    raise litellm.APIError(status_code=500, message=_error_text(chunk["error"]),
                                           llm_provider="openai", model=self.model)
                yield piece_of(chunk)
        except TimeoutError as error:  # aiohttp's read timeouts are TimeoutErrors too
            raise litellm.Timeout(f"The stream stalled: {error!r}", model=self.model, llm_provider="openai") from error
        except aiohttp.ClientError as error:
            raise litellm.APIConnectionError(f"The stream was cut: {error!r}", llm_provider="openai",
                                             model=self.model) from error
        except HttpProcessingError as error:  # a line longer than the reader takes (LineTooLong)
            raise litellm.APIConnectionError(f"The stream could not be read: {error!r}", llm_provider="openai",
                                             model=self.model) from error

    async def aclose(self) -> None:
        self.response.release()


def wire_options(model: str, options: dict[str, Any]) -> dict[str, Any]:
    """The generation options as LiteLLM would send them to this model: its own mapping, so
    e.g. ``max_tokens`` becomes ``max_completion_tokens`` for OpenAI's reasoning models and an
    option the model refuses raises the same ``UnsupportedParamsError``.

    The mapping depends on nothing but its arguments and cost 0.3-0.7 ms of the event loop per
    answer, so it is remembered for options of plain values (all of a chat's settings).
    """
    try:
        return dict(_mapped_options(model, tuple(sorted(options.items()))))
    except TypeError:  # an unhashable value (a list of stop words): map it afresh
        return dict(_map_options(model, options))


@functools.lru_cache(maxsize=1024)
def _mapped_options(model: str, options: tuple[tuple[str, Any], ...]) -> tuple[tuple[str, Any], ...]:
    return tuple(_map_options(model, dict(options)).items())


def _map_options(model: str, options: dict[str, Any]) -> dict[str, Any]:
    mapped = get_optional_params(model=model, custom_llm_provider="openai", **options)
    mapped.pop("stream", None)
    extra = mapped.pop("extra_body", None) or {}
    return {**mapped, **extra}


@dataclass(frozen=True)
class Route:
    """How to reach one origin, as the environment says (``HTTP(S)_PROXY``, ``NO_PROXY``, netrc)."""

    proxy: URL | None = None
    proxy_auth: aiohttp.BasicAuth | None = None
    auth: aiohttp.BasicAuth | None = None  # the origin's own netrc entry


def _route_from_env(url: URL) -> Route:
    """What aiohttp's ``trust_env`` looks up on every request (reading files: call off the loop)."""
    proxy, proxy_auth = None, None
    with contextlib.suppress(LookupError):
        proxy, proxy_auth = get_env_proxy_for_url(url)
    auth = None
    with contextlib.suppress(LookupError):
        auth = basicauth_from_netrc(netrc_from_env(), url.host)
    return Route(proxy, proxy_auth, auth)


class EnvRoutes:
    """The environment's route to each origin, looked up once.

    aiohttp's ``trust_env`` looks the netrc file and the proxy variables up in the default thread
    pool on every request: two thread hops in each answer's time to first token, and under chat
    load they queued behind the database calls that share that pool. A running server's
    environment does not change, so one lookup per origin does: a proxy variable or netrc entry
    added later applies after a restart. A redirect keeps the first origin's proxy (providers'
    chat endpoints do not redirect).
    """

    def __init__(self) -> None:
        self._known: dict[URL, Route] = {}

    async def route(self, url: str) -> Route:
        target = URL(url)
        origin = target.origin()
        if origin not in self._known:
            self._known[origin] = await asyncio.to_thread(_route_from_env, target)
        return self._known[origin]


async def open_chat_stream(client: aiohttp.ClientSession, litellm_params: dict[str, Any], messages: list[dict],
                           options: dict[str, Any], routes: EnvRoutes) -> SSEChatStream:
    """POST the request (through the environment's proxy for it, ``routes``) and wait for the
    response head; a refusal raises the typed error.

    ``options`` are the request's generation options (temperature, max_tokens ...). The
    timeout bounds the connection and every wait for more of the body, not the whole answer
    (the caller's budget does that).
    """
    model = str(litellm_params["model"]).removeprefix(OPENAI_PREFIX)
    options = wire_options(model, options)
    base = (litellm_params.get("api_base") or os.environ.get("OPENAI_BASE_URL") or os.environ.get("OPENAI_API_BASE")
            or DEFAULT_OPENAI_BASE)  # the same fallbacks LiteLLM's OpenAI route reads
    url = base.rstrip("/") + "/chat/completions"
    headers = {"Accept": "text/event-stream"}
    if api_key := litellm_params.get("api_key") or os.environ.get("OPENAI_API_KEY"):
        headers["Authorization"] = f"Bearer {api_key}"
    body = {**options, "model": model, "messages": messages, "stream": True,
            "stream_options": {"include_usage": True}}
    seconds = float(litellm_params.get("stream_timeout") or litellm_params.get("timeout") or 600.0)
    timeout = aiohttp.ClientTimeout(total=None, connect=seconds, sock_read=seconds)
    route = await routes.route(url)
    # netrc only where nothing else authenticates (aiohttp refuses to combine them)
    netrc_auth = None if "Authorization" in headers or URL(url).user is not None else route.auth
    try:
        response = await client.post(url, json=body, headers=headers, timeout=timeout, proxy=route.proxy,
                                     proxy_auth=route.proxy_auth, auth=netrc_auth)
    except TimeoutError as error:
        raise litellm.Timeout(f"No answer in time: {error!r}", model=model, llm_provider="openai") from error
    except aiohttp.ClientError as error:
        raise litellm.APIConnectionError(f"Could not reach {url}: {error!r}", llm_provider="openai",
                                         model=model) from error
    if response.status != 200:
        try:
            refusal = httpx.Response(response.status, headers=dict(response.headers), content=await response.read(),
                                     request=httpx.Request("POST", url))
        except (TimeoutError, aiohttp.ClientError):
            refusal = httpx.Response(response.status, headers=dict(response.headers), request=httpx.Request("POST", url))
        finally:
            response.release()
        raise status_error(refusal, model)
    return SSEChatStream(response, model)


STATUS_ERRORS: dict[int, type[Exception]] = {
    400: litellm.BadRequestError,
    401: litellm.AuthenticationError,
    403: litellm.PermissionDeniedError,
    404: litellm.NotFoundError,
    408: litellm.Timeout,
    422: litellm.UnprocessableEntityError,
    429: litellm.RateLimitError,
    503: litellm.ServiceUnavailableError,
}


def status_error(response: httpx.Response, model: str) -> Exception:
    """The LiteLLM exception LiteLLM itself raises for this status (the response rides along, as
    the ``httpx.Response`` LiteLLM's exceptions carry, so the Router can honour ``Retry-After``)."""
    message = _error_text(_json_or_text(response))
    error_type = STATUS_ERRORS.get(response.status_code)
    if error_type is litellm.Timeout:
        return litellm.Timeout(message, model=model, llm_provider="openai")
    if error_type is litellm.BadRequestError and "context" in message.lower() and "length" in message.lower():
        return litellm.ContextWindowExceededError(message, model=model, llm_provider="openai", response=response)
    if error_type is not None:
        return error_type(message, llm_provider="openai", model=model, response=response)
    if response.status_code >= 500:
        return litellm.InternalServerError(message, llm_provider="openai", model=model, response=response)
    return litellm.APIError(status_code=response.status_code, message=message, llm_provider="openai", model=model)


def _json_or_text(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return response.text


def _error_text(payload: Any) -> str:
    """The provider's own words: ``{"error": {"message": ...}}``, ``{"error": "..."}`` or text."""
    if isinstance(payload, dict):
        inner = payload.get("error", payload)
        if isinstance(inner, dict):
            return str(inner.get("message") or inner)[:ERROR_BODY_CHARS]
        return str(inner)[:ERROR_BODY_CHARS]
    return str(payload)[:ERROR_BODY_CHARS]
