"""The builtin embedding model in child processes (``EmbeddingProcesses``): the same vectors as
in this process, one torch thread per child, below the server's priority, a killed child
replaced without failing a call, and the components and the ingestion worker using them."""

from __future__ import annotations

import asyncio
import os
import signal
import sys

import numpy as np
import pytest

from api.db.migrate import upgrade
from api.db.services.llm_service import LLMBundle
from rag.llm.embedding_model import BuiltinEmbedding
from rag.llm.embedding_processes import EMBEDDING_NICENESS, EmbeddingProcesses, ProcessEmbedding
from rag.svr.embed_batcher import EmbeddingBatcher
from rag.svr.task_executor import TaskExecutor
from tests.ingest.worker_support import document

BUILTIN = "all-MiniLM-L6-v2@Builtin"
TEXTS = ["Aspirin reduces the risk of heart attack.", "Volcanoes erupt molten rock.", "Glaciers melt in spring."]


@pytest.fixture(scope="module")
def children():
    pool = EmbeddingProcesses(1)
    yield pool
    pool.close()


async def test_a_child_embeds_exactly_as_this_process_does(children, builtin_embedding: BuiltinEmbedding) -> None:
    model = ProcessEmbedding(BUILTIN, children)
    vectors, tokens = await model.encode(TEXTS)
    here, here_tokens = builtin_embedding.encode(TEXTS)
    np.testing.assert_allclose(vectors, here, atol=1e-5)
    assert tokens == here_tokens and vectors.dtype == np.float32
    question, _ = await model.encode_queries(TEXTS[0])
    np.testing.assert_allclose(question, here[0], atol=1e-5)


async def test_a_child_hands_on_the_question_graph_it_checked(children, builtin_embedding: BuiltinEmbedding) -> None:
    builtin_embedding.warm_up()
    graph = await ProcessEmbedding(BUILTIN, children).question_graph()
    assert graph is not None and graph == builtin_embedding.question_graph  # the same exported file
    np.testing.assert_allclose(graph.probes(), builtin_embedding.question_graph.probes(), atol=1e-5)


async def test_a_child_computes_on_one_torch_thread_below_the_server_priority(children) -> None:
    [pid] = await children.warm_up(BUILTIN)
    assert await children.torch_threads() == 1
    if sys.platform == "linux":
        expected = min(os.getpriority(os.PRIO_PROCESS, 0) + EMBEDDING_NICENESS, 19)
        assert os.getpriority(os.PRIO_PROCESS, pid) == expected


async def test_a_killed_child_is_replaced_and_the_call_still_answered() -> None:
    pool = EmbeddingProcesses(1)
    try:
        [pid] = await pool.warm_up(BUILTIN)
        os.kill(pid, signal.SIGKILL)
        vectors, _ = await pool.encode(BUILTIN, TEXTS[:1])
        assert vectors.shape == (1, 384)
        assert pid not in await pool.warm_up(BUILTIN)
    finally:
        pool.close()


async def test_the_batcher_keeps_a_call_per_child_in_flight(children) -> None:
    """Two children, two calls at once: every request gets its own rows back."""
    pool = EmbeddingProcesses(2)
    try:
        assert len(await pool.warm_up(BUILTIN)) == 2  # each child loaded the model, not one twice
        model = ProcessEmbedding(BUILTIN, pool)
        assert model.parallel_calls == 2
        batcher = EmbeddingBatcher(max_batch=2, threads=model.parallel_calls)
        requests = [[f"document {n} sentence {k}" for k in range(2)] for n in range(6)]
        results = await asyncio.gather(*(batcher.encode("k", model, texts) for texts in requests))
        await batcher.close()
        for texts, vectors in zip(requests, results, strict=True):
            np.testing.assert_allclose(vectors, (await model.encode(texts))[0], atol=1e-5)
    finally:
        pool.close()


@pytest.fixture
def process_parts(make_settings):
    """Components whose builtin embedding model computes in one child process."""
    from api.components import build_components

    parts = build_components(make_settings(embed_processes=1))
    yield parts
    parts.close()


def test_components_compute_builtin_embeddings_in_processes_when_asked(make_settings, process_parts) -> None:
    from api.components import build_embedding_processes

    assert build_embedding_processes(make_settings(embed_processes=0)) is None
    assert build_embedding_processes(make_settings(embed_processes=-1)).processes == (os.cpu_count() or 1)
    model = process_parts.registry.embedding_model(BUILTIN)
    assert isinstance(model, ProcessEmbedding) and model.processes is process_parts.embedding_processes
    assert process_parts.settings.embed_parallelism == 1
    with pytest.raises(Exception, match="Unknown builtin embedding model"):
        process_parts.registry.embedding_model("no-such-model@Builtin")


def _seed(parts, count: int) -> tuple[str, str, list[str]]:
    """A dataset on the builtin model with ``count`` one-chunk documents, queued for parsing."""
    from api.db.services import document_service, knowledgebase_service, tenant_service

    def seed() -> tuple[str, str, list[str]]:
        tenant_id = tenant_service.get_or_create_tenant("acme").id
        kb = knowledgebase_service.create(tenant_id, {"name": "notes", "embedding_model": BUILTIN})
        uploads = [document_service.Upload(f"n{n}.txt", f"Note {n} on rivers.".encode()) for n in range(count)]
        doc_ids = [doc["id"] for doc in document_service.upload(tenant_id, kb["id"], uploads, parts.storage)]
        document_service.queue_parsing(tenant_id, kb["id"], doc_ids)
        return tenant_id, kb["id"], doc_ids

    return parts.db.call(seed)


async def test_the_ingestion_worker_embeds_in_the_child_processes(process_parts) -> None:
    parts = process_parts
    upgrade(parts.db)
    tenant_id, _, doc_ids = _seed(parts, 4)
    assert isinstance(LLMBundle(parts.registry, tenant_id, BUILTIN, kind="embedding").mdl, ProcessEmbedding)
    executor = TaskExecutor(parts, concurrency=2, poll_interval=0.02)
    executor.start()
    try:
        async with asyncio.timeout(120):
            while not all(document(parts, d).run == "DONE" for d in doc_ids):  # noqa: ASYNC110 - polls the DB
                await asyncio.sleep(0.05)
    finally:
        await executor.stop()
    assert [document(parts, d).chunk_num for d in doc_ids] == [1, 1, 1, 1]
