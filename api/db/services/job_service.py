"""Background LLM jobs: rows of the same task queue ingestion uses (kind ``llm_job``).

A job outlives the request that submitted it and the process that started running it: a
worker that dies leaves the task's lease to expire, and the next worker claims it again.
"""

from __future__ import annotations

from typing import Any

from api.db.models import Task
from api.db.services import task_service
from api.errors import data_error

KIND_LLM_JOB = "llm_job"
PUBLIC_STATUS = {task_service.QUEUED: "queued", task_service.RUNNING: "running", task_service.DONE: "done",
                 task_service.FAILED: "failed", task_service.CANCELLED: "failed"}


def submit(tenant_id: str, request: dict[str, Any]) -> str:
    return Task.create(tenant_id=tenant_id, kind=KIND_LLM_JOB, status=task_service.QUEUED, payload=request).id


def status(tenant_id: str, job_id: str) -> dict[str, Any]:
    task = Task.get_or_none((Task.id == job_id) & (Task.tenant_id == tenant_id) & (Task.kind == KIND_LLM_JOB))
    if task is None:
        raise data_error(f"The job {job_id} doesn't exist.")
    shown: dict[str, Any] = {"job_id": task.id, "status": PUBLIC_STATUS.get(task.status, task.status)}
    if task.result is not None:
        shown["result"] = task.result
    if task.error:
        shown["error"] = task.error
    return shown


def settle(task_id: str, worker_id: str, result: dict[str, Any] | None, error: str | None) -> bool:
    """Record the job's outcome, if the task is still this worker's (a lost lease writes nothing)."""
    return bool(Task.update(status=task_service.FAILED if error else task_service.DONE, result=result, error=error,
                            progress=1.0).where((Task.id == task_id) & (Task.claimed_by == worker_id)
                                                & (Task.status == task_service.RUNNING)).execute())
