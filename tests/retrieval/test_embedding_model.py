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
    model = BuiltinEmbedding(onnx_short_texts=False)
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


QUESTIONS = ["Does aspirin prevent heart attacks?", "Vitamin D deficiency is unrelated to birth weight."]


def test_short_texts_run_through_onnx_with_torchs_vectors(minilm, monkeypatch):
    assert minilm.short_texts_on_onnx
    expected = minilm._model.encode(QUESTIONS, normalize_embeddings=True, convert_to_numpy=True)

    def torch_must_not_run(*args, **kwargs):
        raise AssertionError("a short batch went to torch")

    monkeypatch.setattr(minilm._model, "encode", torch_must_not_run)
    vectors, tokens = minilm.encode(QUESTIONS)
    assert vectors.dtype == np.float32 and vectors.shape == (2, 384) and tokens > 0
    assert (vectors * expected).sum(axis=1).min() > 0.99999
    question, _ = minilm.encode_queries(QUESTIONS[0])
    assert float(question @ expected[0]) > 0.99999


def test_long_texts_stay_on_torch_and_a_mixed_batch_keeps_its_order(minilm, monkeypatch):
    long_text = "aspirin " * 120
    expected = minilm._model.encode([QUESTIONS[0], long_text, QUESTIONS[1]], normalize_embeddings=True)
    real_onnx = minilm._short_encoder.encode
    sent_to_onnx: list[list[str]] = []

    def spy(texts):
        sent_to_onnx.append(list(texts))
        return real_onnx(texts)

    monkeypatch.setattr(minilm._short_encoder, "encode", spy)
    vectors, _ = minilm.encode([QUESTIONS[0], long_text, QUESTIONS[1]])
    assert sent_to_onnx == [QUESTIONS]
    assert (vectors * expected).sum(axis=1).min() > 0.99999
    sent_to_onnx.clear()
    assert minilm.encode([long_text])[0].shape == (1, 384) and sent_to_onnx == []


def test_the_exported_graph_is_kept_and_reused(minilm, tmp_path, monkeypatch):
    from rag.llm import onnx_encoder

    first = onnx_encoder.OnnxSentenceEncoder.load(minilm._model, tmp_path)
    graphs = list(tmp_path.glob("*.onnx"))
    assert first is not None and len(graphs) == 1 and not list(tmp_path.glob("*.tmp"))

    def no_second_export(*args, **kwargs):
        raise AssertionError("exported again")

    monkeypatch.setattr(onnx_encoder, "_export", no_second_export)
    again = onnx_encoder.OnnxSentenceEncoder.load(minilm._model, tmp_path)
    assert again is not None and np.allclose(again.encode(QUESTIONS), first.encode(QUESTIONS))


def test_an_unwritable_cache_directory_gives_way_to_a_temporary_one(minilm, tmp_path, monkeypatch):
    from rag.llm import onnx_encoder

    blocker = tmp_path / "not-a-directory"
    blocker.write_text("a file where the cache directory should be")
    monkeypatch.setattr(onnx_encoder, "fallback_cache_dir", lambda: tmp_path / "fallback")
    encoder = onnx_encoder.OnnxSentenceEncoder.load(minilm._model, blocker / "cache")
    assert encoder is not None and len(list((tmp_path / "fallback").glob("*.onnx"))) == 1


def test_onnx_falls_back_to_torch_when_it_cannot_match(minilm, tmp_path, monkeypatch, caplog):
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Normalize, Pooling

    from rag.llm import onnx_encoder

    cls_pooled = SentenceTransformer(modules=[minilm._model[0], Pooling(384, pooling_mode="cls"), Normalize()])
    assert onnx_encoder.OnnxSentenceEncoder.load(cls_pooled, tmp_path) is None

    def failing_export(*args, **kwargs):
        raise RuntimeError("exporter broke")

    with monkeypatch.context() as patch:
        patch.setattr(onnx_encoder, "_export", failing_export)
        assert onnx_encoder.OnnxSentenceEncoder.load(minilm._model, tmp_path / "broken") is None
    assert "stay on torch" in caplog.text and not list((tmp_path / "broken").glob("*"))

    real_encode = onnx_encoder.OnnxSentenceEncoder.encode
    monkeypatch.setattr(onnx_encoder.OnnxSentenceEncoder, "encode",
                        lambda self, texts: np.roll(real_encode(self, texts), 1, axis=1))
    assert onnx_encoder.OnnxSentenceEncoder.load(minilm._model, tmp_path) is None


QUESTION_GRAPH_SCRIPT = """
import sys
sys.modules["torch"] = None  # a search child never imports torch: the graph must not need it
import pickle
from rag.llm.onnx_encoder import OnnxSentenceEncoder
graph, texts = pickle.load(sys.stdin.buffer)
encoder = OnnxSentenceEncoder.from_graph(graph)
sys.stdout.buffer.write(pickle.dumps(encoder.encode(texts)))
"""


def test_a_question_graph_gives_torchs_vectors_in_a_process_without_torch(minilm):
    import pickle
    import subprocess
    import sys
    from pathlib import Path

    graph = minilm.question_graph
    assert graph is not None and Path(graph.graph).is_file() and Path(graph.tokenizer).is_file()
    texts = [*QUESTIONS, "Ünïcödé naïve café, 東京?", "word " * 300]  # the last one is cut at 256 pieces
    done = subprocess.run([sys.executable, "-c", QUESTION_GRAPH_SCRIPT], input=pickle.dumps((graph, texts)),
                          capture_output=True, check=True, cwd=Path(__file__).resolve().parents[2])
    vectors = pickle.loads(done.stdout)
    np.testing.assert_allclose(vectors, minilm._torch_encode(texts), atol=1e-5)


def test_a_question_graph_that_does_not_reproduce_its_probes_is_refused(minilm, tmp_path, caplog):
    import dataclasses

    from rag.llm.onnx_encoder import OnnxSentenceEncoder

    graph = minilm.question_graph
    flipped = dataclasses.replace(graph, probe_vectors=(-graph.probes()).tobytes())
    with caplog.at_level("WARNING"):
        assert OnnxSentenceEncoder.from_graph(flipped) is None
    assert "differs" in caplog.text
    assert OnnxSentenceEncoder.from_graph(dataclasses.replace(graph, graph=str(tmp_path / "gone.onnx"))) is None
    assert OnnxSentenceEncoder.from_graph(graph) is not None


def test_the_onnx_switch_is_read_from_the_environment(monkeypatch):
    monkeypatch.setenv("RAGLINE_EMBED_ONNX", "0")
    assert not BuiltinEmbedding().onnx_short_texts
    monkeypatch.delenv("RAGLINE_EMBED_ONNX")
    assert BuiltinEmbedding().onnx_short_texts and not BuiltinEmbedding(onnx_short_texts=False).onnx_short_texts


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
