"""SyncLLMWrapper: worker threads calling async models on the app's loop."""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading

import numpy as np
import pytest

from api.db.services.llm_service import LLMBundle
from api.db.services.usage_service import MemoryUsageSink
from api.utils.llm_bridge import SyncLLMWrapper
from rag.llm.errors import LLMTimeoutError
from rag.llm.registry import ModelRegistry
from tests.fixtures.stub_llm import StubLLMServer, embedding_vector
from tests.llm.conftest import STUB_CHAT, STUB_EMBED


class SlowAsyncEmbedding:
    dim = 3
    model_name = "slow@Test"

    async def encode(self, texts: list[str]) -> tuple[np.ndarray, int]:
        await asyncio.sleep(5)
        return np.zeros((len(texts), 3), dtype=np.float32), 0

    async def encode_queries(self, text: str) -> tuple[np.ndarray, int]:
        await asyncio.sleep(0)
        return np.asarray(embedding_vector(text, 3), dtype=np.float32), 1


async def test_64_threads_encode_while_the_loop_serves_chat(registry: ModelRegistry, stub_llm: StubLLMServer) -> None:
    """The retrieval pattern under load: no deadlock, no 'Event loop is closed', right vectors."""
    stub_llm.configure(embedding_dim=8, first_token_delay=0.01)
    sink = MemoryUsageSink()
    loop = asyncio.get_running_loop()
    wrapper = SyncLLMWrapper(LLMBundle(registry, "t1", STUB_EMBED, sink, kind="embedding"), loop, timeout=20)
    chat = LLMBundle(registry, "t1", STUB_CHAT, sink)
    start = threading.Barrier(64)

    def encode_in_thread(index: int) -> np.ndarray:
        start.wait()
        vectors, _ = wrapper.encode([f"text {index}"])
        return vectors[0]

    with concurrent.futures.ThreadPoolExecutor(64) as pool:
        encodings = [loop.run_in_executor(pool, encode_in_thread, i) for i in range(64)]
        chats = [chat.chat(None, [{"role": "user", "content": f"q{i}"}]) for i in range(8)]
        results = await asyncio.wait_for(asyncio.gather(*encodings, *chats), 30)

    for index, vector in enumerate(results[:64]):
        np.testing.assert_allclose(vector, embedding_vector(f"text {index}", 8), rtol=1e-5)
    assert all(r.text.startswith("Stub answer about: q") for r in results[64:])
    assert len(stub_llm.requests_to("/embeddings")) == 64
    assert sum(row.kind == "embedding" for row in sink.rows) == 64


async def test_called_on_the_loop_thread_it_refuses_at_once() -> None:
    wrapper = SyncLLMWrapper(SlowAsyncEmbedding(), asyncio.get_running_loop(), timeout=5)
    with pytest.raises(RuntimeError, match="deadlock"):
        wrapper.encode_queries("x")


async def test_timeout_cancels_the_call_and_raises_typed_error() -> None:
    wrapper = SyncLLMWrapper(SlowAsyncEmbedding(), asyncio.get_running_loop(), timeout=0.2)
    with pytest.raises(LLMTimeoutError):
        await asyncio.to_thread(wrapper.encode, ["x"])


def test_without_a_running_loop_it_uses_asyncio_run() -> None:
    wrapper = SyncLLMWrapper(SlowAsyncEmbedding(), None, timeout=5)
    vector, tokens = wrapper.encode_queries("abc")
    np.testing.assert_allclose(vector, embedding_vector("abc", 3), rtol=1e-6)
    assert tokens == 1 and wrapper.dim == 3


def test_sync_methods_are_called_directly() -> None:
    class SyncModel:
        def encode_queries(self, text: str) -> tuple[str, int]:
            return threading.current_thread().name, 0

    thread_name, _ = SyncLLMWrapper(SyncModel(), None).encode_queries("x")
    assert thread_name == threading.current_thread().name


async def test_chat_from_a_worker_thread(registry: ModelRegistry, stub_llm: StubLLMServer) -> None:
    stub_llm.configure(reply="from the loop")
    wrapper = SyncLLMWrapper(LLMBundle(registry, "t1", STUB_CHAT, None), asyncio.get_running_loop(), timeout=10)
    result = await asyncio.to_thread(wrapper.chat, None, [{"role": "user", "content": "hi"}])
    assert result.text == "from the loop" and wrapper.max_length == 8192
