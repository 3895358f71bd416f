"""The builtin MiniLM (loaded once per session, shared with the app fixtures) and the LiteLLM model."""

from __future__ import annotations

import threading
from types import SimpleNamespace

import numpy as np
import pytest

from rag.llm.embedding_model import (
    BuiltinEmbedding,
    LiteLLMEmbedding,
    create_embedding_model,
    split_model_name,
)


@pytest.fixture(scope="session")
def minilm(builtin_embedding: BuiltinEmbedding) -> BuiltinEmbedding:
    """The session's one MiniLM (tests/conftest.py), warmed up here."""
    builtin_embedding.warm_up()
    return builtin_embedding


def test_encode_shapes_and_normalisation(minilm):
    vectors, tokens = minilm.encode(["Aspirin prevents heart attacks.", "Volcanoes erupt.", ""])
    assert vectors.shape == (3, 384) and vectors.dtype == np.float32
    assert np.allclose(np.linalg.norm(vectors[:2], axis=1), 1.0, atol=1e-4)
    assert tokens > 0
    query, query_tokens = minilm.encode_queries("Does aspirin prevent heart attacks?")
    assert query.shape == (384,) and query_tokens > 0
    assert float(query @ vectors[0]) > float(query @ vectors[1]) + 0.2
    assert minilm.encode([])[0].shape == (0, 384)


def test_concurrent_first_use_loads_once(monkeypatch):
    import sentence_transformers

    loads = []

    class SlowModel:
        def __init__(self, path, device):
            loads.append(path)
            threading.Event().wait(0.05)  # widen the race window

    monkeypatch.setattr(sentence_transformers, "SentenceTransformer", SlowModel)
    model = BuiltinEmbedding()
    threads = [threading.Thread(target=model.warm_up) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(loads) == 1 and isinstance(model._model, SlowModel)
    assert model._model.max_seq_length == 256


def test_long_text_is_read_up_to_256_word_pieces(minilm):
    assert minilm.word_pieces("hello world") == 2
    head = "aspirin heart attack prevention " * 70
    assert np.allclose(minilm.encode([head])[0], minilm.encode([head + "volcano " * 500])[0], atol=1e-5)


def test_factory_by_name_at_factory():
    assert split_model_name("all-MiniLM-L6-v2@Builtin") == ("all-MiniLM-L6-v2", "Builtin")
    assert isinstance(create_embedding_model("all-MiniLM-L6-v2@Builtin"), BuiltinEmbedding)
    remote = create_embedding_model("text-embedding-3-small@OpenAI", api_base="http://x/v1", api_key="k")
    assert isinstance(remote, LiteLLMEmbedding) and remote.model == "openai/text-embedding-3-small"
    with pytest.raises(ValueError):
        create_embedding_model("nope@Builtin")


async def test_litellm_embedding_is_async_and_ordered(monkeypatch):
    import litellm

    seen = {}

    async def fake_aembedding(**kwargs):
        seen.update(kwargs)
        data = [{"index": 1, "embedding": [0.0, 1.0]}, {"index": 0, "embedding": [1.0, 0.0]}]
        return SimpleNamespace(data=data, usage=SimpleNamespace(total_tokens=7))

    monkeypatch.setattr(litellm, "aembedding", fake_aembedding)
    model = LiteLLMEmbedding("openai/e", "e@OpenAI", api_base="http://stub/v1", api_key="k")
    vectors, tokens = await model.encode(["a", "b"])
    assert vectors.tolist() == [[1.0, 0.0], [0.0, 1.0]] and tokens == 7 and model.dim == 2
    assert seen["model"] == "openai/e" and seen["api_base"] == "http://stub/v1" and seen["input"] == ["a", "b"]
    query, _ = await model.encode_queries("a")
    assert query.shape == (2,)
