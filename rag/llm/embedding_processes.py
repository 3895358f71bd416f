"""Builtin (local) embedding models computed in child processes, one core each.

Why not in threads of the serving process: measured on the SciFact ingestion benchmark, the
model there cost 14 % more CPU per text than the same model alone (752 s against 658 s of CPU
for the corpus). Its threads share the serving process's GIL with the event loop and the
database threads, and that process hands the GIL over every millisecond for the loop's sake
(``api.server``); each hand-over is a context switch in the middle of the model's Python code.
A child has a GIL of its own, keeps the default switch interval, and computes each call on one
core (``torch.set_num_threads(1)``: on two cores two such calls side by side beat one call
split over both, see ``rag.svr.embed_batcher``). Chat questions are embedded here too, so no
model code holds the loop's GIL at all.

The children run below the serving process's priority, like the search children: on a busy
machine the loop is served first. Each child loads the model it is asked for once; a call
sends texts and receives the vectors (a 64-text call moves about 100 KB each way).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from rag.llm.onnx_encoder import QuestionGraph
from rag.utils.child_process import ChildPool, settle_in_child

EMBEDDING_NICENESS = 10  # how much lower than the serving process's priority the children's is

# -- inside a child -------------------------------------------------------------------------------

_child_models: dict[str, Any] = {}  # this child's loaded models, by name


def _open_child(niceness: int) -> None:
    settle_in_child(niceness)
    import torch

    torch.set_num_threads(1)


def _child_model(model_name: str) -> Any:
    model = _child_models.get(model_name)
    if model is None:
        from rag.llm.embedding_model import create_embedding_model

        model = _child_models[model_name] = create_embedding_model(model_name)
        model.warm_up()
    return model


def _child_encode(model_name: str, texts: list[str]) -> tuple[np.ndarray, int]:
    return _child_model(model_name).encode(texts)


def _child_warm_up(model_name: str) -> None:
    _child_model(model_name)


def _child_question_graph(model_name: str) -> QuestionGraph | None:
    return getattr(_child_model(model_name), "question_graph", None)


def _child_torch_threads() -> int:
    import torch

    return torch.get_num_threads()


# -- in the serving process -----------------------------------------------------------------------


class EmbeddingProcesses:
    """A pool of ``processes`` children computing builtin embedding models (``ChildPool``:
    started on first use or by ``warm_up``, replaced when one dies)."""

    def __init__(self, processes: int, niceness: int = EMBEDDING_NICENESS) -> None:
        self._children = ChildPool(processes, _open_child, (niceness,))

    @property
    def processes(self) -> int:
        return self._children.processes

    async def encode(self, model_name: str, texts: list[str]) -> tuple[np.ndarray, int]:
        """``encode(texts)`` of the builtin model ``model_name``, in a free child."""
        return await self._children.run(_child_encode, model_name, list(texts))

    async def warm_up(self, model_name: str) -> list[int]:
        """Start every child and load ``model_name`` in each; returns the pids of the children
        that loaded it (all of them, unless one took longer than the pool's start-up timeout)."""
        return sorted(await self._children.run_in_every_child(_child_warm_up, model_name))

    async def question_graph(self, model_name: str) -> QuestionGraph | None:
        """How a process without torch computes ``model_name``'s question vectors, as a child
        loaded it (``BuiltinEmbedding.question_graph``); None when questions stay on torch."""
        return await self._children.run(_child_question_graph, model_name)

    async def torch_threads(self) -> int:
        """torch's intra-op threads in a child (1)."""
        return await self._children.run(_child_torch_threads)

    def close(self) -> None:
        self._children.close()


class ProcessEmbedding:
    """A builtin embedding model with the contract of ``rag.llm.embedding_model`` (``encode``,
    ``encode_queries`` → vectors and tokens), computed in ``EmbeddingProcesses``; async, so its
    callers await it where they would send a sync model to a thread.

    ``parallel_calls``: how many calls it computes at once (one per child), which callers that
    batch (``EmbeddingBatcher``) keep in flight.
    """

    def __init__(self, model_name: str, processes: EmbeddingProcesses) -> None:
        self.model_name = model_name
        self.processes = processes

    @property
    def parallel_calls(self) -> int:
        return self.processes.processes

    async def warm_up(self) -> None:
        await self.processes.warm_up(self.model_name)

    async def encode(self, texts: list[str]) -> tuple[np.ndarray, int]:
        return await self.processes.encode(self.model_name, texts)

    async def encode_queries(self, text: str) -> tuple[np.ndarray, int]:
        vectors, tokens = await self.encode([text])
        return vectors[0], tokens

    async def question_graph(self) -> QuestionGraph | None:
        return await self.processes.question_graph(self.model_name)
