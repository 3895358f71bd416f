"""A real hypercorn server: ragflow-sdk as the client, graceful shutdown, the CLI, `python -m api`."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading
from pathlib import Path

import httpx
import pytest
from hypercorn.asyncio import serve
from ragflow_sdk import RAGFlow

from api import server as server_module
from api.app import create_app
from api.db.services import tenant_service
from api.server import hypercorn_config
from tests.conftest import free_port, wait_for_url


def test_ragflow_sdk_manages_datasets_unchanged(live_server) -> None:
    client = RAGFlow(api_key=live_server.key("acme"), base_url=live_server.url)
    dataset = client.create_dataset(name="sdk-set", description="made by ragflow-sdk")
    assert dataset.id and dataset.name == "sdk-set"
    dataset.update({"name": "sdk-renamed"})
    assert dataset.name == "sdk-renamed"
    assert [d.name for d in client.list_datasets()] == ["sdk-renamed"]
    assert client.get_dataset(name="sdk-renamed").id == dataset.id
    client.delete_datasets(ids=[dataset.id])
    assert client.list_datasets() == []
    intruder = RAGFlow(api_key="ragline-not-a-key", base_url=live_server.url)
    with pytest.raises(Exception, match="API key"):
        intruder.list_datasets()


def test_in_flight_requests_finish_during_a_graceful_stop(make_settings, make_parts) -> None:
    settings = make_settings(graceful_timeout=5)
    parts = make_parts(settings)
    app = create_app(settings, parts)
    started = threading.Event()

    @app.get("/slow-for-test")
    async def slow() -> dict:
        started.set()
        await asyncio.sleep(1.0)
        return {"finished": True}

    loop = asyncio.new_event_loop()
    stop = asyncio.Event()
    server = threading.Thread(
        target=lambda: loop.run_until_complete(serve(app, hypercorn_config(settings), shutdown_trigger=stop.wait)),
        daemon=True,
    )
    server.start()
    url = f"http://{settings.host}:{settings.port}"
    wait_for_url(f"{url}/healthz", 20)
    headers = {"Authorization": f"Bearer {parts.db.call(tenant_service.create_key_for, 'acme').key}"}
    result: dict = {}
    client = threading.Thread(
        target=lambda: result.update(r=httpx.get(f"{url}/slow-for-test", headers=headers, timeout=10))
    )
    client.start()
    assert started.wait(10)
    loop.call_soon_threadsafe(stop.set)
    client.join(10)
    server.join(10)
    assert result["r"].status_code == 200 and result["r"].json() == {"finished": True}
    assert not server.is_alive()
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{url}/healthz", timeout=1)


def _ragline(args: list[str], data_dir: Path, **env: str) -> subprocess.CompletedProcess:
    full_env = {**os.environ, "RAGLINE_DATA_DIR": str(data_dir), **env}
    command = [str(Path(sys.executable).parent / "ragline"), *args]
    return subprocess.run(command, env=full_env, capture_output=True, text=True, timeout=120)


def test_cli_token_create_refuses_a_database_no_server_made(tmp_path: Path) -> None:
    refused = _ragline(["token", "create", "--tenant", "cli-tenant"], tmp_path)
    assert refused.returncode == 2 and refused.stdout == ""
    assert f"no Ragline database at {tmp_path.resolve() / 'ragline.db'}" in refused.stderr
    assert "RAGLINE_DATA_DIR" in refused.stderr
    assert not (tmp_path / "ragline.db").exists()


def test_cli_token_create_prints_a_working_key_last(tmp_path: Path) -> None:
    made = _ragline(["token", "create", "--tenant", "cli-tenant", "--init"], tmp_path)
    assert made.returncode == 0, made.stderr
    assert f"database: {tmp_path.resolve() / 'ragline.db'}" in made.stderr
    second = _ragline(["token", "create", "--tenant", "cli-tenant"], tmp_path)  # the database exists now
    assert second.returncode == 0, second.stderr
    key = made.stdout.strip().splitlines()[-1]
    assert key.startswith("ragline-")
    again = _ragline(["db", "upgrade"], tmp_path)
    assert again.returncode == 0 and "up to date" in again.stdout

    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "api"],
        env={**os.environ, "RAGLINE_DATA_DIR": str(tmp_path), "RAGLINE_PORT": str(port)},
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    try:
        url = f"http://127.0.0.1:{port}"
        for line in server.stdout:  # "listening" is said only once the port answers: no retry below
            if "listening" in line:
                break
        assert f"Ragline listening on {url}" in line
        good = httpx.get(f"{url}/api/v1/datasets", headers={"Authorization": f"Bearer {key}"}).json()
        bad = httpx.get(f"{url}/api/v1/datasets", headers={"Authorization": "Bearer nope"}).json()
        assert good["code"] == 0 and bad["code"] == 109
    finally:
        server.terminate()
        output, _ = server.communicate(timeout=30)
    assert server.returncode == 0
    assert "created tenant 'default'" not in output


async def test_serving_warms_the_embedding_model_and_freezes_the_startup_heap(app, parts) -> None:
    """What ``serve_until`` runs after start-up: the default (builtin) model loaded, in the
    compute pool, the objects alive so far moved out of the garbage collector's reach, and the
    young ones collected in the server's larger batches."""
    import gc

    from api.server import GC_THRESHOLDS, warm_up_and_freeze
    from rag.llm.embedding_model import BuiltinEmbedding

    model = parts.registry.embedding_model(parts.settings.embedding_model)
    assert isinstance(model, BuiltinEmbedding)
    thresholds = gc.get_threshold()
    gc.unfreeze()
    try:
        await warm_up_and_freeze(app.app)
        assert model._model is not None and gc.get_freeze_count() > 0
        assert gc.get_threshold() == GC_THRESHOLDS != thresholds
    finally:
        gc.unfreeze()  # the test process keeps collecting as usual
        gc.set_threshold(*thresholds)


def test_the_database_is_named_without_its_password(make_settings) -> None:
    from api.cli import described_database

    settings = make_settings(database_url="postgresql://ragline:s3cret@db.internal:5432/ragline")
    assert described_database(settings) == "postgresql://ragline:***@db.internal:5432/ragline"


@pytest.mark.parametrize(("kind", "loop_module"), [("uvloop", "uvloop"), ("asyncio", "asyncio")])
def test_serving_runs_on_the_event_loop_the_settings_name(make_settings, monkeypatch, kind: str,
                                                          loop_module: str) -> None:
    seen: list[str] = []

    async def serve_and_note_the_loop(settings) -> None:
        seen.append(type(asyncio.get_running_loop()).__module__.split(".")[0])

    monkeypatch.setattr(server_module, "_serve_with_signals", serve_and_note_the_loop)
    server_module.run(make_settings(event_loop=kind))
    assert seen == [loop_module]
