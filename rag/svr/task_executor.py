"""The ingestion worker: claim a task → load the file → parse → chunk → embed → index → settle.

``TaskExecutor`` runs inside the server (``start()`` in the lifespan) and as the separate
``ragline worker`` process; any number of them may share one database, because claiming and
every later write about a task go through the ``TaskStore``'s fenced, atomic transitions.

The event loop never blocks: database work goes through ``parts.db.run``, file storage, row
building and the chunk store through ``asyncio.to_thread``, and a sync embedding model runs on
the batcher's model threads while an async one is awaited. Parsing and chunking run in child
processes (``ParseProcesses``), within per-document limits of time, memory and package size;
while a document parses its standing is read every ``standing_interval`` seconds, and a
cancelled document, a deleted dataset or ``stop()`` kills its parse at once.

One executor keeps many documents in flight cheaply: a single claimer takes tasks from the queue
(several per transaction) and starts a pipeline coroutine for each, while
- at most ``concurrency`` documents are being loaded, parsed and chunked at once (the CPU
  work, and the pipelines that hold a claim without having produced anything yet),
- no new document is started while ``embed_backlog`` chunk texts already wait for the model
  (so memory stays bounded whatever the documents' sizes), and
- at most ``documents_in_flight`` tasks are held in all.
Documents waiting for their vectors cost a coroutine and their chunk texts. All of them share
an ``EmbeddingBatcher``, so a corpus of one- or two-chunk files still makes full model calls
while parsing and indexing overlap with embedding. One heartbeat renews every held lease.

Unlike RAGFlow's ``rag/svr/task_executor.py`` this module does not import the metadata service
layer (``api.db``), which sits above ``rag/``: what it needs from that database is the
``TaskStore`` protocol of ``rag.svr.task_store``, which ``api`` implements and hands in as
``parts.task_store`` (or ``store=``).

Crash safety rests on three facts: chunk ids are deterministic (document + content), a
document's old chunks are deleted right before its new ones are inserted, and the document's
counts are written in the same transaction that marks the task done. A worker killed at any
point therefore leaves a task whose lease expires; the next claimant redoes the work and the
end state is the same as if the first worker had finished.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from rag.app import table, tagging
from rag.app.naive import ChunkText
from rag.app.parsers import IngestError, ParseError
from rag.nlp import tokenize
from rag.svr.embed_batcher import EmbeddingBatcher
from rag.svr.parse_processes import ParseLimits, ParseProcesses
from rag.svr.task_store import (
    DEFAULT_LEASE_MS,
    DEFAULT_MAX_ATTEMPTS,
    KIND_PARSE,
    ClaimedTask,
    DatasetFacts,
    DocumentFacts,
    Outcome,
    Standing,
    TaskStore,
)
from rag.utils.doc_store_conn import DocStoreError, index_name, make_chunk_row
from rag.utils.storage import ObjectNotFoundError

log = logging.getLogger("ragline.worker")

EmbedderFactory = Callable[[str, str], Any]
TaskHandler = Callable[[Any, ClaimedTask, str], Awaitable[None]]
"""``(tenant_id, embd_id) -> model`` whose ``encode(texts) -> (ndarray (n, dim), tokens)``
is a plain function or a coroutine function."""

INSERT_BATCH = 256
TAG_BATCH = 256  # chunks tagged between two check-ins (one tag-set search each)
DEFAULT_DOCUMENTS_IN_FLIGHT = 128
# A document checks in (progress, lease, cancel) at most this often. A small file passes
# parse, chunk and embed within milliseconds, and each check-in is a write transaction that
# every other writer of the queue waits for: thousands of small documents made these the
# largest share of the worker's database time. Cancels still land within this interval.
CHECKIN_INTERVAL = 0.5
# While a document parses in its child, its standing (cancelled? dataset deleted?) is read this
# often, so a parse nobody wants any more is killed within about this many seconds.
STANDING_INTERVAL = 1.0
PROGRESS_PARSING, PROGRESS_CHUNKING, PROGRESS_EMBED_END, PROGRESS_INDEXING = 0.1, 0.2, 0.9, 0.95


def default_worker_id() -> str:
    """Host, pid and a random tail: unique across machines, processes and restarts."""
    return f"{_host()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def _host() -> str:
    return socket.gethostname()[:32]


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def dead_local_claims(claims: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """The claims of this host whose process is gone: a restarted server need not wait a lease.

    Only ``host:pid:…`` ids of this host whose pid no longer exists count; a reused pid merely
    looks alive, and that task waits for its lease as any other would.
    """
    dead = []
    for task_id, claimed_by in claims:
        host, _, rest = claimed_by.partition(":")
        pid = rest.partition(":")[0]
        if host == _host() and pid.isdigit() and int(pid) != os.getpid() and not _process_alive(int(pid)):
            dead.append((task_id, claimed_by))
    return dead


class _Stop(Exception):
    """The task must stop here: cancelled, lost to another worker, or its document deleted."""

    def __init__(self, standing: Standing) -> None:
        super().__init__(standing.value)
        self.standing = standing


class _HandBack(Exception):
    """The executor is stopping: the task goes back to the queue for the next worker."""


class _Flow:
    """Where an executor's documents are: the counts that decide when it claims more."""

    def __init__(self, preparing: int = 0) -> None:
        self.preparing = preparing  # claimed and not yet chunked (or a handler's task running)
        self.unembedded = 0  # chunk texts produced and not yet embedded
        self._changed = asyncio.Event()

    def notify(self) -> None:
        self._changed.set()

    async def changed(self) -> None:
        """Return at the next change of a count (call without an await since the last look)."""
        self._changed.clear()
        await self._changed.wait()


@dataclass
class _ParseJob:
    """One claimed parse task, what its pipeline has done so far and what it holds of the flow."""

    task: ClaimedTask
    flow: _Flow = field(default_factory=lambda: _Flow(preparing=1))
    doc: DocumentFacts | None = None
    kb: DatasetFacts | None = None
    started: float = field(default_factory=time.monotonic)
    checked_in: float = float("-inf")  # monotonic time of the last check-in
    touched_store: bool = False  # old chunks deleted / new ones written: cleanup needed on stop
    preparing: bool = True  # holds one of the executor's preparation slots
    unembedded: int = 0  # its chunk texts still waiting for vectors

    @property
    def doc_id(self) -> str:
        return self.task.doc_id

    @property
    def index(self) -> str:
        return index_name(self.task.tenant_id)

    def chunked(self, texts: int) -> None:
        """Prepared: the slot goes to the next document, the texts join the embedding backlog."""
        self._leave_preparing()
        self.unembedded += texts
        self.flow.unembedded += texts
        self.flow.notify()

    def embedded(self, texts: int) -> None:
        self.unembedded -= texts
        self.flow.unembedded -= texts
        self.flow.notify()

    def leave_flow(self) -> None:
        """Give back whatever the job still holds, however it ended."""
        self._leave_preparing()
        self.embedded(self.unembedded)

    def _leave_preparing(self) -> None:
        if self.preparing:
            self.preparing = False
            self.flow.preparing -= 1


class TaskExecutor:
    """Drains the task queue on the running event loop, many documents in flight at once.

    ``start()``/``await stop()`` for a long-running worker; ``await run_once()`` processes one
    task (tests, scripts). ``concurrency`` documents are prepared (loaded, parsed, chunked) at
    once; ``documents_in_flight`` (default: the ``ingest_documents_in_flight`` setting) bounds
    the tasks held while they wait for the embedding model or are indexed. ``embedder`` maps
    ``(tenant_id, embd_id)`` to an embedding model; by default the tenant's ``LLMBundle``
    (``parts.bundle``), which also records usage. ``handlers`` runs other kinds of task from
    the same queue (``llm_job`` → the gateway's job runner): ``await handler(parts, task,
    worker_id)`` settles the task itself; it counts as a document being prepared while it runs.
    ``parse_processes`` parses and chunks (default: ``concurrency`` children with the
    settings' ``ParseLimits``, started on first use and closed by ``stop()``; one handed in
    is the caller's to close). ``store`` is the metadata database as the worker sees it
    (default: ``parts.task_store``); its methods block and run via ``parts.db.run``.
    """

    def __init__(
        self,
        parts: Any,
        concurrency: int = 1,
        worker_id: str | None = None,
        poll_interval: float = 0.5,
        *,
        lease_ms: int = DEFAULT_LEASE_MS,
        max_attempts: int = DEFAULT_MAX_ATTEMPTS,
        embed_batch_size: int = 64,
        documents_in_flight: int | None = None,
        embed_backlog: int | None = None,
        embed_parallelism: int | None = None,
        embedder: EmbedderFactory | None = None,
        handlers: dict[str, TaskHandler] | None = None,
        checkin_interval: float = CHECKIN_INTERVAL,
        standing_interval: float = STANDING_INTERVAL,
        parse_processes: ParseProcesses | None = None,
        store: TaskStore | None = None,
    ) -> None:
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        self.parts = parts
        self.store: TaskStore = store if store is not None else parts.task_store
        self.concurrency = concurrency
        self.worker_id = worker_id or default_worker_id()
        self.poll_interval = poll_interval
        self.lease_ms = lease_ms
        self.max_attempts = max_attempts
        self.embed_batch_size = embed_batch_size
        self.checkin_interval = checkin_interval
        self.standing_interval = standing_interval
        self._owns_parser = parse_processes is None
        self._parser = parse_processes or self._build_parser()
        self.documents_in_flight = max(concurrency, documents_in_flight or configured_in_flight(parts))
        self._batcher = EmbeddingBatcher(max_batch=embed_batch_size,
                                         threads=embed_parallelism or configured_embed_parallelism(parts))
        # A full call's worth per call computed at once, and the next one filling up behind them.
        self.embed_backlog = embed_backlog or (self._batcher.parallel_calls + 1) * embed_batch_size
        self.embedder = embedder or self._tenant_embedder
        self.handlers = dict(handlers or {})
        self.kinds = [KIND_PARSE, *self.handlers]
        self._flow = _Flow()
        self._jobs: dict[str, asyncio.Task] = {}
        self._loops: list[asyncio.Task] = []
        self._stopping = asyncio.Event()

    def _build_parser(self) -> ParseProcesses:
        """One parse child per preparation slot (lazy: no child starts until a document parses)."""
        return ParseProcesses(self.concurrency, ParseLimits.from_settings(getattr(self.parts, "settings", None)))

    def _tenant_embedder(self, tenant_id: str, embd_id: str) -> Any:
        """The tenant's bundle, its local model pinned to the batcher's model threads."""
        bundle = self.parts.bundle(tenant_id, embd_id, "embedding")
        bundle.mdl = self._batcher.pinned(bundle.mdl)
        return bundle

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> None:
        """Start claiming on the running loop; returns at once."""
        if self._loops:
            raise RuntimeError("executor already started")
        self._stopping = asyncio.Event()
        self._flow = _Flow()
        self._loops = [asyncio.create_task(self._claim_loop(), name="ragline-worker-claim"),
                       asyncio.create_task(self._heartbeat_loop(), name="ragline-worker-heartbeat")]
        log.info("worker started", extra={"fields": {"worker": self.worker_id, "concurrency": self.concurrency,
                                                      "in_flight": self.documents_in_flight}})

    async def stop(self, grace: float = 5.0) -> None:
        """Stop claiming; give running tasks ``grace`` seconds, then hand them back to the queue.

        A document still parsing goes back at once, its child killed: its parse would have to
        finish within the grace to be of use, and a parse may take minutes.
        """
        self._stopping.set()
        if not self._loops:
            self._close_parser()
            return
        claimer, heartbeat = self._loops
        await asyncio.gather(claimer, return_exceptions=True)
        jobs = list(self._jobs.values())
        if jobs:
            _, pending = await asyncio.wait(jobs, timeout=grace)
            for job in pending:
                job.cancel()
            await asyncio.gather(*jobs, return_exceptions=True)
        heartbeat.cancel()
        await asyncio.gather(heartbeat, return_exceptions=True)
        await self._batcher.close()
        self._close_parser()
        self._loops = []
        log.info("worker stopped", extra={"fields": {"worker": self.worker_id}})

    def _close_parser(self) -> None:
        """Kill the parse children; an owned pool is replaced by an unstarted one (``start()``
        may follow)."""
        if self._owns_parser:
            self._parser.close()
            self._parser = self._build_parser()

    async def expire_dead_claims(self) -> int:
        """Release at once the tasks of workers that died on this host (a server restarted)."""
        claims = await self.parts.db.run(self.store.running_claims, f"{_host()}:")
        expired = 0
        for task_id, claimed_by in dead_local_claims(claims):
            expired += await self.parts.db.run(self.store.expire_claim, task_id, claimed_by)
        if expired:
            log.info("reclaiming tasks of dead local workers", extra={"fields": {"tasks": expired}})
        return expired

    async def _claim_loop(self) -> None:
        """Take tasks whenever there is room for them, and start a pipeline for each."""
        try:
            await self.expire_dead_claims()
        except Exception:
            log.exception("could not check for dead local workers")
        while not self._stopping.is_set():
            room = self._room()
            if room == 0:
                await self._wait_for(self._flow.changed())
                continue
            try:
                tasks = await self.parts.db.run(self.store.claim_many, self.worker_id, self.kinds,
                                                self.lease_ms, room)
            except Exception:  # a database outage must not kill the worker: log, wait, retry
                log.exception("worker iteration failed", extra={"fields": {"worker": self.worker_id}})
                tasks = []
            for task in tasks:
                self._spawn(task)
            if not tasks:
                await self._wait_for(asyncio.sleep(self.poll_interval))

    def _room(self) -> int:
        """How many tasks to claim now: free preparation slots, unless the model is backed up."""
        if self._flow.unembedded >= self.embed_backlog:
            return 0
        return max(0, min(self.concurrency - self._flow.preparing, self.documents_in_flight - len(self._jobs)))

    async def _wait_for(self, waiter: Awaitable[Any]) -> None:
        """Wait for ``waiter`` or for ``stop()``, whichever comes first."""
        waiting = asyncio.ensure_future(waiter)
        stopping = asyncio.ensure_future(self._stopping.wait())
        await asyncio.wait({waiting, stopping}, return_when=asyncio.FIRST_COMPLETED)
        for pending in (waiting, stopping):
            pending.cancel()

    def _spawn(self, task: ClaimedTask) -> None:
        self._flow.preparing += 1  # counted before the coroutine runs, so _room sees it at once
        job = asyncio.create_task(self._run_guarded(task, self._flow), name=f"ragline-task-{task.id}")
        self._jobs[task.id] = job
        job.add_done_callback(lambda _done, task_id=task.id: self._forget(task_id))

    def _forget(self, task_id: str) -> None:
        self._jobs.pop(task_id, None)
        self._flow.notify()

    async def _heartbeat_loop(self) -> None:
        """Renew every held lease in one write (a long parse or embedding has no check-ins)."""
        while True:
            await asyncio.sleep(self.lease_ms / 3000)
            try:
                await self.parts.db.run(self.store.heartbeat_many, list(self._jobs), self.worker_id)
            except Exception:
                log.warning("heartbeat failed", exc_info=True, extra={"fields": {"worker": self.worker_id}})

    async def run_once(self) -> bool:
        """Claim and process one task; False when the queue had none for us."""
        task = await self.parts.db.run(self.store.claim, self.worker_id, self.kinds, self.lease_ms)
        if task is None:
            return False
        heartbeat = asyncio.create_task(self._heartbeat(task.id))
        flow = _Flow(preparing=1)
        try:
            await self._run_claimed(task, flow)
        finally:
            heartbeat.cancel()
        return True

    async def _run_claimed(self, task: ClaimedTask, flow: _Flow) -> None:
        """Process a claimed task (counted as preparing by the caller); hand it back if cancelled."""
        job = _ParseJob(task, flow=flow)  # for a handler's task, only its share of the flow
        try:
            handler = self.handlers.get(task.kind)
            if handler is not None:
                await handler(self.parts, task, self.worker_id)
            else:
                await self._process(job)
        except asyncio.CancelledError:
            await self.parts.db.run(self.store.release, task.id, self.worker_id)
            raise
        finally:
            job.leave_flow()

    async def _run_guarded(self, task: ClaimedTask, flow: _Flow) -> None:
        """``_run_claimed`` for a pipeline of its own: an outage while settling is logged, and
        the task, still running, is claimed again once its lease runs out."""
        try:
            await self._run_claimed(task, flow)
        except Exception:
            log.exception("worker iteration failed", extra={"fields": {"worker": self.worker_id, "task": task.id}})

    async def _heartbeat(self, task_id: str) -> None:
        """Renew one lease while ``run_once`` works on its task."""
        interval = self.lease_ms / 3000
        while True:
            await asyncio.sleep(interval)
            try:
                if not await self.parts.db.run(self.store.heartbeat, task_id, self.worker_id):
                    return
            except Exception:
                log.warning("heartbeat failed", exc_info=True, extra={"fields": {"task": task_id}})

    # -- one parse task ----------------------------------------------------------------------

    async def _process(self, job: _ParseJob) -> None:
        fields = {"task": job.task.id, "doc": job.doc_id, "attempt": job.task.attempts}
        if job.task.attempts > self.max_attempts:
            attempts = job.task.attempts - 1
            await self._fail(job, f"Gave up after {attempts} attempts: the worker parsing this document "
                                  "stopped (killed or crashed) each time.")
            return
        try:
            await self._parse(job)
            log.info("document parsed", extra={"fields": fields})
        except _Stop as stop:
            log.info("task stopped", extra={"fields": {**fields, "reason": stop.standing.value}})
            await self._stopped(job, stop.standing)
        except _HandBack:
            log.info("task handed back: the worker is stopping", extra={"fields": fields})
            await self.parts.db.run(self.store.release, job.task.id, self.worker_id)
        except IngestError as error:
            await self._fail(job, str(error))
        except ObjectNotFoundError:
            await self._fail(job, "The uploaded file is missing from storage.")
        except ValueError as error:  # a parser_config the chunker refuses
            await self._fail(job, f"Invalid parser_config: {error}")
        except DocStoreError as error:
            await self._fail(job, f"Indexing failed: {error}")
        except Exception as error:
            log.exception("parse failed", extra={"fields": fields})
            await self._fail(job, f"Parsing failed: {type(error).__name__}: {error}")

    async def _parse(self, job: _ParseJob) -> None:
        db = self.parts.db
        job.doc, job.kb, standing = await db.run(self.store.begin_parse, job.task.id, self.worker_id, job.doc_id)
        job.checked_in = time.monotonic()
        self._check(standing)
        data = await asyncio.to_thread(self.parts.storage.get, job.doc.location)
        await self._checkpoint(job, PROGRESS_PARSING, f"Parsing {job.doc.name}")
        parser_config = {**(job.kb.parser_config or {}), **(job.doc.parser_config or {})}
        chunks = await self._parse_watched(job, data, parser_config, chunk_method(job.doc, job.kb))
        if not chunks:
            raise ParseError("The file produced no chunks.")
        await self._checkpoint(job, PROGRESS_CHUNKING, f"Parsed into {len(chunks)} chunks")
        chunks, notes = await self._tag(job, chunks, parser_config)
        job.chunked(len(chunks))
        vectors = await self._embed(job, chunks)
        rows = await asyncio.to_thread(_rows, job, chunks, vectors)
        await self._checkpoint(job, PROGRESS_INDEXING, f"Indexing {len(rows)} chunks")
        await self._index(job, rows, vectors.shape[1])
        columns = table.field_map(chunks)
        if columns:  # a table's typed fields, recorded on the dataset as RAGFlow does
            await db.run(self.store.record_field_map, job.kb.id, columns)
        outcome = _outcome(job, chunks, notes)
        self._check(await db.run(self.store.finish_parse, job.task.id, self.worker_id, job.doc_id, outcome))

    async def _parse_watched(self, job: _ParseJob, data: bytes, parser_config: dict,
                             method: str) -> list[ChunkText]:
        """Parse and chunk in a child, killed as soon as the document's standing is no longer OK
        (raises ``_Stop``) or the executor stops (raises ``_HandBack``)."""
        parsing = asyncio.ensure_future(self._parser.parse_and_chunk(job.doc_id, job.doc.name, data, parser_config,
                                                                     method))
        stopping = asyncio.ensure_future(self._stopping.wait())
        try:
            while True:
                await asyncio.wait({parsing, stopping}, timeout=self.standing_interval,
                                   return_when=asyncio.FIRST_COMPLETED)
                if parsing.done():
                    return parsing.result()
                if stopping.done():
                    raise _HandBack()
                self._check(await self.parts.db.run(self.store.standing, job.task.id, self.worker_id))
        finally:
            stopping.cancel()
            if not parsing.done():
                parsing.cancel()  # kills the child
                await asyncio.gather(parsing, return_exceptions=True)

    async def _tag(self, job: _ParseJob, chunks: list[ChunkText], parser_config: dict
                   ) -> tuple[list[ChunkText], list[str]]:
        """The chunks tagged from the tag sets ``parser_config.tag_kb_ids`` names (``rag.app.tagging``),
        and a note per tag set skipped (missing, not a tag set, empty): tagging never fails a document."""
        wanted = tagging.tag_set_ids(parser_config)
        if not wanted:
            return chunks, []
        found = await self.parts.db.run(self.store.dataset_chunk_methods, job.task.tenant_id, wanted)
        usable, notes = _tag_sets(found, job.kb.id, wanted)
        try:
            return await self._tag_from(job, chunks, usable, tagging.topn_tags(parser_config), notes), notes
        except DocStoreError as error:
            log.warning("tagging failed", extra={"fields": {"doc": job.doc_id, "error": str(error)}})
            return chunks, [*notes, f"Tagging skipped: the tag sets could not be searched ({error})."]

    async def _tag_from(self, job: _ParseJob, chunks: list[ChunkText], usable: list[str], topn: int,
                        notes: list[str]) -> list[ChunkText]:
        """``chunks`` tagged from those of ``usable`` that hold rows (a note for each that does not)."""
        store = self.parts.doc_store
        for kb_id in list(usable):
            if not await asyncio.to_thread(tagging.tagged_rows, store, job.index, kb_id):
                usable.remove(kb_id)
                notes.append(f"Tag set {kb_id} skipped: it has no parsed tag rows.")
        if not usable:
            return chunks
        search = tagging.store_search(store, job.index, usable)
        tagged: list[ChunkText] = []
        for start in range(0, len(chunks), TAG_BATCH):
            await self._checkpoint(job, PROGRESS_CHUNKING, f"Tagging chunks {start + 1}-"
                                                           f"{min(start + TAG_BATCH, len(chunks))} of {len(chunks)}")
            tagged += await asyncio.to_thread(tagging.tag_chunks, chunks[start:start + TAG_BATCH], search, topn)
        return tagged

    async def _embed(self, job: _ParseJob, chunks: list[ChunkText]) -> np.ndarray:
        """Vectors of the chunks, batch by batch with a check-in before each (cancel, progress)."""
        model = self.embedder(job.task.tenant_id, job.kb.embd_id)
        texts = [c.embed_text or c.content for c in chunks]
        size = self.embed_batch_size
        batches: list[np.ndarray] = []
        for start in range(0, len(texts), size):
            done = PROGRESS_CHUNKING + (PROGRESS_EMBED_END - PROGRESS_CHUNKING) * start / len(texts)
            await self._checkpoint(job, done, f"Embedding chunks {start + 1}-{min(start + size, len(texts))} "
                                              f"of {len(texts)}")
            key = (job.task.tenant_id, job.kb.embd_id)
            batches.append(await self._batcher.encode(key, model, texts[start:start + size]))
            job.embedded(len(batches[-1]))
        return np.vstack(batches)

    async def _index(self, job: _ParseJob, rows: list[dict], dim: int) -> None:
        """Replace the document's chunks: old ones out, new ones in (upserts by stable id)."""
        store, index, kb_id = self.parts.doc_store, job.index, job.kb.id
        job.touched_store = True
        if not await asyncio.to_thread(store.index_exist, index, kb_id):
            await asyncio.to_thread(store.create_idx, index, kb_id, dim)
        await asyncio.to_thread(store.delete, {"doc_id": job.doc_id}, index, kb_id)
        for start in range(0, len(rows), INSERT_BATCH):
            if start:
                await self._checkpoint(job, PROGRESS_INDEXING, f"Indexing chunks {start + 1}-"
                                                               f"{min(start + INSERT_BATCH, len(rows))} of {len(rows)}")
            errors = await asyncio.to_thread(store.insert, rows[start:start + INSERT_BATCH], index, kb_id)
            if errors:
                raise DocStoreError(f"{len(errors)} chunks were refused, first: {errors[0]}")

    async def _checkpoint(self, job: _ParseJob, progress: float, message: str) -> None:
        """Check in, unless the document did less than ``checkin_interval`` ago."""
        now = time.monotonic()
        if now - job.checked_in < self.checkin_interval:
            return
        job.checked_in = now
        self._check(await self.parts.db.run(self.store.report_progress, job.task.id, self.worker_id,
                                            job.doc_id, round(progress, 4), message))

    @staticmethod
    def _check(standing: Standing) -> None:
        if standing is not Standing.OK:
            raise _Stop(standing)

    # -- endings -----------------------------------------------------------------------------

    async def _remove_chunks(self, job: _ParseJob) -> None:
        """Delete the document's chunks: what this task (or a killed earlier attempt) wrote."""
        kb_id = job.kb.id if job.kb else job.task.payload.get("kb_id", "")
        await asyncio.to_thread(self.parts.doc_store.delete, {"doc_id": job.doc_id}, job.index, kb_id)

    async def _fail(self, job: _ParseJob, reason: str) -> None:
        """Document FAIL with ``reason``; chunks are removed only once the failure is ours to settle."""
        log.info("document failed", extra={"fields": {"task": job.task.id, "doc": job.doc_id, "reason": reason}})
        # An earlier, killed attempt may have written chunks even if this one never reached the store.
        remove = job.touched_store or job.task.attempts > 1
        standing = await self.parts.db.run(self.store.fail_parse, job.task.id, self.worker_id, job.doc_id,
                                           reason, remove)
        if standing is Standing.OK and remove:
            await self._remove_chunks(job)

    async def _stopped(self, job: _ParseJob, standing: Standing) -> None:
        """Clean up after a stop; a lost or superseded task leaves the document to its new owner."""
        db = self.parts.db
        if standing is Standing.LOST:
            return
        if standing is Standing.GONE:
            await db.run(self.store.settle_gone, job.task.id)
            if job.touched_store:
                await self._remove_chunks(job)
            return
        if await db.run(self.store.superseded, job.task.id, job.doc_id):
            await db.run(self.store.settle_cancelled, job.task.id, job.doc_id, False)
            return
        await db.run(self.store.settle_cancelled, job.task.id, job.doc_id, job.touched_store)
        if job.touched_store:
            await self._remove_chunks(job)


def configured_in_flight(parts: Any) -> int:
    """The ``ingest_documents_in_flight`` setting, or the default for parts without settings."""
    settings = getattr(parts, "settings", None)
    return getattr(settings, "ingest_documents_in_flight", DEFAULT_DOCUMENTS_IN_FLIGHT)


def configured_embed_parallelism(parts: Any) -> int:
    """Local-model calls computed at once (``Settings.embed_parallelism``); 0 (one per core) for
    parts without settings."""
    return getattr(getattr(parts, "settings", None), "embed_parallelism", 0)


def _tag_sets(found: dict[str, str], kb_id: str, wanted: list[str]) -> tuple[list[str], list[str]]:
    """The ids of ``wanted`` that are usable tag sets, and a note for each that is not.

    ``found`` maps those of ``wanted`` that are the tenant's datasets to their chunk_method.
    """
    usable, notes = [], []
    for wanted_id in wanted:
        method = found.get(wanted_id)
        if method is None:
            notes.append(f"Tag set {wanted_id} skipped: no such dataset.")
        elif wanted_id == kb_id:
            notes.append(f"Tag set {wanted_id} skipped: it is this dataset.")
        elif method != "tag":
            notes.append(f"Tag set {wanted_id} skipped: its chunk_method is {method}, not tag.")
        else:
            usable.append(wanted_id)
    return usable, notes


def chunk_method(doc: DocumentFacts, kb: DatasetFacts) -> str:
    """The document's ``chunk_method`` (set from its dataset's at upload, changeable per document)."""
    return doc.parser_id or kb.parser_id or "naive"


def _rows(job: _ParseJob, chunks: list[ChunkText], vectors: np.ndarray) -> list[dict]:
    return [_row(job, piece, vector) for piece, vector in zip(chunks, vectors, strict=True)]


def _row(job: _ParseJob, piece: ChunkText, vector: np.ndarray) -> dict:
    """The chunk's row, with what a template adds: the text it is matched by (a Q&A pair's
    question), its questions, keywords and tags, and typed fields (a table row's columns)."""
    row = make_chunk_row(job.doc_id, job.kb.id, job.doc.name, piece.content, vector,
                         important_kwd=piece.keywords, question_kwd=piece.questions, tag_kwd=piece.tags,
                         positions=[[piece.page, 0, 0, 0, 0]] if piece.page else (), token_count=piece.token_count,
                         title=piece.title)
    if piece.match_text is not None:
        row["content_ltks"] = tokenize(piece.match_text)
    for name, value in piece.fields:
        row.setdefault(name, value)
    return row


def _outcome(job: _ParseJob, chunks: list[ChunkText], notes: Sequence[str] = ()) -> Outcome:
    """The counts, and a final progress_msg of "Task done: ..." then one line per note."""
    duration = time.monotonic() - job.started
    tokens = sum(piece.token_count for piece in chunks)
    # RAGFlow's clients and API cases look for "Task done" in the final progress_msg
    message = "\n".join([f"Task done: {len(chunks)} chunks, {tokens} tokens in {duration:.2f}s", *notes])
    return Outcome(chunk_num=len(chunks), token_num=tokens, duration=round(duration, 3), message=message)
