"""Settings: YAML defaults, environment overrides, one clear line for a bad value."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from api.settings import SettingsError, load_settings


def test_defaults_come_from_the_yaml_file() -> None:
    settings = load_settings(environ={})
    assert settings.host == "127.0.0.1"
    assert settings.port == 9380
    assert settings.data_dir == Path("./data")
    assert settings.doc_engine == "sqlite"
    assert settings.embedding_model == "all-MiniLM-L6-v2@Builtin"
    assert settings.resolved_database_url.startswith("sqlite:////")


def test_environment_overrides_the_yaml_defaults() -> None:
    settings = load_settings(environ={
        "RAGLINE_PORT": "9999", "LLM_MODEL": "gpt-4o-mini@OpenAI", "LLM_TIMEOUT": "12.5",
        "DATABASE_URL": "postgresql://u@db:5432/r", "MAX_CONTENT_LENGTH": "1024",
    })
    assert settings.port == 9999
    assert settings.llm_model == "gpt-4o-mini@OpenAI"
    assert settings.llm_timeout == 12.5
    assert settings.resolved_database_url == "postgresql://u@db:5432/r"
    assert settings.max_content_length == 1024


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"RAGLINE_PORT": "70000"}, "RAGLINE_PORT"),
        ({"RAGLINE_PORT": "abc"}, "RAGLINE_PORT"),
        ({"DOC_ENGINE": "solr"}, "DOC_ENGINE"),
        ({"DOC_ENGINE": "elasticsearch"}, "ES_HOSTS"),
        ({"LLM_MODEL": "gpt-4o-mini"}, "LLM_MODEL"),
        ({"DATABASE_URL": "oracle://x"}, "DATABASE_URL"),
        ({"LLM_TIMEOUT": "-1"}, "LLM_TIMEOUT"),
        ({"MAX_CONTENT_LENGTH": "0"}, "MAX_CONTENT_LENGTH"),
        ({"RAGLINE_EVENT_LOOP": "trio"}, "RAGLINE_EVENT_LOOP"),
    ],
)
def test_a_bad_value_is_one_line_naming_the_setting(env: dict[str, str], named: str) -> None:
    with pytest.raises(SettingsError) as caught:
        load_settings(environ=env)
    message = str(caught.value)
    assert named in message
    assert "\n" not in message


def test_the_api_key_is_never_echoed_in_errors(tmp_path: Path) -> None:
    conf = tmp_path / "conf.yaml"
    conf.write_text("openai_api_key: [not, a, string]\n")
    with pytest.raises(SettingsError) as caught:
        load_settings(environ={}, conf_path=conf)
    assert "not" not in str(caught.value).split(":", 1)[0]
    assert "OPENAI_API_KEY" in str(caught.value)


def test_unknown_yaml_keys_are_refused(tmp_path: Path) -> None:
    conf = tmp_path / "conf.yaml"
    conf.write_text("prot: 80\n")
    with pytest.raises(SettingsError, match="prot"):
        load_settings(environ={}, conf_path=conf)


def test_serve_with_a_bad_setting_stops_with_one_line(tmp_path: Path) -> None:
    env = {**os.environ, "RAGLINE_PORT": "not-a-port", "RAGLINE_DATA_DIR": str(tmp_path)}
    done = subprocess.run([sys.executable, "-m", "api"], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1
    assert "RAGLINE_PORT" in lines[0] and "not-a-port" in lines[0]
    assert not (tmp_path / "ragline.db").exists()
