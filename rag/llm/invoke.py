"""Calling a model method from async code, whatever kind of function it is.

Models come in two kinds: async ones (LiteLLM) and sync ones (the builtin models, legacy
code). Async code must never run a sync model on the event loop, so the kind is read from
the method itself:

* coroutine function → awaited;
* async generator function → iterated;
* sync generator function (legacy streaming) → pumped from a worker thread into an
  ``asyncio.Queue``; when the consumer stops early the worker stops and closes the generator;
* plain function → ``asyncio.to_thread`` (its result is awaited or pumped if it turns out to
  be an awaitable or an iterator).
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import Executor
from typing import Any

_ITEM, _END, _ERROR = "item", "end", "error"


async def call_model(method: Callable[..., Any], *args: Any, executor: Executor | None = None) -> Any:
    """The result of a non-streaming model method, never blocking the loop (a sync method runs
    in ``executor``, by default the loop's default pool)."""
    if inspect.iscoroutinefunction(method):
        return await method(*args)
    if executor is None:
        result = await asyncio.to_thread(method, *args)
    else:
        result = await asyncio.get_running_loop().run_in_executor(executor, method, *args)
    if inspect.isawaitable(result):
        return await result
    return result


async def iterate_model(method: Callable[..., Any], *args: Any) -> AsyncIterator[Any]:
    """The items of a streaming model method, as an async generator (close it to stop early)."""
    if inspect.isasyncgenfunction(method):
        source = method(*args)
    elif inspect.isgeneratorfunction(method):
        source = pump_sync_iterator(lambda: method(*args))
    else:
        result = await call_model(method, *args)
        if hasattr(result, "__aiter__"):
            source = result
        elif isinstance(result, Iterator):
            source = pump_sync_iterator(lambda: result)
        else:
            yield result
            return
    async with contextlib.aclosing(source) if hasattr(source, "aclose") else contextlib.nullcontext(source):
        async for item in source:
            yield item


def _worker(make_iterator: Callable[[], Iterator[Any]], loop: asyncio.AbstractEventLoop,
            queue: asyncio.Queue, stop: threading.Event) -> None:
    """Runs in a worker thread: drives the sync iterator, hands items to the loop."""

    def hand_over(kind: str, value: Any) -> None:
        with contextlib.suppress(RuntimeError):  # the loop is gone: nobody is listening
            loop.call_soon_threadsafe(queue.put_nowait, (kind, value))

    iterator = None
    try:
        iterator = make_iterator()
        for item in iterator:
            if stop.is_set():
                break
            hand_over(_ITEM, item)
        hand_over(_END, None)
    except BaseException as exc:  # handed to the consumer, which re-raises it
        hand_over(_ERROR, exc)
    finally:
        close = getattr(iterator, "close", None)
        if close is not None:
            close()


async def pump_sync_iterator(make_iterator: Callable[[], Iterator[Any]]) -> AsyncIterator[Any]:
    """Items of a sync iterator produced in a worker thread.

    The queue is unbounded: sync generators here are model outputs, produced no faster than
    a model writes. On early exit the worker notices ``stop`` after its current item and
    closes the generator (its ``finally`` blocks run); the consumer does not wait for that.
    """
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue = asyncio.Queue()
    stop = threading.Event()
    loop.run_in_executor(None, _worker, make_iterator, loop, queue, stop)
    try:
        while True:
            kind, value = await queue.get()
            if kind == _END:
                break
            if kind == _ERROR:
                raise value
            yield value
    finally:
        stop.set()
