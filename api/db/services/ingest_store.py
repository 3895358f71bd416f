"""The ingestion worker's ``TaskStore`` (``rag.svr.task_store``) on the metadata database.

The worker lives under ``rag/`` and may not import ``api``; this adapter gives it the task
queue (``task_service``), its documents and datasets (the models) and ``record_field_map``
(``knowledgebase_service``) as plain values. Each method is the blocking call the worker runs
on the database's threads (``parts.db.run``): it holds no state and no connection of its own.
Services are looked up on their modules at call time, so a test that replaces one of them
(``monkeypatch.setattr(task_service, ...)``) still sees the worker go through it.
"""

from __future__ import annotations

from api.db.models import Document, Knowledgebase, Task
from api.db.services import knowledgebase_service, task_service
from rag.svr.task_store import ClaimedTask, DatasetFacts, DocumentFacts, Outcome, Standing


def claimed(task: Task) -> ClaimedTask:
    """The worker's view of a claimed ``task`` row."""
    return ClaimedTask(id=task.id, kind=task.kind, tenant_id=task.tenant_id, doc_id=task.doc_id,
                       attempts=task.attempts, payload=dict(task.payload or {}))


def document_facts(doc: Document) -> DocumentFacts:
    return DocumentFacts(id=doc.id, kb_id=doc.kb_id, name=doc.name, location=doc.location,
                         parser_id=doc.parser_id, parser_config=doc.parser_config or {})


def dataset_facts(kb: Knowledgebase) -> DatasetFacts:
    return DatasetFacts(id=kb.id, embd_id=kb.embd_id, parser_id=kb.parser_id, parser_config=kb.parser_config or {})


class IngestStore:
    """``TaskStore`` over ``task_service``, ``knowledgebase_service`` and the models."""

    # -- the queue ---------------------------------------------------------------------------

    def claim(self, worker_id: str, kinds: list[str], lease_ms: int) -> ClaimedTask | None:
        task = task_service.claim(worker_id, kinds, lease_ms)
        return claimed(task) if task is not None else None

    def claim_many(self, worker_id: str, kinds: list[str], lease_ms: int, limit: int) -> list[ClaimedTask]:
        return [claimed(task) for task in task_service.claim_many(worker_id, kinds, lease_ms, limit)]

    def heartbeat(self, task_id: str, worker_id: str) -> bool:
        return task_service.heartbeat(task_id, worker_id)

    def heartbeat_many(self, task_ids: list[str], worker_id: str) -> int:
        return task_service.heartbeat_many(task_ids, worker_id)

    def release(self, task_id: str, worker_id: str) -> bool:
        return task_service.release(task_id, worker_id)

    def running_claims(self, claimant_prefix: str) -> list[tuple[str, str]]:
        return task_service.running_claims(claimant_prefix)

    def expire_claim(self, task_id: str, claimed_by: str) -> bool:
        return task_service.expire_claim(task_id, claimed_by)

    # -- one parse task ----------------------------------------------------------------------

    def begin_parse(self, task_id: str, worker_id: str, doc_id: str
                    ) -> tuple[DocumentFacts | None, DatasetFacts | None, Standing]:
        """Load the document and mark it RUNNING: one trip to the database thread instead of two."""
        doc = Document.get_or_none(Document.id == doc_id)
        kb = Knowledgebase.get_or_none(Knowledgebase.id == doc.kb_id) if doc else None
        if doc is None or kb is None:
            return None, None, Standing.GONE
        return document_facts(doc), dataset_facts(kb), task_service.begin_parse(task_id, worker_id, doc)

    def standing(self, task_id: str, worker_id: str) -> Standing:
        return task_service.standing(task_id, worker_id)

    def report_progress(self, task_id: str, worker_id: str, doc_id: str, progress: float,
                        message: str) -> Standing:
        return task_service.report_progress(task_id, worker_id, doc_id, progress, message)

    def dataset_chunk_methods(self, tenant_id: str, kb_ids: list[str]) -> dict[str, str]:
        query = Knowledgebase.select(Knowledgebase.id, Knowledgebase.parser_id).where(
            Knowledgebase.id.in_(kb_ids) & (Knowledgebase.tenant_id == tenant_id))
        return {kb.id: kb.parser_id for kb in query}

    def record_field_map(self, kb_id: str, fields: dict[str, str]) -> None:
        knowledgebase_service.record_field_map(kb_id, fields)

    # -- endings -----------------------------------------------------------------------------

    def finish_parse(self, task_id: str, worker_id: str, doc_id: str, outcome: Outcome) -> Standing:
        return task_service.finish_parse(task_id, worker_id, doc_id, outcome)

    def fail_parse(self, task_id: str, worker_id: str, doc_id: str, reason: str, chunks_removed: bool) -> Standing:
        return task_service.fail_parse(task_id, worker_id, doc_id, reason, chunks_removed)

    def superseded(self, task_id: str, doc_id: str) -> bool:
        return task_service.superseded(task_id, doc_id)

    def settle_cancelled(self, task_id: str, doc_id: str, chunks_removed: bool) -> None:
        task_service.settle_cancelled(task_id, doc_id, chunks_removed)

    def settle_gone(self, task_id: str) -> None:
        task_service.settle_gone(task_id)
