"""LLMBundle over every kind of model method: sync functions, sync generators, coroutines;
the builtin extractive model; embeddings and rerank through LiteLLM against the stub."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator

import numpy as np
import pytest

from api.db.services.llm_service import LLMBundle
from api.db.services.usage_service import MemoryUsageSink
from rag.llm.chat_model import EXTRACTIVE_MODEL, NO_DOCUMENTS
from rag.llm.registry import ModelRegistry
from rag.llm.types import ChatResult
from tests.fixtures.stub_llm import StubLLMServer, embedding_vector
from tests.llm.conftest import INPUT_PRICE, STUB_EMBED, STUB_RERANK

HISTORY = [{"role": "user", "content": "When was the bridge opened?"}]
KNOWLEDGE = """Here is the knowledge base:
ID: 0
├── Title: bridges.txt
└── Content: The Golden Gate Bridge was opened in 1937. It is painted international orange.
ID: 1
├── Title: weather.txt
└── Content: Fog is common in summer. The bridge closes rarely.
"""


class SyncChat:
    """A legacy sync model: plain function and a sync generator that notes how it ended."""

    def __init__(self) -> None:
        self.chat_thread: int | None = None
        self.generator_closed = threading.Event()
        self.produced = 0

    def chat(self, system: str | None, history: list[dict], gen_conf: dict) -> ChatResult:
        self.chat_thread = threading.get_ident()
        return ChatResult(text="sync answer")

    def chat_streamly(self, system: str | None, history: list[dict], gen_conf: dict) -> Iterator[str]:
        try:
            for index in range(1000):
                time.sleep(0.005)
                self.produced += 1
                yield f"t{index} "
        finally:
            self.generator_closed.set()


class SyncEmbedding:
    dim = 4
    model_name = "fake-sync@Builtin"

    def encode(self, texts: list[str]) -> tuple[np.ndarray, int]:
        return np.asarray([embedding_vector(t, self.dim) for t in texts], dtype=np.float32), len(texts)

    def encode_queries(self, text: str) -> tuple[np.ndarray, int]:
        vectors, tokens = self.encode([text])
        return vectors[0], tokens


async def test_sync_model_runs_in_a_worker_thread(registry: ModelRegistry) -> None:
    model = SyncChat()
    sink = MemoryUsageSink()
    result = await LLMBundle(registry, "t1", "legacy@OpenAI-API-Compatible", sink, model=model).chat(None, HISTORY)
    assert result.text == "sync answer"
    assert model.chat_thread not in (None, threading.get_ident())
    assert not result.usage.exact and result.usage.prompt_tokens > 0  # counted with tiktoken
    assert sink.rows[0].completion_tokens == 2


async def test_sync_generator_is_pumped_and_stopped_when_the_consumer_leaves(registry: ModelRegistry) -> None:
    model = SyncChat()
    sink = MemoryUsageSink()
    received = []
    async with LLMBundle(registry, "t1", "legacy@OpenAI-API-Compatible", sink, model=model).chat_streamly(
        None, HISTORY
    ) as stream:
        async for delta in stream:
            received.append(delta)
            if len(received) == 3:
                break
    assert received == ["t0 ", "t1 ", "t2 "]
    assert await asyncio.to_thread(model.generator_closed.wait, 2)
    produced = model.produced
    await asyncio.sleep(0.05)
    assert model.produced == produced < 1000  # the generator really stopped
    assert sink.rows[0].outcome == "cancelled" and stream.result.text == "t0 t1 t2 "


async def test_loop_stays_free_while_a_sync_generator_works(registry: ModelRegistry) -> None:
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.005)
            ticks += 1

    task = asyncio.create_task(ticker())
    stream = LLMBundle(registry, "t1", "legacy@OpenAI-API-Compatible", None, model=SyncChat()).chat_streamly(
        None, HISTORY
    )
    count = 0
    async for _ in stream:
        count += 1
        if count == 40:
            break
    await stream.aclose()
    task.cancel()
    assert ticks >= 20  # 40 items at 5 ms each: the loop kept ticking meanwhile


async def test_extractive_model_quotes_relevant_sentences_with_citations(registry: ModelRegistry) -> None:
    bundle = LLMBundle(registry, "t1", EXTRACTIVE_MODEL, MemoryUsageSink())
    assert bundle.is_extractive
    result = await bundle.chat(KNOWLEDGE, HISTORY)
    assert result.text.startswith("The Golden Gate Bridge was opened in 1937. [ID:0]")
    assert "[ID:1]" in result.text and "international orange" not in result.text
    assert result.metadata["extractive"] is True and result.cost == 0.0

    stream = bundle.chat_streamly(KNOWLEDGE, HISTORY)
    assert "".join([delta async for delta in stream]) == result.text
    assert stream.result.metadata["extractive"] is True


async def test_extractive_model_quotes_the_knowledge_not_earlier_answers(registry: ModelRegistry) -> None:
    """In a session the earlier answers are in the history; quoting them again repeated sentences
    and their citations ("... 1937. [ID:0] [ID:0] ...")."""
    bundle = LLMBundle(registry, "t1", EXTRACTIVE_MODEL, MemoryUsageSink())
    first = (await bundle.chat(KNOWLEDGE, HISTORY)).text
    follow_up = [*HISTORY, {"role": "assistant", "content": first},
                 {"role": "user", "content": "Was the bridge opened in 1937?"}]
    second = (await bundle.chat(KNOWLEDGE, follow_up)).text
    assert second == "The Golden Gate Bridge was opened in 1937. [ID:0] The bridge closes rarely. [ID:1]"


async def test_extractive_model_is_the_default_without_a_provider() -> None:
    registry = ModelRegistry.from_config()
    bundle = LLMBundle(registry, "t1", None, None)
    assert bundle.model_name == EXTRACTIVE_MODEL
    assert (await bundle.chat("no knowledge here", HISTORY)).text == NO_DOCUMENTS


async def test_remote_embeddings_through_litellm(registry: ModelRegistry, stub_llm: StubLLMServer) -> None:
    stub_llm.configure(embedding_dim=12)
    sink = MemoryUsageSink()
    bundle = LLMBundle(registry, "t1", STUB_EMBED, sink, kind="embedding")
    vectors, tokens = await bundle.encode(["alpha beta", "gamma"])
    query, query_tokens = await bundle.encode_queries("alpha beta")

    assert vectors.shape == (2, 12) and vectors.dtype == np.float32 and query.shape == (12,)
    np.testing.assert_allclose(query, vectors[0], rtol=1e-6)
    assert (tokens, query_tokens) == (3, 2)
    assert [(r.kind, r.prompt_tokens) for r in sink.rows] == [("embedding", 3), ("embedding", 2)]
    assert sink.rows[0].cost == pytest.approx(3 * INPUT_PRICE)

    scores, _ = await bundle.similarity("alpha beta", ["alpha beta", "gamma"])
    assert scores[0] == pytest.approx(1.0, abs=1e-5) and scores[1] < 0.99


async def test_sync_embedding_model_and_cosine_similarity(registry: ModelRegistry) -> None:
    bundle = LLMBundle(registry, "t1", "fake-sync@Builtin", None, kind="embedding", model=SyncEmbedding())
    scores, tokens = await bundle.similarity("x", ["x", "y", "z"])
    assert scores.shape == (3,) and scores[0] == pytest.approx(1.0, abs=1e-5) and tokens == 4


async def test_rerank_through_litellm(registry: ModelRegistry, stub_llm: StubLLMServer) -> None:
    bundle = LLMBundle(registry, "t1", STUB_RERANK, MemoryUsageSink(), kind="rerank")
    scores, tokens = await bundle.similarity("golden bridge", ["the golden bridge", "fog", "golden hour"])
    np.testing.assert_allclose(scores, [1.0, 0.0, 0.5])
    assert tokens > 0
    assert stub_llm.requests_to("/rerank")[0].body["query"] == "golden bridge"
