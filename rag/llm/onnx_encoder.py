"""A sentence-transformers model's short inputs (questions) through ONNX Runtime.

Why: for a short text torch's per-call overhead is most of the cost. all-MiniLM-L6-v2 spends
about 10 ms of a core on a 10-word question through sentence-transformers and about 4.5 ms
through onnxruntime, one thread each, and in a batch of 32 questions 8 against 4 ms per
question (torch pads each to the longest). The gap closes as texts grow: near 200 words
torch is as fast or faster (``python -m tests.bench.question_encoder`` prints both). So only
short texts come here; ingestion's chunks stay on torch.

The graph is exported from the weights already loaded (torch's exporter, nothing downloaded),
once per model, torch and onnxruntime version, into a cache directory that every process shares.
Before it is used, its vectors for probe sentences are checked against torch's; a model whose
pipeline is not token embeddings → mean pooling → normalisation, or any mismatch, keeps torch.

A process without torch (a search child) builds the same encoder from a ``QuestionGraph``: the
graph's path, the tokenizer's file and torch's vectors for the probes, which it checks its own
against. That lets the process that searches embed the question itself, one process hop fewer
for a new question.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

CACHE_DIR_ENV = "RAGLINE_MODEL_CACHE_DIR"
INPUT_NAMES = ("input_ids", "attention_mask", "token_type_ids")
OPSET = 17
# Short enough that onnxruntime beats torch (see the module docstring) however many come
# together: onnxruntime's cost per text is flat, torch's grows with the padding of a batch.
SHORT_TEXT_CHARS = 400  # ~60 words
PROBES = ("What reduces inflammation?", "ALDH1 expression is associated with poorer prognosis in breast cancer.")
MIN_PROBE_COSINE = 0.99999


def default_cache_dir() -> Path:
    """``RAGLINE_MODEL_CACHE_DIR``, else ``$XDG_CACHE_HOME/ragline`` (``~/.cache/ragline``)."""
    configured = os.environ.get(CACHE_DIR_ENV)
    if configured:
        return Path(configured)
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "ragline"


@dataclass(frozen=True)
class QuestionGraph:
    """What another process needs to compute a loaded encoder's vectors without torch.

    ``probe_vectors`` are torch's vectors for ``PROBES`` (float32 rows, as bytes: a search call
    carries the graph, so it pickles cheaply): the receiving process checks its own against
    them, as ``OnnxSentenceEncoder.load`` checks the graph against torch.
    """

    graph: str  # the exported ONNX file
    tokenizer: str  # the model's tokenizer.json
    max_length: int  # word pieces read, special tokens included
    probe_vectors: bytes = field(compare=False, repr=False)

    def probes(self) -> np.ndarray:
        return np.frombuffer(self.probe_vectors, dtype=np.float32).reshape(len(PROBES), -1)


class _FileTokenizer:
    """A ``tokenizer.json`` read by the ``tokenizers`` library, called as a transformers fast
    tokenizer is (``(texts, truncation=True, max_length=n)`` → ids, mask and type ids per text):
    the same backend, without importing transformers and torch."""

    def __init__(self, path: str, max_length: int) -> None:
        from tokenizers import Tokenizer

        self._tokenizer = Tokenizer.from_file(path)
        self._tokenizer.no_padding()  # the file may pad to a fixed length; texts run unpadded here
        self._tokenizer.enable_truncation(max_length)

    def __call__(self, texts: list[str], truncation: bool = True, max_length: int | None = None
                 ) -> dict[str, list[list[int]]]:
        encodings = self._tokenizer.encode_batch(texts)
        return {"input_ids": [e.ids for e in encodings], "attention_mask": [e.attention_mask for e in encodings],
                "token_type_ids": [e.type_ids for e in encodings]}


def is_short(text: str) -> bool:
    """True for a text onnxruntime computes faster than torch, alone or in any batch."""
    return len(text) <= SHORT_TEXT_CHARS


class OnnxSentenceEncoder:
    """Mean-pooled, normalised token embeddings of a transformer, computed by onnxruntime.

    Built with ``load`` from a loaded SentenceTransformer, or with ``from_graph`` from what
    such a load hands on (``graph``); ``encode`` is thread-safe (an onnxruntime session may run
    from several threads).
    """

    def __init__(self, session: Any, tokenizer: Any, max_length: int, graph: QuestionGraph | None = None) -> None:
        self._session = session
        self._tokenizer = tokenizer
        self._max_length = max_length
        self._inputs = [i.name for i in session.get_inputs()]
        self._dim = int(session.get_outputs()[0].shape[-1])  # the hidden size: fixed in the graph
        self.graph = graph  # for another process; None when the tokenizer has no file to hand on

    @property
    def dimension(self) -> int:
        """Values per vector."""
        return self._dim

    @classmethod
    def load(cls, model: Any, cache_dir: Path | None = None) -> OnnxSentenceEncoder | None:
        """The encoder for ``model`` (a SentenceTransformer), exporting it if no cached graph
        exists; None when the model's pipeline is not one this reproduces, or the export fails,
        or the probe vectors differ from torch's."""
        transformer = _plain_mean_pooled_transformer(model)
        if transformer is None:
            return None
        try:
            path = _cached_graph(transformer, model.tokenizer, cache_dir or default_cache_dir())
            encoder = cls(_session(path), model.tokenizer, int(model.max_seq_length))
        except Exception:  # an export or a load that fails only costs the speed-up
            log.warning("ONNX export of the embedding model failed; questions stay on torch", exc_info=True)
            return None
        expected = model.encode(list(PROBES), normalize_embeddings=True, convert_to_numpy=True)
        cosine = _probe_cosine(encoder, expected)
        if cosine < MIN_PROBE_COSINE:
            log.warning("ONNX embedding differs from torch's (cosine %.6f); questions stay on torch", cosine)
            return None
        tokenizer_file = Path(str(getattr(model.tokenizer, "name_or_path", ""))) / "tokenizer.json"
        if tokenizer_file.is_file():
            encoder.graph = QuestionGraph(str(path), str(tokenizer_file), int(model.max_seq_length),
                                          np.asarray(expected, dtype=np.float32).tobytes())
        return encoder

    @classmethod
    def from_graph(cls, graph: QuestionGraph) -> OnnxSentenceEncoder | None:
        """The encoder ``graph`` describes, built without torch; None when its vectors for the
        probes differ from the ones ``graph`` carries (another onnxruntime, another tokenizer)
        or its files cannot be read."""
        try:
            tokenizer = _FileTokenizer(graph.tokenizer, graph.max_length)
            encoder = cls(_session(Path(graph.graph)), tokenizer, graph.max_length, graph)
        except Exception:  # a graph this process cannot use leaves questions to the embedding processes
            log.warning("cannot load the question graph %s", graph.graph, exc_info=True)
            return None
        cosine = _probe_cosine(encoder, graph.probes())
        if cosine < MIN_PROBE_COSINE:
            log.warning("the question graph %s differs here (cosine %.6f); not used", graph.graph, cosine)
            return None
        return encoder

    def encode(self, texts: list[str]) -> np.ndarray:
        """Unit vectors, float32 ``(len(texts), dim)``, as sentence-transformers computes them.

        Texts run in groups of equal token length, so no padding is computed: for questions,
        8 padded to the longest cost more per text than 8 one at a time.
        """
        encoded = self._tokenizer(list(texts), truncation=True, max_length=self._max_length)
        by_length: dict[int, list[int]] = {}
        for index, ids in enumerate(encoded["input_ids"]):
            by_length.setdefault(len(ids), []).append(index)
        vectors = np.empty((len(texts), self._dim), dtype=np.float32)
        for rows in by_length.values():
            feeds = {name: np.array([encoded[name][i] for i in rows], dtype=np.int64) for name in self._inputs}
            pooled = self._session.run(None, feeds)[0].mean(axis=1)  # every token is real: no mask
            vectors[rows] = pooled / np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12)
        return vectors


def _probe_cosine(encoder: OnnxSentenceEncoder, expected: np.ndarray) -> float:
    """The lowest cosine between ``encoder``'s vectors for ``PROBES`` and ``expected``."""
    return float((encoder.encode(list(PROBES)) * expected).sum(axis=1).min())


def _plain_mean_pooled_transformer(model: Any) -> Any | None:
    """The model's transformer when its pipeline is exactly Transformer → mean Pooling →
    Normalize (what ``encode`` reproduces); else None."""
    from sentence_transformers.sentence_transformer.modules import Normalize, Pooling, Transformer

    modules = list(model)
    if len(modules) != 3 or not isinstance(modules[0], Transformer) or not isinstance(modules[2], Normalize):
        return None
    pooling = modules[1]
    if not isinstance(pooling, Pooling) or getattr(pooling, "pooling_mode", "mean") != "mean":
        return None
    return modules[0].auto_model


def _graph_name(transformer: Any) -> str:
    """A file name that changes with the weights, torch and onnxruntime (a graph exported by
    one version is not trusted by another)."""
    import onnxruntime
    import torch

    digest = hashlib.sha256()
    digest.update(f"{torch.__version__} {onnxruntime.__version__} {OPSET}".encode())
    for name, tensor in transformer.state_dict().items():
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().numpy().ravel()[:1024].tobytes())  # a sample, not a copy of it all
        digest.update(str(tuple(tensor.shape)).encode())
    return f"{type(transformer).__name__.lower()}-{digest.hexdigest()[:16]}.onnx"


def _cached_graph(transformer: Any, tokenizer: Any, cache_dir: Path) -> Path:
    """The exported graph's path, exporting it first when absent. The export is written to a
    temporary file and renamed, so processes racing to export leave one whole file. A cache
    directory that cannot be written (a read-only home in a container) gives way to one under
    the system's temporary directory, so the speed-up only costs an export per boot there."""
    name = _graph_name(transformer)
    for directory in (cache_dir, fallback_cache_dir()):
        path = directory / name
        if path.exists():
            return path
        try:
            directory.mkdir(parents=True, exist_ok=True)
            fd, temporary = tempfile.mkstemp(dir=directory, suffix=".onnx.tmp")
        except OSError:
            log.warning("cannot write the ONNX graph to %s", directory)
            continue
        os.close(fd)
        try:
            sample = tokenizer(list(PROBES), padding=True, return_tensors="pt")
            _export(transformer, tuple(sample[input_name] for input_name in INPUT_NAMES), temporary)
            os.chmod(temporary, 0o644)  # mkstemp's 0600 would hide it from other users' servers
            os.replace(temporary, path)
        finally:
            if os.path.exists(temporary):
                os.unlink(temporary)
        return path
    raise OSError(f"no writable directory for the ONNX graph ({cache_dir}, {fallback_cache_dir()})")


def fallback_cache_dir() -> Path:
    return Path(tempfile.gettempdir()) / f"ragline-{os.getuid()}"


def _export(transformer: Any, sample: tuple[Any, ...], target: str) -> None:
    import warnings

    import torch

    class TokenEmbeddings(torch.nn.Module):
        """The graph takes the tokenizer's three inputs by position and returns the token
        embeddings alone (the transformer's forward takes keywords and returns a record)."""

        def __init__(self) -> None:
            super().__init__()
            self.transformer = transformer

        def forward(self, input_ids: Any, attention_mask: Any, token_type_ids: Any) -> Any:
            return self.transformer(input_ids=input_ids, attention_mask=attention_mask,
                                    token_type_ids=token_type_ids).last_hidden_state

    axes = {name: {0: "batch", 1: "tokens"} for name in (*INPUT_NAMES, "token_embeddings")}
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation and opset notes
        torch.onnx.export(TokenEmbeddings().eval(), sample, target, input_names=list(INPUT_NAMES),
                          output_names=["token_embeddings"], dynamic_axes=axes, opset_version=OPSET,
                          dynamo=False)


def _session(path: Path) -> Any:
    """One intra-op thread: a question is too small to split, and callers run one per core."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    return onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
