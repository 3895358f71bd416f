"""CPU-bound work of an answer (question embedding, search) runs apart from the database pool:
in the compute pool, below the event loop's OS priority, with concurrent questions embedded
in shared model calls."""

from __future__ import annotations

import asyncio
import os
import sys
import threading

import numpy as np
import pytest

from api.db.migrate import upgrade
from api.db.models import Usage
from api.db.services import tenant_service

BUILTIN_EMBEDDING = "all-MiniLM-L6-v2@Builtin"


class CountingEmbedding:
    """A sync local model that records each call, the thread it ran on and that thread's priority."""

    dim = 4

    def __init__(self) -> None:
        self.calls: list[tuple[int, str, int | None]] = []

    def encode(self, texts: list[str]) -> tuple[np.ndarray, int]:
        thread = threading.current_thread()
        priority = os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) if sys.platform == "linux" else None
        self.calls.append((len(texts), thread.name, priority))
        vectors = np.array([[len(t), 1.0, 0.0, 0.0] for t in texts], dtype=np.float32)
        return vectors / np.linalg.norm(vectors, axis=1, keepdims=True), len(texts)

    def encode_queries(self, text: str) -> tuple[np.ndarray, int]:
        vectors, tokens = self.encode([text])
        return vectors[0], tokens


@pytest.fixture
def counting_parts(parts):
    model = CountingEmbedding()
    parts.registry.register("counting@Builtin", model, kind="embedding")
    upgrade(parts.db)
    return parts, model


async def test_concurrent_questions_share_model_calls_in_the_compute_pool(counting_parts) -> None:
    parts, model = counting_parts
    tenant = parts.db.call(tenant_service.create_key_for, "t").tenant_id
    questions = [f"question number {i}" for i in range(12)]
    embedded = await asyncio.gather(*(parts.embedded_question(tenant, "counting@Builtin", q) for q in questions))
    assert [e.question for e in embedded] == questions
    assert all(np.isclose(e.vector[0] / e.vector[1], len(q)) for e, q in zip(embedded, questions, strict=True))
    assert sum(size for size, _, _ in model.calls) == 12 and len(model.calls) < 12  # merged, not one per question
    assert all(name.startswith("ragline-compute") for _, name, _ in model.calls)
    if sys.platform == "linux":
        assert all(priority > os.getpriority(os.PRIO_PROCESS, 0) for _, _, priority in model.calls)
    await parts.usage.settled()  # the rows are written after the vectors return
    rows = parts.db.call(lambda: Usage.select().where(Usage.kind == "embedding").count())
    assert rows == len(model.calls)  # one usage row per model call, the tenant's


async def test_searches_run_in_the_compute_pool_not_the_default_one(parts) -> None:
    names = {await parts.run_compute(lambda: threading.current_thread().name) for _ in range(4)}
    assert names and all(name.startswith("ragline-compute") for name in names)
    assert len(names) <= (parts.settings.compute_threads or os.cpu_count() or 1)


async def test_a_question_asked_again_is_not_embedded_again(counting_parts) -> None:
    parts, model = counting_parts
    tenant = parts.db.call(tenant_service.create_key_for, "t").tenant_id
    other = parts.db.call(tenant_service.create_key_for, "u").tenant_id
    first = await parts.embedded_question(tenant, "counting@Builtin", "what do cells do")
    again = await parts.embedded_question(tenant, "counting@Builtin", "what do cells do")
    assert np.array_equal(first.vector, again.vector) and again.tokens == first.tokens
    assert sum(size for size, _, _ in model.calls) == 1
    await parts.embedded_question(other, "counting@Builtin", "what do cells do")  # another tenant: its own
    await parts.embedded_question(tenant, "counting@Builtin", "what do cells do?")  # another text
    assert sum(size for size, _, _ in model.calls) == 3
    await parts.usage.settled()
    rows = parts.db.call(lambda: Usage.select().where(Usage.kind == "embedding").count())
    assert rows == len(model.calls)  # nothing spent, nothing recorded for the remembered one


def test_question_vectors_keep_the_most_recently_used() -> None:
    from rag.llm.question_vectors import QuestionVectors

    vectors = QuestionVectors(entries=2)
    for text in ("a", "b"):
        vectors.put("t", "m", text, np.ones(3), 1)
    assert vectors.get("t", "m", "a") is not None  # "a" used last: "b" goes first
    vectors.put("t", "m", "c", np.ones(3), 1)
    assert vectors.get("t", "m", "b") is None and vectors.get("t", "m", "a") is not None and len(vectors) == 2
    stored, _ = vectors.get("t", "m", "a")
    with pytest.raises(ValueError):
        stored[0] = 5.0  # callers cannot change what others will be given
    off = QuestionVectors(entries=0)
    off.put("t", "m", "a", np.ones(3), 1)
    assert off.get("t", "m", "a") is None
