"""Real processes: `ragline ingest` waits while two `ragline worker`s parse; one is SIGKILLed mid-parse.

This is the crash-safety claim end to end, with the builtin MiniLM model in the worker
processes (this test process never loads it): the killed worker's task is reclaimed after its
lease by the other worker sharing the database, and every document ends DONE with
exactly its expected chunks, none twice.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from api.components import Components
from api.db.models import Document, Task
from api.db.services import knowledgebase_service, tenant_service
from api.settings import ENV_NAMES, Settings
from tests.ingest.worker_support import dataset, expected_chunk_ids, migrated_parts, prose, stored_chunk_ids

RAGLINE = str(Path(sys.executable).parent / "ragline")
CHUNK_TOKENS = 32


@pytest.fixture
def shared(make_settings: Callable[..., Settings]) -> Iterator[tuple[Settings, Components]]:
    settings = make_settings()
    parts = migrated_parts(settings)
    yield settings, parts
    parts.close()


def _env(settings: Settings) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ENV_NAMES.values()}
    env.update(RAGLINE_DATA_DIR=str(settings.data_dir), RAGLINE_WORKER_THREADS="4", RAGLINE_LOG_LEVEL="WARNING")
    return env


def _spawn(args: list[str], settings: Settings, log: Path) -> subprocess.Popen:
    handle = log.open("wb")
    return subprocess.Popen([RAGLINE, *args], env=_env(settings), stdout=handle, stderr=subprocess.STDOUT)


def _worker(settings: Settings, log: Path) -> subprocess.Popen:
    return _spawn(["worker", "--concurrency", "1", "--lease", "2", "--poll", "0.2"], settings, log)


def _embedding_document(parts: Components) -> str | None:
    """A document some worker is embedding right now (past chunking, not yet indexing)."""
    doc = parts.db.call(lambda: Document.select().where(
        (Document.run == "RUNNING") & (Document.progress >= 0.2) & (Document.progress < 0.9)).first())
    return doc.id if doc else None


def _wait_for(predicate: Callable[[], object], seconds: float, what: str) -> object:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def test_a_worker_killed_mid_parse_is_replaced_and_every_document_ends_done(
    shared: tuple[Settings, Components], tmp_path: Path
) -> None:
    settings, parts = shared
    folder = tmp_path / "docs"
    folder.mkdir()
    files = {f"paper{n}.md": prose(24, n).encode() for n in range(4)}
    for name, data in files.items():
        (folder / name).write_bytes(data)
    tenant_id = parts.db.call(tenant_service.get_or_create_tenant, "acme").id
    kb_id = parts.db.call(knowledgebase_service.create, tenant_id, {
        "name": "papers", "embedding_model": "all-MiniLM-L6-v2@Builtin",
        "parser_config": {"chunk_token_num": CHUNK_TOKENS},
    })["id"]
    logs = tmp_path / "logs"
    logs.mkdir()

    workers = {}
    for n in range(2):
        process = _worker(settings, logs / f"worker{n}.log")
        workers[process.pid] = process
    ingest = _spawn(["ingest", str(folder), "--dataset", "papers", "--tenant", "acme", "--workers", "0"],
                    settings, logs / "ingest.log")
    try:
        killed_doc = _wait_for(lambda: _embedding_document(parts), 120, "a worker to be embedding")
        holder = parts.db.call(lambda: Task.get(Task.doc_id == killed_doc)).claimed_by
        victim = workers.pop(int(holder.split(":")[1]))  # worker ids are host:pid:random
        victim.send_signal(signal.SIGKILL)
        victim.wait(10)
        assert ingest.wait(240) == 0, (logs / "ingest.log").read_text()
    finally:
        for process in [ingest, *workers.values()]:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        exit_codes = [process.wait(30) for process in workers.values()]

    assert exit_codes == [0]  # SIGTERM stops the surviving worker cleanly
    summary = (logs / "ingest.log").read_text()
    assert "documents: 4 uploaded, 4 done, 0 failed" in summary
    documents = parts.db.call(lambda: {d.name: d for d in Document.select().where(Document.kb_id == kb_id)})
    for name, data in files.items():
        doc = documents[name]
        expected = expected_chunk_ids(doc.id, name, data, CHUNK_TOKENS)
        assert (doc.run, doc.progress, doc.chunk_num) == ("DONE", 1.0, len(expected))
        assert sorted(stored_chunk_ids(parts, tenant_id, kb_id, doc.id)) == sorted(expected)
    assert dataset(parts, kb_id).chunk_num == sum(d.chunk_num for d in documents.values())
    killed_task = parts.db.call(lambda: Task.get(Task.doc_id == killed_doc))
    assert (killed_task.status, killed_task.attempts) == ("done", 2)
