"""`ragline serve` SIGKILLed mid-parse and started again: every document ends DONE, no duplicates.

The in-server workers are the default way documents get parsed; this is the issue's check
against a real server process, through the HTTP API, with the builtin MiniLM model.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx

from api.db.models import Document, Task
from api.db.services import tenant_service
from api.settings import ENV_NAMES, Settings
from tests.conftest import free_port
from tests.ingest.worker_support import dataset, expected_chunk_ids, migrated_parts, prose, stored_chunk_ids

RAGLINE = str(Path(sys.executable).parent / "ragline")
CHUNK_TOKENS = 32


def _serve(settings: Settings, port: int, log: Path) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if k not in ENV_NAMES.values()}
    env.update(RAGLINE_DATA_DIR=str(settings.data_dir), RAGLINE_PORT=str(port), RAGLINE_LOG_LEVEL="WARNING")
    return subprocess.Popen([RAGLINE, "serve"], env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT)


def _wait_for(predicate: Callable[[], object], seconds: float, what: str) -> object:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            value = predicate()
        except httpx.TransportError:
            value = None
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def _api(port: int, key: str) -> httpx.Client:
    return httpx.Client(base_url=f"http://127.0.0.1:{port}", headers={"Authorization": f"Bearer {key}"}, timeout=30)


def test_a_server_killed_mid_parse_finishes_every_document_after_restart(
    make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    settings = make_settings()
    parts = migrated_parts(settings)
    key = parts.db.call(tenant_service.create_key_for, "acme").key
    files = {f"paper{n}.md": prose(24, n).encode() for n in range(4)}
    first_port, second_port = free_port(), free_port()
    server = _serve(settings, first_port, tmp_path / "first.log")
    restarted = None
    try:
        with _api(first_port, key) as api:
            _wait_for(lambda: api.get("/healthz").status_code == 200, 60, "the server to listen")
            kb_id = api.post("/api/v1/datasets", json={
                "name": "papers", "parser_config": {"chunk_token_num": CHUNK_TOKENS}}).json()["data"]["id"]
            uploaded = api.post(f"/api/v1/datasets/{kb_id}/documents",
                                files=[("file", (name, data)) for name, data in files.items()]).json()["data"]
            doc_ids = [doc["id"] for doc in uploaded]
            assert api.post(f"/api/v1/datasets/{kb_id}/chunks", json={"document_ids": doc_ids}).json()["code"] == 0
        _wait_for(lambda: parts.db.call(lambda: Document.select().where(
            (Document.run == "RUNNING") & (Document.progress >= 0.2) & (Document.progress < 0.9)).exists()),
            120, "the server to be embedding")
        server.send_signal(signal.SIGKILL)
        server.wait(10)

        restarted = _serve(settings, second_port, tmp_path / "second.log")
        with _api(second_port, key) as api:
            def all_done() -> bool:
                listed = api.get(f"/api/v1/datasets/{kb_id}/documents", params={"page_size": 100}).json()
                return all(doc["run"] == "DONE" for doc in listed["data"]["docs"])

            _wait_for(all_done, 180, "every document to be DONE after the restart")
    finally:
        for process in (server, restarted):
            if process is not None and process.poll() is None:
                process.send_signal(signal.SIGTERM)
                process.wait(30)

    tenant_id = parts.db.call(tenant_service.tenant_for_key, key)
    documents = parts.db.call(lambda: {d.name: d for d in Document.select().where(Document.kb_id == kb_id)})
    for name, data in files.items():
        doc = documents[name]
        expected = expected_chunk_ids(doc.id, name, data, CHUNK_TOKENS)
        assert (doc.run, doc.chunk_num) == ("DONE", len(expected))
        assert sorted(stored_chunk_ids(parts, tenant_id, kb_id, doc.id)) == sorted(expected)
    assert dataset(parts, kb_id).chunk_num == sum(d.chunk_num for d in documents.values())
    assert max(t.attempts for t in parts.db.call(lambda: list(Task.select()))) == 2
    parts.close()
