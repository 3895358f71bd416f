"""A parse nobody wants any more stops within seconds, its child process killed: the document
cancelled, its dataset deleted, the worker stopped, the server sent SIGTERM (issue 18, item 3).

Each slow document would keep a child busy for tens of seconds; the bounds waited for below
are far shorter than that, and the seconds each stop took are printed, not asserted.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import httpx
import pytest

from api.components import Components
from api.db.models import Document
from api.db.services import document_service, knowledgebase_service, task_service, tenant_service
from api.settings import ENV_NAMES, Settings
from rag.app.parsers import PackageLimits
from rag.svr.parse_processes import ParseLimits, ParseProcesses
from rag.svr.task_executor import TaskExecutor
from tests.conftest import free_port
from tests.ingest.parse_support import eventually, running, slow_docx
from tests.ingest.worker_support import FakeEmbedding, migrated_parts, queue, seed_documents, tasks_of

STOP_BOUND = 15.0  # seconds; the slow document alone parses for far longer than this
RAGLINE = str(Path(sys.executable).parent / "ragline")


@pytest.fixture
def ready(parts: Components) -> Components:
    from api.db.migrate import upgrade

    upgrade(parts.db)
    return parts


@pytest.fixture
async def pool() -> AsyncIterator[ParseProcesses]:
    """One warm parse child that accepts the slow document (its element limit raised)."""
    processes = ParseProcesses(1, ParseLimits(package=PackageLimits(max_xml_elements=10_000_000)))
    await processes.warm_up()
    yield processes
    processes.close()


async def parsing_slow_document(parts: Components, pool: ParseProcesses) -> tuple[TaskExecutor, str, str, str, int]:
    """A started executor with the slow document in its parse child; (executor, tenant, kb, doc, pid)."""
    [pid] = await pool.warm_up()
    tenant_id, kb_id, [doc_id] = seed_documents(parts, {"slow.docx": slow_docx()})
    queue(parts, tenant_id, kb_id, [doc_id])
    executor = TaskExecutor(parts, worker_id="test-worker", poll_interval=0.02, standing_interval=0.2, checkin_interval=0,
                            embedder=lambda _t, _n: FakeEmbedding(), parse_processes=pool)
    executor.start()
    await eventually(lambda: parts.db.call(lambda: Document.get_by_id(doc_id).progress_msg or "").startswith("Parsing"),
                     STOP_BOUND, "the document to be parsing")
    assert running(pid)
    return executor, tenant_id, kb_id, doc_id, pid


async def test_a_cancelled_document_kills_its_parse(ready: Components, pool: ParseProcesses) -> None:
    executor, tenant_id, kb_id, doc_id, pid = await parsing_slow_document(ready, pool)
    try:
        ready.db.call(document_service.cancel_parsing, tenant_id, kb_id, [doc_id])
        took = await eventually(lambda: not running(pid), STOP_BOUND, "the parse child to be killed")
        await eventually(lambda: tasks_of(ready, doc_id)[0].claimed_by is None
                         or tasks_of(ready, doc_id)[0].status == task_service.CANCELLED, STOP_BOUND, "settled")
        print(f"parse stopped {took:.2f} s after the cancel")
    finally:
        await executor.stop(grace=1)
    doc = ready.db.call(Document.get_by_id, doc_id)
    assert doc.run == "CANCEL"
    assert tasks_of(ready, doc_id)[0].status == task_service.CANCELLED


async def test_deleting_the_dataset_kills_its_documents_parse(ready: Components, pool: ParseProcesses) -> None:
    executor, tenant_id, kb_id, doc_id, pid = await parsing_slow_document(ready, pool)
    try:
        ready.db.call(knowledgebase_service.delete_many, tenant_id, [kb_id], ready.doc_store, ready.storage)
        took = await eventually(lambda: not running(pid), STOP_BOUND, "the parse child to be killed")
        print(f"parse stopped {took:.2f} s after the dataset was deleted")
    finally:
        await executor.stop(grace=1)


async def test_stopping_the_worker_kills_the_parse_and_hands_the_task_back(ready: Components,
                                                                           pool: ParseProcesses) -> None:
    executor, _tenant_id, _kb_id, doc_id, pid = await parsing_slow_document(ready, pool)
    started = time.monotonic()
    await executor.stop(grace=60)
    print(f"stop(grace=60) returned after {time.monotonic() - started:.2f} s")
    await eventually(lambda: not running(pid), STOP_BOUND, "the parse child to be killed")
    [task] = tasks_of(ready, doc_id)
    assert (task.status, task.claimed_by, task.attempts) == (task_service.QUEUED, None, 0)


def test_sigterm_stops_a_server_mid_parse_within_its_graceful_timeout(make_settings: Callable[..., Settings],
                                                                     tmp_path: Path) -> None:
    graceful = 3
    settings = make_settings()
    parts = migrated_parts(settings)
    key = parts.db.call(tenant_service.create_key_for, "acme").key
    parts.close()
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in ENV_NAMES.values()}
    env.update(RAGLINE_DATA_DIR=str(settings.data_dir), RAGLINE_PORT=str(port), RAGLINE_LOG_LEVEL="WARNING",
               RAGLINE_GRACEFUL_TIMEOUT=str(graceful), RAGLINE_PARSE_MAX_XML_ELEMENTS="10000000",
               RAGLINE_SEARCH_PROCESSES="0", RAGLINE_EMBED_PROCESSES="0")
    server = subprocess.Popen([RAGLINE, "serve"], env=env, stdout=(tmp_path / "server.log").open("wb"),
                              stderr=subprocess.STDOUT)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", headers={"Authorization": f"Bearer {key}"},
                          timeout=30) as api:
            _wait(lambda: _answers(api), 60, "the server to listen")
            kb_id = api.post("/api/v1/datasets", json={"name": "slow"}).json()["data"]["id"]
            [doc] = api.post(f"/api/v1/datasets/{kb_id}/documents",
                             files=[("file", ("slow.docx", slow_docx(3_000_000)))]).json()["data"]
            assert api.post(f"/api/v1/datasets/{kb_id}/chunks", json={"document_ids": [doc["id"]]}).json()["code"] == 0
            _wait(lambda: api.get(f"/api/v1/datasets/{kb_id}/documents").json()["data"]["docs"][0]["run"] == "RUNNING",
                  30, "the document to be parsing")
        time.sleep(1)  # the child is well into the document
        started = time.monotonic()
        server.send_signal(signal.SIGTERM)
        server.wait(graceful + STOP_BOUND)
        print(f"SIGTERM to exit: {time.monotonic() - started:.2f} s (graceful timeout {graceful} s)")
    finally:
        if server.poll() is None:
            server.kill()
            server.wait(10)


def _answers(api: httpx.Client) -> bool:
    try:
        return api.get("/healthz").status_code == 200
    except httpx.TransportError:
        return False


def _wait(predicate: Callable[[], object], seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")
