"""The parts one Ragline process is made of, built once from the settings and handed down.

Routes reach them through ``components()``, never through module globals, so a test builds
its own set (its own data dir, its own database) and two apps never share state.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import threading
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TypeVar

from quart import current_app

from api.db.database import MetaDB
from api.db.services.cache_service import ResponseCacheStore
from api.db.services.chat_directory import ChatDirectory
from api.db.services.ingest_store import IngestStore
from api.db.services.intent_service import IntentIndexCache
from api.db.services.llm_service import LLMBundle
from api.db.services.usage_service import UsageService
from api.errors import argument_error, data_error
from api.observability import MeteredUsageSink, Metrics
from api.settings import Settings
from api.utils.auth import TenantResolver
from api.utils.compat import DialectMemory
from api.utils.llm_bridge import SyncLLMWrapper
from rag.llm.embedding_model import BUILTIN_FACTORY, BUILTIN_MINILM, split_model_name
from rag.llm.embedding_processes import EmbeddingProcesses
from rag.llm.errors import LLMServiceError
from rag.llm.onnx_encoder import QuestionGraph
from rag.llm.question_vectors import QuestionVectors
from rag.llm.registry import ModelRegistry
from rag.nlp.search import Dealer, EmbeddedQuestion
from rag.nlp.search_processes import QuestionGraphRefused, SearchProcesses
from rag.svr.embed_batcher import EmbeddingBatcher
from rag.svr.task_store import TaskStore
from rag.utils.doc_store import create_doc_store
from rag.utils.doc_store_conn import DocStoreConnection
from rag.utils.storage import LocalStorage, Storage
from rag.utils.token_utils import num_tokens

log = logging.getLogger(__name__)
EXTENSION_KEY = "ragline"
COMPUTE_NICENESS = 10  # how much lower than the event loop's the compute threads' priority is
T = TypeVar("T")


def _lower_thread_priority() -> None:
    """Let the kernel prefer the event loop (and I/O threads) over a busy compute thread, so a
    saturated CPU delays searches instead of every stream. Linux only; elsewhere a no-op."""
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), COMPUTE_NICENESS)
    except (AttributeError, OSError):
        pass


def build_compute_pool(threads: int) -> ThreadPoolExecutor:
    """The threads CPU-bound searches run in: as many as there are cores (0), at lower priority.

    Kept apart from the default pool, where database calls wait, so a burst of searches can
    neither queue the database behind it nor start more CPU work than there are cores.
    """
    workers = threads or os.cpu_count() or 1
    return ThreadPoolExecutor(max_workers=workers, thread_name_prefix="ragline-compute",
                              initializer=_lower_thread_priority)


@dataclass
class Components:
    settings: Settings
    db: MetaDB
    tenant_resolver: TenantResolver
    doc_store: DocStoreConnection
    storage: Storage
    registry: ModelRegistry
    usage: UsageService
    dealer: Dealer
    metrics: Metrics = field(default_factory=Metrics)
    compute: ThreadPoolExecutor = field(default_factory=lambda: build_compute_pool(0))
    question_batcher: EmbeddingBatcher = field(default_factory=EmbeddingBatcher)
    question_vectors: QuestionVectors = field(default_factory=QuestionVectors)
    search_processes: SearchProcesses | None = None
    embedding_processes: EmbeddingProcesses | None = None
    # models whose new questions the search processes embed themselves (``warm_up_question_search``)
    question_graphs: dict[str, QuestionGraph] = field(default_factory=dict)
    chats: ChatDirectory = field(init=False)
    response_cache: ResponseCacheStore = field(init=False)
    dialects: DialectMemory = field(default_factory=DialectMemory)
    intent_indexes: IntentIndexCache = field(default_factory=IntentIndexCache)
    task_store: TaskStore = field(default_factory=IngestStore)  # the ingestion worker's view of the DB

    def __post_init__(self) -> None:
        self.chats = ChatDirectory(self.db)
        self.response_cache = ResponseCacheStore(self.db, self.settings.response_cache_ttl, self.metrics)

    async def run_compute(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """``fn(*args, **kwargs)`` in the compute pool (CPU-bound work: searches)."""
        return await asyncio.get_running_loop().run_in_executor(self.compute, functools.partial(fn, *args, **kwargs))

    async def search(self, question: str, query: EmbeddedQuestion, tenant_ids: str | list[str], kb_ids: list[str],
                     page: int, page_size: int, *, rerank_mdl: Any = None, **options: Any) -> dict[str, Any]:
        """``Dealer.retrieval`` for an embedded question: in a search process when there are any
        (the embedded index), else in the compute pool. A search with a rerank model stays in
        the pool, since it reaches that model back through this process's loop."""
        args = (tenant_ids, kb_ids, page, page_size)
        if self.search_processes is not None and rerank_mdl is None:
            return await self.search_processes.retrieval(question, query.vector, query.tokens, *args, **options)
        return await self.run_compute(self.dealer.retrieval, question, query, *args, rerank_mdl=rerank_mdl, **options)

    async def search_question(self, tenant_id: str, model_name: str, question: str, kb_ids: list[str],
                              page: int, page_size: int, *, rerank_mdl: Any = None, **options: Any) -> dict[str, Any]:
        """``search`` of ``question`` embedded with ``model_name`` (``embedded_question``), the
        tenant's own chunks only.

        A new question to a model the search processes embed (``question_graphs``), when no
        other search is in flight, goes to one search process, which embeds it and searches: one
        process hop instead of two for a lone user (``rag.nlp.search_processes``). Its vector is
        remembered and its usage row written here, as ``embedded_question`` does. Under load the
        embedding processes embed it, in one call with the questions asked alongside.
        """
        graph = self.question_graphs.get(model_name)
        if (graph is not None and rerank_mdl is None and self.search_processes is not None
                and self.search_processes.searches_in_flight == 0
                and self.question_vectors.get(tenant_id, model_name, question) is None):
            try:
                result, query, embedding_ms = await self.search_processes.embed_and_retrieve(
                    question, graph, tenant_id, kb_ids, page, page_size, **options)
            except QuestionGraphRefused:  # a replaced child on another onnxruntime: back to two hops
                log.warning("a search process refused the question graph of %s", model_name)
                self.question_graphs.pop(model_name, None)
            else:
                self.bundle(tenant_id, model_name, "embedding").record_computed(query.tokens, embedding_ms)
                self.question_vectors.put(tenant_id, model_name, question, query.vector, query.tokens)
                return result
        query = await self.embedded_question(tenant_id, model_name, question)
        return await self.search(question, query, tenant_id, kb_ids, page, page_size, rerank_mdl=rerank_mdl,
                                 **options)

    async def warm_up_question_search(self, model_name: str) -> bool:
        """Let the search processes embed ``model_name``'s new questions themselves, once each
        has loaded and checked its question graph; True when they do."""
        if self.search_processes is None:
            return False
        graph = await self._question_graph(model_name)
        if graph is None or not await self.search_processes.load_question_graph(graph):
            return False
        self.question_graphs[model_name] = graph
        return True

    async def _question_graph(self, model_name: str) -> QuestionGraph | None:
        """The loaded model's ``QuestionGraph`` (in its embedding processes or in this process)."""
        model = self.registry.embedding_model(model_name)
        graph = getattr(model, "question_graph", None)
        return await graph() if callable(graph) else graph

    def health_checks(self) -> dict[str, Callable[[], Awaitable[None]]]:
        """One probe per component, each raising when that component is unhealthy."""
        return {
            "database": lambda: self.db.run(self.db.ping),
            "doc_store": self._doc_store_health,
        }

    async def _doc_store_health(self) -> None:
        report = await asyncio.to_thread(self.doc_store.health)
        if report.get("status") not in ("ok", "green", "yellow"):
            raise RuntimeError(f"doc store reports {report}")

    @property
    def default_chat_model(self) -> str:
        return self.registry.default_chat_model

    def bundle(self, tenant_id: str, model_name: str | None, kind: str = "chat") -> LLMBundle:
        """``model_name`` of ``kind`` for ``tenant_id``'s requests, with usage written to the DB.

        A local (sync) embedding model computes in the compute pool, below the loop's priority,
        like the searches it serves. A rerank model does not: a search in that pool reaches it
        back through the loop, and with every compute thread holding such a search, none would
        be left to rerank.
        """
        executor = self.compute if kind == "embedding" else None
        return LLMBundle(self.registry, tenant_id, model_name, MeteredUsageSink(self.usage, self.metrics), kind,
                         executor=executor)

    def sync_view(self, bundle: LLMBundle) -> SyncLLMWrapper:
        """The bundle as blocking code in a worker thread calls it (retrieval, citations).

        Must be built on the loop: the wrapper submits the bundle's coroutines back to it.
        """
        return SyncLLMWrapper(bundle, asyncio.get_running_loop(), self.settings.llm_timeout)

    async def embedded_question(self, tenant_id: str, model_name: str, question: str) -> EmbeddedQuestion:
        """The question's embedding, computed now, in the form retrieval's thread asks for it.

        Questions asked at the same time are embedded in one model call (one usage row per
        call): a batch of 30 short questions costs the local model little more than one. A
        question this tenant asked before with this model is answered from ``question_vectors``
        without a model call (and so without a usage row: nothing was spent).
        """
        known = self.question_vectors.get(tenant_id, model_name, question)
        if known is not None:
            return EmbeddedQuestion(question, *known)
        bundle = self.bundle(tenant_id, model_name, "embedding")
        vectors = await self.question_batcher.encode((tenant_id, model_name), bundle, [question])
        tokens = num_tokens(question)
        self.question_vectors.put(tenant_id, model_name, question, vectors[0], tokens)
        return EmbeddedQuestion(question, vectors[0], tokens)

    def check_chat_model(self, model_name: str) -> None:
        """Refuse a chat model the registry cannot route (102 naming it) before it is stored."""
        try:
            self.registry.spec(model_name)
            self.registry.validate(model_name, {})
        except LLMServiceError as error:
            raise data_error(f"Model {model_name!r} is not supported: {error}") from None

    def check_embedding_model(self, model_name: str) -> None:
        """Refuse an embedding model nothing here serves (101 naming the ones that are), before a
        dataset is stored with it: otherwise every document of that dataset failed at parse time."""
        name, factory = split_model_name(model_name)
        if factory.lower() == BUILTIN_FACTORY.lower():
            if name != BUILTIN_MINILM:
                raise argument_error(f"Unsupported model: <{model_name}>. The builtin embedding model is "
                                     f"{BUILTIN_MINILM}@{BUILTIN_FACTORY}; other models are named "
                                     f"name@provider (e.g. text-embedding-3-small@OpenAI).")
            return
        try:
            self.registry.spec(model_name)
        except LLMServiceError as error:
            raise argument_error(f"Unsupported model: <{model_name}>. {error}") from None

    async def aclose(self) -> None:
        await self.question_batcher.close()
        await self.registry.aclose()
        await self.usage.settled()  # rows of the last calls, before the database closes
        await asyncio.to_thread(self.close)

    def close(self) -> None:
        for children in (self.search_processes, self.embedding_processes):
            if children is not None:
                children.close()
        self.compute.shutdown(wait=True, cancel_futures=True)
        self.doc_store.close()
        self.db.close()


def build_components(settings: Settings) -> Components:
    """Open (lazily) everything the settings describe; nothing here touches the network."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    db = MetaDB(settings.resolved_database_url, max_connections=settings.worker_threads)
    doc_store = create_doc_store(settings.doc_engine, settings.data_dir, settings.es_host_list)
    embedding_processes = build_embedding_processes(settings)
    return Components(
        settings=settings,
        db=db,
        tenant_resolver=TenantResolver(db),
        doc_store=doc_store,
        dealer=Dealer(doc_store),
        storage=LocalStorage(settings.data_dir / "files"),
        registry=build_registry(settings, embedding_processes),
        usage=UsageService(db),
        compute=build_compute_pool(settings.compute_threads),
        search_processes=build_search_processes(settings),
        embedding_processes=embedding_processes,
    )


def build_embedding_processes(settings: Settings) -> EmbeddingProcesses | None:
    """Child processes for builtin embedding models (``embed_processes``: -1 one per core, 0
    none: the models then compute in this process's threads)."""
    count = settings.embedding_process_count
    return EmbeddingProcesses(count) if count else None


def build_search_processes(settings: Settings) -> SearchProcesses | None:
    """Child processes for searches of the embedded index (``search_processes``: -1 one per
    core, 0 none). Elasticsearch searches wait on the network, not the CPU: they stay in threads."""
    count = settings.search_processes if settings.search_processes >= 0 else (os.cpu_count() or 1)
    if count == 0 or settings.doc_engine != "sqlite":
        return None
    return SearchProcesses(count, settings.doc_engine, settings.data_dir, settings.es_host_list)


def build_registry(settings: Settings, embedding_processes: EmbeddingProcesses | None = None) -> ModelRegistry:
    api_key = settings.openai_api_key.get_secret_value() if settings.openai_api_key else None
    return ModelRegistry.from_config(
        default_chat_model=settings.llm_model, api_base=settings.llm_api_base, openai_api_key=api_key,
        ollama_base_url=settings.ollama_base_url, timeout=settings.llm_timeout,
        max_retries=settings.llm_max_retries, rate_limit_rpm=settings.llm_rate_limit,
        direct_streaming=settings.llm_direct_streaming, embedding_processes=embedding_processes,
    )


def components() -> Components:
    """The running app's components (inside a request or the app's lifespan)."""
    return current_app.extensions[EXTENSION_KEY]
