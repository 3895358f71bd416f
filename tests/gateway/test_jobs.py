"""Background LLM jobs: submitted over HTTP, run by ``run_job`` as the task executor would."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx

from api.apps.llm_app import run_job
from api.db.models import Task
from api.db.services import gateway_service, task_service
from api.db.services.job_service import KIND_LLM_JOB
from tests.gateway.helpers import headers, post, seed_facts, stored_messages

JOBS = "/api/v1/llm/jobs"
WORKER = "test-worker-1"


def job_status(server: Any, job_id: str, key: str | None = None) -> httpx.Response:
    return httpx.get(f"{server.url}{JOBS}/{job_id}", headers=headers(key or server.key()), timeout=30)


def run_next_job(server: Any) -> str:
    """Claim the oldest queued job and run it on the server's loop, as the executor does."""
    task = server.parts.db.call(task_service.claim, WORKER, [KIND_LLM_JOB], 60_000)
    assert task is not None and task.kind == KIND_LLM_JOB
    asyncio.run_coroutine_threadsafe(run_job(server.parts, task, WORKER), server.loop).result(30)
    return task.id


def test_job_queued_then_done_with_the_generate_result(live_server, stub_llm) -> None:
    stub_llm.configure(reply="Done in the background")
    key = live_server.key()
    submitted = post(live_server, JOBS, {"user_message": "work", "tone": "concise", "max_tokens": 20}, key)
    assert submitted.status_code == 202, submitted.text
    job_id = submitted.json()["job_id"]
    assert len(job_id) == 32
    assert job_status(live_server, job_id, key).json() == {"job_id": job_id, "status": "queued"}
    assert stub_llm.chat_requests == []
    assert run_next_job(live_server) == job_id
    shown = job_status(live_server, job_id, key).json()
    assert shown["status"] == "done" and "error" not in shown
    result = shown["result"]
    assert result["response"] == "Done in the background"
    assert set(result) >= {"conversation_id", "message_id", "tokens_used", "cost", "references"}
    assert stub_llm.chat_requests[-1].body["max_tokens"] == 20
    assert [m[:2] for m in stored_messages(live_server, result["conversation_id"])] == [
        ("user", "work"), ("assistant", "Done in the background")]


def test_failed_job_reports_the_error(live_server, stub_llm) -> None:
    key = live_server.key()
    job_id = post(live_server, JOBS, {"user_message": "work"}, key).json()["job_id"]
    stub_llm.configure(fail_500=10)
    run_next_job(live_server)
    shown = job_status(live_server, job_id, key).json()
    assert shown["status"] == "failed" and shown["error"] and "result" not in shown


def test_job_whose_conversation_vanished_fails_with_the_reason(live_server, stub_llm) -> None:
    key = live_server.key()
    conversation_id = post(live_server, "/api/v1/llm/generate", {"user_message": "start"}, key).json()[
        "conversation_id"]
    job_id = post(live_server, JOBS, {"user_message": "work", "conversation_id": conversation_id}, key).json()[
        "job_id"]
    live_server.parts.db.call(gateway_service.remove_conversations, live_server.parts.db.call(
        lambda: Task.get_by_id(job_id).tenant_id), [conversation_id])
    stub_llm.reset()
    run_next_job(live_server)
    shown = job_status(live_server, job_id, key).json()
    assert shown["status"] == "failed" and "doesn't exist" in shown["error"]
    assert stub_llm.chat_requests == []


def test_unknown_conversation_or_foreign_dataset_is_404_at_submission(live_server) -> None:
    dataset_id = seed_facts(live_server, live_server.key("globex"), "theirs")
    for body in ({"user_message": "hi", "conversation_id": "c" * 32},
                 {"user_message": "hi", "knowledge_base_ids": [dataset_id]}):
        response = post(live_server, JOBS, body)
        assert response.status_code == 404, (body, response.text)
    assert live_server.parts.db.call(task_service.claim, WORKER, [KIND_LLM_JOB], 60_000) is None


def test_another_tenant_cannot_read_the_job(live_server) -> None:
    job_id = post(live_server, JOBS, {"user_message": "mine"}).json()["job_id"]
    response = job_status(live_server, job_id, live_server.key("globex"))
    assert response.status_code == 404 and job_id in response.json()["message"]
    assert job_status(live_server, "d" * 32).status_code == 404


def test_bad_jobs_are_refused_at_submission(live_server) -> None:
    for body in ({}, {"user_message": "hi", "tone": "grumpy"}, {"user_message": "hi", "model": "no-factory"}):
        response = post(live_server, JOBS, body)
        assert response.status_code == 400, (body, response.text)
    assert live_server.parts.db.call(task_service.claim, WORKER, [KIND_LLM_JOB], 60_000) is None


def test_a_lost_lease_writes_nothing(live_server, stub_llm) -> None:
    """A worker whose task was claimed away (lease expired) must not overwrite the new holder."""
    job_id = post(live_server, JOBS, {"user_message": "work"}).json()["job_id"]
    task = live_server.parts.db.call(task_service.claim, WORKER, [KIND_LLM_JOB], 60_000)
    live_server.parts.db.call(task_service.expire_claim, task.id, WORKER)
    assert live_server.parts.db.call(task_service.claim, "worker-2", [KIND_LLM_JOB], 60_000).id == job_id
    asyncio.run_coroutine_threadsafe(run_job(live_server.parts, task, WORKER), live_server.loop).result(30)
    assert job_status(live_server, job_id).json()["status"] == "running"
