"""SyncLLMWrapper: sync code in a worker thread calling an async model (re-exported by api_utils).

Retrieval runs in worker threads and needs the question's embedding from an async model
(LLMBundle, LiteLLM). The coroutine is submitted to the app's running loop with
``run_coroutine_threadsafe``, where the shared HTTP clients live, and the thread waits with a
timeout. A private loop per call would bind those clients to a loop that dies right after
("Event loop is closed"), so none is ever created per call. Called on the loop's own thread it
would wait on itself forever, so it refuses at once. With no loop running at all (a CLI, a
script) it runs the call with ``asyncio.run``.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import inspect
from collections.abc import Callable
from typing import Any

import numpy as np

from rag.llm.errors import LLMTimeoutError


class SyncLLMWrapper:
    """Blocking ``encode``/``encode_queries``/``similarity``/``chat`` over an async model or bundle.

    Sync methods of the wrapped object are called directly; other attributes (``dim``,
    ``model_name``, ``max_length`` ...) are read through.
    """

    def __init__(self, bundle_or_model: Any, loop: asyncio.AbstractEventLoop | None = None,
                 timeout: float = 60.0) -> None:
        self._target = bundle_or_model
        self._loop = loop
        self._timeout = timeout

    def __getattr__(self, name: str) -> Any:
        return getattr(self._target, name)

    def _call(self, method_name: str, *args: Any) -> Any:
        method: Callable[..., Any] = getattr(self._target, method_name)
        if not inspect.iscoroutinefunction(method):
            return method(*args)
        loop = self._loop
        if loop is not None and loop.is_running():
            if self._on_loop_thread(loop):
                raise RuntimeError(
                    f"SyncLLMWrapper.{method_name} was called on the event loop's own thread; "
                    "it would deadlock. Await the async method instead, or call from a worker thread."
                )
            return self._submit(loop, method(*args), method_name)
        if self._thread_has_running_loop():
            raise RuntimeError(f"SyncLLMWrapper.{method_name} cannot block inside a running event loop.")
        return asyncio.run(asyncio.wait_for(method(*args), self._timeout))

    def _submit(self, loop: asyncio.AbstractEventLoop, coroutine: Any, method_name: str) -> Any:
        future = asyncio.run_coroutine_threadsafe(coroutine, loop)
        try:
            return future.result(self._timeout)
        except concurrent.futures.TimeoutError:
            future.cancel()
            raise LLMTimeoutError(
                f"{method_name} of {getattr(self._target, 'model_name', 'the model')} did not finish "
                f"within {self._timeout:g} s."
            ) from None

    @staticmethod
    def _on_loop_thread(loop: asyncio.AbstractEventLoop) -> bool:
        try:
            return asyncio.get_running_loop() is loop
        except RuntimeError:
            return False

    @staticmethod
    def _thread_has_running_loop() -> bool:
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return False
        return True

    def encode(self, texts: list[str]) -> tuple[np.ndarray, int]:
        return self._call("encode", texts)

    def encode_queries(self, text: str) -> tuple[np.ndarray, int]:
        return self._call("encode_queries", text)

    def similarity(self, query: str, texts: list[str]) -> tuple[np.ndarray, int]:
        return self._call("similarity", query, texts)

    def chat(self, system: str | None, history: list[dict], gen_conf: dict | None = None) -> Any:
        return self._call("chat", system, history, gen_conf or {})
