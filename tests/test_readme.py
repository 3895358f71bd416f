"""The README's API examples, run as written against a live server whose LLM is the stub.

A newcomer copies these blocks first; if one stops working, this test says so.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"
STUB_MODEL = "stub-chat@OpenAI-API-Compatible"
FENCE = re.compile(r"^```(\w+)\n(.*?)^```", re.M | re.S)


def api_blocks() -> list[tuple[str, str]]:
    """The fenced blocks of the README's "## The API" section, in order."""
    text = README.read_text(encoding="utf-8")
    section = text.split("\n## The API\n", 1)[1].split("\n## ", 1)[0]
    return [(lang, body) for lang, body in FENCE.findall(section) if lang in ("sh", "python")]


@pytest.fixture
def settings(make_settings, stub_llm):
    return make_settings(llm_model=STUB_MODEL, llm_api_base=stub_llm.api_base, llm_timeout=20)


def test_the_readme_has_curl_ragflow_sdk_and_openai_examples() -> None:
    bodies = "\n".join(body for _, body in api_blocks())
    assert "curl" in bodies and "from ragflow_sdk import RAGFlow" in bodies and "from openai import OpenAI" in bodies


@pytest.mark.parametrize("index", range(len(api_blocks())))
def test_readme_example_runs(index: int, live_server, stub_llm, tmp_path: Path) -> None:
    stub_llm.configure(reply="Refunds are paid within 14 days [ID:0].")
    lang, body = api_blocks()[index]
    env = {**os.environ, "RAGLINE": live_server.url, "KEY": live_server.key("readme"),
           "RAGLINE_DATA_DIR": str(live_server.settings.data_dir), "LLM_MODEL": STUB_MODEL,
           "LLM_API_BASE": stub_llm.api_base, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    command = ["bash", "-euo", "pipefail", "-c", body] if lang == "sh" else [sys.executable, "-c", body]
    done = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, f"README {lang} block {index} failed:\n{body}\n--- stderr ---\n{done.stderr}"
    assert done.stdout.strip(), f"README {lang} block {index} printed nothing"
