"""What the ingestion worker needs from the metadata database, said without the database.

``rag.svr.task_executor`` drives documents through parse → chunk → embed → index, but the task
queue, the documents and the datasets live in the metadata service layer (``api.db``), which
sits above ``rag/``. Imports flow one way (api → rag), so the worker names what it needs here,
as a ``TaskStore`` protocol and the plain values it passes, and ``api`` implements it
(``api.db.services.ingest_store.IngestStore``) and hands it in through the worker's parts.

Every method is synchronous and does blocking database work: the worker calls each one on the
database's threads (``parts.db.run``), exactly where it ran its service calls before, so the
event loop never waits on a query. Every write about a task is fenced by the worker's claim
(``worker_id``) and answers with a ``Standing``: anything but ``OK`` tells the worker to stop.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Protocol

KIND_PARSE = "parse"
DEFAULT_LEASE_MS = 60_000
DEFAULT_MAX_ATTEMPTS = 3


class Standing(Enum):
    """Where a worker's task stands when it checks in."""

    OK = "ok"  # still ours, carry on
    CANCELLED = "cancelled"  # the task was cancelled or the document's run set to CANCEL
    LOST = "lost"  # another worker holds the task now (our lease expired), or it was settled
    GONE = "gone"  # the document (or its dataset) was deleted


@dataclass(frozen=True)
class Outcome:
    """Counts a finished parse leaves on its document."""

    chunk_num: int
    token_num: int
    duration: float
    message: str


@dataclass(frozen=True)
class ClaimedTask:
    """A task this worker holds: what the pipeline (or a kind's handler) reads of it.

    ``attempts`` already counts this claim; ``payload`` is the task's own (a parse task's
    ``kb_id``, an ``llm_job``'s request).
    """

    id: str
    kind: str
    tenant_id: str
    doc_id: str | None
    attempts: int
    payload: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class DocumentFacts:
    """What parsing a document reads of it: where its file is and how to chunk it."""

    id: str
    kb_id: str
    name: str
    location: str
    parser_id: str
    parser_config: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class DatasetFacts:
    """What parsing a document reads of its dataset: the defaults it chunks by and its model."""

    id: str
    embd_id: str
    parser_id: str
    parser_config: dict[str, Any] = field(default_factory=dict)


class TaskStore(Protocol):
    """The task queue, documents and datasets as the ingestion worker uses them."""

    # -- the queue ---------------------------------------------------------------------------

    def claim(self, worker_id: str, kinds: list[str], lease_ms: int) -> ClaimedTask | None:
        """The oldest claimable task of ``kinds`` (queued, or its lease expired), now ours; or None."""

    def claim_many(self, worker_id: str, kinds: list[str], lease_ms: int, limit: int) -> list[ClaimedTask]:
        """Up to ``limit`` claimable tasks, oldest first, in one transaction."""

    def heartbeat(self, task_id: str, worker_id: str) -> bool:
        """Renew one lease; False once the task is no longer ours."""

    def heartbeat_many(self, task_ids: list[str], worker_id: str) -> int:
        """Renew the leases of all the tasks the worker holds in one write; how many are still ours."""

    def release(self, task_id: str, worker_id: str) -> bool:
        """Hand a task back to the queue (the worker stops); the claim does not count as an attempt."""

    def running_claims(self, claimant_prefix: str) -> list[tuple[str, str]]:
        """(task id, claimed_by) of running tasks whose claimant id starts with ``claimant_prefix``."""

    def expire_claim(self, task_id: str, claimed_by: str) -> bool:
        """End a dead claimant's lease now, so the next claim takes the task."""

    # -- one parse task ----------------------------------------------------------------------

    def begin_parse(self, task_id: str, worker_id: str, doc_id: str
                    ) -> tuple[DocumentFacts | None, DatasetFacts | None, Standing]:
        """Load the document and its dataset and mark the document RUNNING, in one trip.

        ``(None, None, GONE)`` when either is deleted; the facts with another standing when the
        task may not go on (cancelled, lost).
        """

    def standing(self, task_id: str, worker_id: str) -> Standing:
        """Whether the worker may go on with its task; reads only."""

    def report_progress(self, task_id: str, worker_id: str, doc_id: str, progress: float,
                        message: str) -> Standing:
        """Check in: renew the lease and show ``progress``/``message`` on the document."""

    def dataset_chunk_methods(self, tenant_id: str, kb_ids: list[str]) -> dict[str, str]:
        """``{kb_id: chunk_method}`` of those of ``kb_ids`` that are the tenant's datasets."""

    def record_field_map(self, kb_id: str, fields: dict[str, str]) -> None:
        """Add a table's typed columns to the dataset's ``field_map``."""

    # -- endings -----------------------------------------------------------------------------

    def finish_parse(self, task_id: str, worker_id: str, doc_id: str, outcome: Outcome) -> Standing:
        """Document DONE with ``outcome``'s counts, dataset counters, task done: all or nothing."""

    def fail_parse(self, task_id: str, worker_id: str, doc_id: str, reason: str, chunks_removed: bool) -> Standing:
        """Document FAIL with ``reason``; its counts zeroed when its chunks were removed."""

    def superseded(self, task_id: str, doc_id: str) -> bool:
        """Whether another unfinished parse task now owns the document (a re-parse replaced ours)."""

    def settle_cancelled(self, task_id: str, doc_id: str, chunks_removed: bool) -> None:
        """After a stop for a cancel: task cancelled, document CANCEL (unless superseded)."""

    def settle_gone(self, task_id: str) -> None:
        """The document or dataset was deleted under the task: close the task."""
