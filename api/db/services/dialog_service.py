"""DialogService.chat: one answer of a chat assistant, as an async generator of events.

The steps (DESIGN.md, "A chat completion, end to end"): refine the question, add keywords,
retrieve (synchronous code in a worker thread, the embedding model behind SyncLLMWrapper),
answer ``empty_response`` without the LLM when nothing was found, fit knowledge, history and
question into the model's context, stream the answer, then repair and add citations. Each
step is timed; the timings ride on the final event and feed the usage row.

Events carry the whole answer so far (RAGFlow's wire shape). The first goes out with the first
token; later ones are coalesced (``COALESCE_TOKENS`` deltas or ``COALESCE_SECONDS``), since
each repeats the whole answer. A model failure ends the stream with a final event whose
``error`` is the typed exception and whose answer is the partial text: never an error message
dressed up as content.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from api.db.models import Dialog, Document
from api.db.services.cache_service import CachePolicy
from api.db.services.chat_assistant_service import DEFAULT_PROMPT_CONFIG, metadata_condition_of
from api.db.services.metadata_service import is_filtering, matching_document_ids, parse_condition
from rag.llm.errors import LLMServiceError
from rag.llm.types import ChatResult
from rag.nlp.search import insert_citations
from rag.prompts import (
    blocks_bound,
    build_system_prompt,
    counted_contents,
    full_question,
    join_knowledge,
    kb_prompt,
    keyword_extraction,
    knowledge_blocks,
    message_fit_in,
    messages_bound,
    repair_citations,
    split_partial_citation,
    strip_invalid_citations,
)
from rag.utils.token_utils import CountingAllowance

if TYPE_CHECKING:
    from api.components import Components
    from api.db.services.llm_service import LLMBundle
    from rag.llm.registry import ModelRegistry

COALESCE_TOKENS = 16
COALESCE_SECONDS = 0.05
KNOWLEDGE_SHARE = 0.6  # of the context window, for retrieved chunks
CONTEXT_SHARE = 0.95  # of the context window, for the whole prompt (room for the answer's start)
GEN_CONF_KEYS = ("temperature", "top_p", "presence_penalty", "frequency_penalty", "max_tokens")


@dataclass
class ChatEvent:
    """One event: ``answer`` is the whole answer so far; ``final`` marks the last one.

    ``error`` (final events only) is the model's ``LLMServiceError`` when DialogService made the
    event; ``conversation_service.completion`` also reports any other failure this way.
    """

    answer: str
    final: bool = False
    reference: dict[str, Any] | None = None
    error: Exception | None = None
    result: ChatResult | None = None
    timings: dict[str, float] = field(default_factory=dict)
    message_id: str | None = None
    intent: dict[str, Any] | None = None  # the routing decision, when intent routing chose the assistant


@dataclass
class ChatState:
    """What the caller can read at any moment, also after cancelling the generator."""

    answer: str = ""
    reference: dict[str, Any] | None = None
    timings: dict[str, float] = field(default_factory=dict)


@dataclass
class ChatRequest:
    """One completion: the assistant, the turns so far (last one the user's) and options."""

    dialog: Dialog
    messages: list[dict[str, Any]]
    stream: bool = True
    conversation_id: str | None = None
    message_id: str | None = None
    tone: str | None = None
    system_prompt: str | None = None
    variables: dict[str, Any] = field(default_factory=dict)
    gen_conf: dict[str, Any] = field(default_factory=dict)
    retrieved: dict[str, Any] | None = None  # knowledge fetched already (alongside the history)
    metadata_condition: dict[str, Any] | None = None  # this request's document filter (besides the chat's)
    cache: CachePolicy | None = None  # this request's response-cache wish; None: the assistant's setting


def chat_model_of(registry: ModelRegistry, dialog: Dialog) -> str | None:
    """The model answering for ``dialog``: its ``llm_id``, or the A/B group of the models its
    ``llm_setting.ab_models`` names with their weights (``[{"model": "a@X", "weight": 3}, ...]``)."""
    arms = (dialog.llm_setting or {}).get("ab_models")
    if not arms:
        return dialog.llm_id
    return registry.ab_group([(arm["model"], float(arm.get("weight", 1))) for arm in arms])


def retrieval_filters(metadata_condition: dict[str, Any] | None) -> dict[str, Any]:
    """``DialogService.retrieve``'s keyword arguments for a request's own document filter, if any."""
    return {"metadata_condition": metadata_condition} if metadata_condition else {}


class StepTimer:
    def __init__(self, timings: dict[str, float]) -> None:
        self.timings = timings

    @contextmanager
    def step(self, name: str) -> Iterator[None]:
        started = time.perf_counter()
        try:
            yield
        finally:
            self.timings[f"{name}_ms"] = round((time.perf_counter() - started) * 1000, 3)


def chat_history(messages: list[dict[str, Any]]) -> list[dict[str, str]]:
    """User/assistant turns for the model, without a leading assistant opener and without the
    empty answers of failed turns (several providers refuse an empty assistant message)."""
    turns = [{"role": m["role"], "content": str(m.get("content") or "")} for m in messages
             if m.get("role") == "user" or (m.get("role") == "assistant" and m.get("content"))]
    while turns and turns[0]["role"] == "assistant":
        turns.pop(0)
    return turns


def reference_of(chunks: list[dict[str, Any]], doc_aggs: list[dict[str, Any]]) -> dict[str, Any]:
    """The ``reference`` of a final event: chunk i answers ``[ID:i]``."""
    return {
        "total": len(chunks),
        "chunks": [{
            "id": c["chunk_id"], "content": c["content_with_weight"], "document_id": c["doc_id"],
            "document_name": c["docnm_kwd"], "dataset_id": c["kb_id"], "image_id": c.get("image_id", ""),
            "positions": c.get("positions", []), "similarity": c["similarity"],
            "vector_similarity": c["vector_similarity"], "term_similarity": c["term_similarity"],
        } for c in chunks],
        "doc_aggs": doc_aggs,
    }


def document_metadata(tenant_id: str, doc_ids: list[str]) -> dict[str, dict[str, Any]]:
    """Each of the tenant's documents' ``meta_fields`` (RAGFlow's ``document_metadata`` of a
    reference chunk), by id."""
    query = (Document.select(Document.id, Document.meta_fields)
             .where((Document.tenant_id == tenant_id) & Document.id.in_(doc_ids)))
    return {doc.id: dict(doc.meta_fields or {}) for doc in query}


def showable(answer: str, n_chunks: int) -> str:
    """The part of a streamed answer an event may show: citations repaired, those pointing at no
    retrieved chunk dropped, and a half-written marker at the end held back, so what clients see
    only grows."""
    ready, _ = split_partial_citation(strip_invalid_citations(repair_citations(answer), n_chunks))
    return ready


async def _read_rest(deltas_in: AsyncIterator[str], deltas: asyncio.Queue[str | Exception | None]) -> None:
    """Copy the model's remaining deltas into ``deltas``; then ``None`` at the end, or the exception."""
    try:
        async for delta in deltas_in:
            deltas.put_nowait(delta)
    except Exception as error:  # handed to the consumer, which turns it into the final event
        deltas.put_nowait(error)
        return
    deltas.put_nowait(None)


class DialogService:
    """Answers chat requests with the components it was built with."""

    def __init__(self, parts: Components) -> None:
        self.parts = parts

    async def chat(self, request: ChatRequest, state: ChatState | None = None) -> AsyncIterator[ChatEvent]:
        state = state if state is not None else ChatState()
        timer = StepTimer(state.timings)
        dialog = request.dialog
        config = {**DEFAULT_PROMPT_CONFIG, **(dialog.prompt_config or {})}
        if request.system_prompt is not None:
            config["system"] = request.system_prompt
        llm = self.parts.bundle(dialog.tenant_id, chat_model_of(self.parts.registry, dialog), "chat").bind(
            dialog_id=dialog.id, conversation_id=request.conversation_id, message_id=request.message_id)
        history = chat_history(request.messages)
        chunks: list[dict[str, Any]] = []
        state.reference = reference_of([], [])
        if dialog.kb_ids:
            retrieved = request.retrieved
            if retrieved is None:
                question = await self._question(llm, config, history, timer)
                with timer.step("retrieval"):
                    retrieved = await self.retrieve(dialog, question, **retrieval_filters(request.metadata_condition))
            chunks = retrieved["chunks"]
            state.reference = reference_of(chunks, retrieved["doc_aggs"])
            if not chunks and config.get("empty_response"):
                state.answer = config["empty_response"]
                yield ChatEvent(state.answer, final=True, reference=state.reference, timings=state.timings,
                                message_id=request.message_id)
                return
        gen_conf = {**{k: v for k, v in (dialog.llm_setting or {}).items() if k in GEN_CONF_KEYS}, **request.gen_conf}
        with timer.step("prompt"):
            prompt = self._uncounted_prompt(llm, config, chunks, history, request, int(gen_conf.get("max_tokens") or 0))
            if prompt is None:  # near the context window: only counting tokens can tell, off the loop
                prompt = await asyncio.to_thread(self._prompt, llm, config, chunks, history, request)
        used, system, history = prompt
        llm = llm.bind(retrieval_ms=state.timings.get("retrieval_ms")).with_cache(
            self.parts.response_cache, request.cache or CachePolicy.of_settings(dialog.llm_setting))
        if gen_conf.get("max_tokens"):  # the answer gets what the prompt left of the window
            gen_conf["max_tokens"] = max(min(int(gen_conf["max_tokens"]), llm.max_length - used), 1)
        answering = self._stream if request.stream else self._whole
        async for event in answering(llm, system, history, gen_conf, state, len(chunks)):
            if event.final:
                event = await self._finish(event, chunks, config, state)
            event.message_id = request.message_id
            yield event

    async def _question(self, llm: LLMBundle, config: dict[str, Any], history: list[dict[str, str]],
                        timer: StepTimer) -> str:
        question = history[-1]["content"] if history else ""
        if llm.is_extractive:
            return question
        if config.get("refine_multiturn") and sum(turn["role"] == "user" for turn in history) > 1:
            with timer.step("refine"):
                question = await full_question(llm, history)
        if config.get("keyword"):
            with timer.step("keywords"):
                keywords = await keyword_extraction(llm, question)
            question = " ".join([question, *keywords])
        return question

    @staticmethod
    def retrieves_the_question_as_asked(dialog: Dialog) -> bool:
        """True when retrieval needs no LLM step first (no refining, no keywords), so the caller
        may fetch the knowledge while it loads the history."""
        config = dialog.prompt_config or {}
        return bool(dialog.kb_ids) and not config.get("refine_multiturn") and not config.get("keyword")

    async def retrieve(self, dialog: Dialog, question: str,
                       metadata_condition: dict[str, Any] | None = None) -> dict[str, Any]:
        """The dialog's top chunks for ``question``: the question embedded first, then the Dealer
        in a search process or a compute thread (``Components.search_question``; a rerank model is
        reached back on the loop through SyncLLMWrapper). Only documents matching the chat's
        metadata filter and ``metadata_condition`` (both, when both are set) are candidates."""
        embd_id = await self.parts.chats.embedding_model(dialog.tenant_id, dialog.kb_ids)
        doc_ids = await self.allowed_documents(dialog, metadata_condition)
        if embd_id is None or doc_ids == []:
            return {"total": 0, "chunks": [], "doc_aggs": []}
        reranker = (self.parts.sync_view(self.parts.bundle(dialog.tenant_id, dialog.rerank_id, "rerank"))
                    if dialog.rerank_id else None)
        return await self.parts.search_question(
            dialog.tenant_id, embd_id, question, dialog.kb_ids, 1, dialog.top_n, rerank_mdl=reranker,
            similarity_threshold=dialog.similarity_threshold,
            vector_similarity_weight=dialog.vector_similarity_weight, top=dialog.top_k, doc_ids=doc_ids,
            aggs=False,  # the reference counts the cited chunks' documents, as RAGFlow's chat does
        )

    async def allowed_documents(self, dialog: Dialog, metadata_condition: dict[str, Any] | None) -> list[str] | None:
        """The documents retrieval may draw from: None when no metadata filter applies, else
        those of the chat's datasets that match every filter (possibly none)."""
        parsed = (parse_condition(metadata_condition_of(dialog.meta_data_filter)), parse_condition(metadata_condition))
        conditions = [condition for condition in parsed if is_filtering(condition)]
        if not conditions:
            return None
        allowed: set[str] | None = None
        for condition in conditions:
            matching = set(await self.parts.db.run(matching_document_ids, dialog.tenant_id, dialog.kb_ids, condition))
            allowed = matching if allowed is None else allowed & matching
        return sorted(allowed or ())

    @staticmethod
    def _system(llm: LLMBundle, config: dict[str, Any], knowledge: list[str], request: ChatRequest) -> str:
        if llm.is_extractive:
            return join_knowledge(knowledge)
        return build_system_prompt(config, knowledge, request.tone, request.variables)

    @classmethod
    def _uncounted_prompt(cls, llm: LLMBundle, config: dict[str, Any], chunks: list[dict[str, Any]],
                          history: list[dict[str, str]], request: ChatRequest,
                          answer_tokens: int) -> tuple[int, str, list[dict[str, str]]] | None:
        """``_prompt``'s result without encoding anything, when upper bounds of the token counts
        (``token_bound``) show that every chunk and turn fits and leaves the answer its
        ``answer_tokens``: (that bound, system prompt, history). None when only counting can tell.

        Counting a prompt of six 512-token chunks took about 3 ms of CPU per answer (the
        knowledge, then the system prompt holding it again); the bounds take microseconds,
        so this runs on the loop. A chunk is bounded by the token count stored when it was
        indexed (``token_count``; within a few tokens of exact), else by its pieces' counts
        if an earlier prompt counted them, else by its bytes; so even near a small window (8k)
        answers skip the worker thread, whose queue under load cost more than the counting.
        Only when lookups and bytes alone do not fit are a few KB of short unknown pieces
        (template lines, a new question) counted here to tighten the bound.
        """
        system = cls._system(llm, config, knowledge_blocks(chunks), request)
        messages = [{"role": "system", "content": system}, *history]
        counted = counted_contents(chunks)
        for allowance in (CountingAllowance(0), CountingAllowance()):  # lookups alone first
            if blocks_bound(chunks, allowance) > int(llm.max_length * KNOWLEDGE_SHARE):
                continue
            bound = messages_bound(messages, counted, allowance)
            if bound <= min(int(llm.max_length * CONTEXT_SHARE), llm.max_length - answer_tokens):
                return bound, system, history
        return None

    @classmethod
    def _prompt(cls, llm: LLMBundle, config: dict[str, Any], chunks: list[dict[str, Any]],
                history: list[dict[str, str]], request: ChatRequest) -> tuple[int, str, list[dict[str, str]]]:
        """Tokens used, system prompt and history, fitted into the model's context (tiktoken counts)."""
        knowledge = kb_prompt(chunks, int(llm.max_length * KNOWLEDGE_SHARE)) if chunks else []
        system = cls._system(llm, config, knowledge, request)
        used, fitted = message_fit_in([{"role": "system", "content": system}, *history],
                                      int(llm.max_length * CONTEXT_SHARE), knowledge=knowledge)
        return used, fitted[0]["content"], fitted[1:]

    async def _stream(self, llm: LLMBundle, system: str, history: list[dict[str, str]], gen_conf: dict[str, Any],
                      state: ChatState, n_chunks: int) -> AsyncIterator[ChatEvent]:
        """Events as the model writes: the first with the first token, later ones coalesced.

        Until the first event the model's stream is read here: nothing waits to be coalesced
        yet, and under load the task start and queue hand-off saved are two event-loop turns of
        the time to first token. Then a task of its own reads it into a queue, so text waiting
        to be coalesced goes out after ``COALESCE_SECONDS`` even while the model pauses. Leaving
        this generator (done, failed, or the client gone) cancels that task and closes the stream.
        """
        started = time.perf_counter()
        stream = llm.chat_streamly(system, history, gen_conf)
        reader: asyncio.Task | None = None
        try:
            shown = ""
            while not shown:
                try:
                    delta = await anext(stream)
                except StopAsyncIteration:
                    break
                except LLMServiceError as error:
                    yield ChatEvent(state.answer, final=True, error=error, result=stream.result)
                    return
                state.answer += delta
                shown = showable(state.answer, n_chunks)
            if not shown:
                yield ChatEvent(state.answer, final=True, result=stream.result)
                return
            state.timings["first_token_ms"] = round((time.perf_counter() - started) * 1000, 3)
            yield ChatEvent(shown)
            deltas: asyncio.Queue[str | Exception | None] = asyncio.Queue()
            reader = asyncio.create_task(_read_rest(stream, deltas))
            async with contextlib.aclosing(self._coalesced(deltas, state, shown, n_chunks, stream.result)) as events:
                async for event in events:
                    yield event
        finally:
            if reader is not None:
                reader.cancel()
                await asyncio.gather(reader, return_exceptions=True)
            await stream.aclose()

    @staticmethod
    async def _coalesced(deltas: asyncio.Queue[str | Exception | None], state: ChatState, shown: str, n_chunks: int,
                         result: ChatResult) -> AsyncIterator[ChatEvent]:
        """The events after the first: ``COALESCE_TOKENS`` deltas or ``COALESCE_SECONDS`` each,
        then the final one."""
        pending, last_emit = 0, time.perf_counter()
        while True:
            wait = max(last_emit + COALESCE_SECONDS - time.perf_counter(), 0.0) if pending else None
            try:
                async with asyncio.timeout(wait):  # no task per delta, unlike wait_for on 3.11
                    delta = await deltas.get()
            except TimeoutError:
                delta = ""  # time to show what is pending
            if delta is None:
                break
            if isinstance(delta, LLMServiceError):
                yield ChatEvent(state.answer, final=True, error=delta, result=result)
                return
            if isinstance(delta, Exception):
                raise delta
            if delta:
                state.answer += delta
                pending += 1
                if pending < COALESCE_TOKENS and time.perf_counter() - last_emit < COALESCE_SECONDS:
                    continue
            ready = showable(state.answer, n_chunks)
            pending = 0
            if ready == shown:
                continue
            last_emit, shown = time.perf_counter(), ready
            yield ChatEvent(shown)
        yield ChatEvent(state.answer, final=True, result=result)

    async def _whole(self, llm: LLMBundle, system: str, history: list[dict[str, str]], gen_conf: dict[str, Any],
                     state: ChatState, n_chunks: int) -> AsyncIterator[ChatEvent]:
        """Only the final event, but read from the model's stream all the same: the same stall
        timeout, the time to first token on the usage row, and a partial answer kept on failure."""
        async for event in self._stream(llm, system, history, gen_conf, state, n_chunks):
            if event.final:
                yield event

    async def _finish(self, event: ChatEvent, chunks: list[dict[str, Any]], config: dict[str, Any],
                      state: ChatState) -> ChatEvent:
        """The final event: citations repaired, pointing only at real chunks, added if missing."""
        answer = strip_invalid_citations(repair_citations(event.answer), len(chunks))
        if chunks and config.get("quote", True) and event.error is None:
            answer, _ = await asyncio.to_thread(insert_citations, answer, chunks)
        state.answer = answer
        if event.result is not None and "first_token_ms" not in state.timings and event.result.ttft_ms is not None:
            state.timings["first_token_ms"] = event.result.ttft_ms
        return ChatEvent(answer, final=True, reference=state.reference, error=event.error, result=event.result,
                         timings=state.timings)
