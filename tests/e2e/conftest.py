"""One live Ragline server per module, and the interpreters that carry each ragflow-sdk line.

The server is real hypercorn on 127.0.0.1 (built like ``tests/conftest.py``'s ``live_server``,
but once per module so the scenarios share its start-up and its loaded embedding model); its
chat model is the stub LLM, which answers every question with one cited sentence.

ragflow-sdk 0.22.1 is the project's own (``.venv``, Python 3.11). ragflow-sdk 0.27.3 needs
Python 3.13: ``make test`` installs it into ``.venv-sdk27`` when a python3.13 exists
(``RAGLINE_SDK27_PYTHON`` names another interpreter that has it); without one, its tests skip
and say what is missing.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import pytest

from api.components import build_components
from api.db.services import tenant_service
from api.settings import load_settings
from tests.conftest import BUILTIN_EMBEDDING, _serve_in_thread, _wait_until_listening, free_port

REPO = Path(__file__).resolve().parents[2]
SDK27_VENV = REPO / ".venv-sdk27"
SDK27_ENV = "RAGLINE_SDK27_PYTHON"
STUB_MODEL = "stub-chat@OpenAI-API-Compatible"
# What the stub says to every question: a cited answer about the first fact the scenarios seed.
STUB_REPLY = "The Eiffel Tower was completed in 1889 [ID:0]."


@dataclass
class E2EServer:
    """The module's live server; ``key(tenant)`` issues an API key for a (new) tenant."""

    url: str
    parts: object

    def key(self, tenant: str) -> str:
        return self.parts.db.call(tenant_service.create_key_for, tenant).key


@pytest.fixture(scope="module")
def e2e_server(tmp_path_factory: pytest.TempPathFactory, stub_llm_server, builtin_embedding) -> Iterator[E2EServer]:
    stub_llm_server.reset()
    stub_llm_server.configure(reply=STUB_REPLY)
    settings = load_settings(
        environ={}, data_dir=tmp_path_factory.mktemp("e2e") / "data", port=free_port(), search_processes=0,
        embed_processes=0, llm_model=STUB_MODEL, llm_api_base=stub_llm_server.api_base, llm_timeout=10,
        llm_max_retries=0,
    )
    parts = build_components(settings)
    parts.registry.register(BUILTIN_EMBEDDING, builtin_embedding, kind="embedding")
    thread, server = _serve_in_thread(settings, parts)
    _wait_until_listening(settings.host, settings.port)
    try:
        yield E2EServer(server.url, parts)
    finally:
        server.loop.call_soon_threadsafe(server.stop.set)
        thread.join(30)
        parts.close()
        stub_llm_server.reset()


def _sdk_version_of(python: str) -> str | None:
    """The ragflow-sdk version that ``python`` imports, or None when it has none (or won't run)."""
    probe = "from importlib.metadata import version; print(version('ragflow-sdk'))"
    try:
        done = subprocess.run([python, "-c", probe], capture_output=True, text=True, timeout=30)
    except OSError:
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def _sdk27_python() -> str:
    """The interpreter with ragflow-sdk 0.27.x, or a skip naming what is missing."""
    named = os.environ.get(SDK27_ENV)
    python = named or str(SDK27_VENV / "bin" / "python")
    if not named and not Path(python).exists():
        pytest.skip(f"ragflow-sdk 0.27.3 line not tested: {SDK27_VENV.name}/ is missing. It needs Python 3.13: "
                    "`make test` creates it when python3.13 is on PATH or under ~/.pyenv/versions/3.13*/bin "
                    f"(or PYTHON313=/path/to/python3.13); {SDK27_ENV} may name such an interpreter instead.")
    found = _sdk_version_of(python)
    if not found or not found.startswith("0.27"):
        pytest.skip(f"ragflow-sdk 0.27.3 line not tested: {python} has ragflow-sdk {found or 'not installed'}; "
                    "run `make test` (it installs ragflow-sdk==0.27.3 into .venv-sdk27).")
    return python


@pytest.fixture(scope="session")
def sdk_pythons() -> dict[str, str]:
    """Interpreter per SDK line that this machine has (a line it lacks is absent)."""
    found: dict[str, str] = {}
    try:
        if version("ragflow-sdk").startswith("0.22"):
            found["0.22"] = sys.executable
    except PackageNotFoundError:
        pass
    return found


@pytest.fixture
def sdk_python(request: pytest.FixtureRequest, sdk_pythons: dict[str, str]) -> str:
    """The interpreter for the SDK line a test is parametrized with (``line``)."""
    line = request.node.callspec.params["line"]
    if line == "0.27":
        return _sdk27_python()
    if line not in sdk_pythons:
        pytest.skip(f"ragflow-sdk {line} is not installed in {sys.executable}: run `make test`.")
    return sdk_pythons[line]


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> Iterator[None]:
    """With ``RAGLINE_E2E_RESULTS`` set, record the openai tests' outcomes beside the scenarios'."""
    outcome = yield
    report = outcome.get_result()
    target = os.environ.get("RAGLINE_E2E_RESULTS")
    if not target or report.when != "call" or not item.name.startswith("test_openai"):
        return
    error = "" if report.passed else str(report.longrepr.reprcrash.message if hasattr(report.longrepr, "reprcrash")
                                          else report.longrepr)[:300]
    with open(target, "a", encoding="utf-8") as out:
        out.write(json.dumps({"openai": item.callspec.params["path"], "test": item.name, "ok": report.passed,
                              "error": error}) + "\n")
