"""docker/: the compose file and Dockerfile are checked structurally (no Docker daemon needed).

``docker compose config`` validates the file fully when the Compose plugin is installed.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from importlib.metadata import version
from pathlib import Path

import pytest
import yaml

from api.settings import load_settings

ROOT = Path(__file__).resolve().parent.parent
COMPOSE = ROOT / "docker" / "docker-compose.yml"
DOCKERFILE = ROOT / "docker" / "Dockerfile"


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))


def with_defaults(value: str) -> str:
    """``${NAME:-default}`` replaced by its default, as Compose does when NAME is unset."""
    return re.sub(r"\$\{[A-Z_]+:-([^}]*)\}", r"\1", value)


def test_services_have_images_volumes_and_healthchecks(compose):
    services = compose["services"]
    assert set(services) == {"ragline", "elasticsearch", "mysql"}
    for name, service in services.items():
        assert service["healthcheck"]["test"], name
        assert service.get("image") or service.get("build"), name
    declared = set(compose["volumes"])
    used = {mount.split(":")[0] for service in services.values() for mount in service.get("volumes", [])}
    assert used == declared == {"ragline-data", "es-data", "mysql-data"}


def test_ragline_waits_for_healthy_backends_and_is_configured_for_them(compose):
    ragline = compose["services"]["ragline"]
    assert ragline["depends_on"] == {
        "mysql": {"condition": "service_healthy"},
        "elasticsearch": {"condition": "service_healthy"},
    }
    env = {key: with_defaults(str(value)) for key, value in ragline["environment"].items()}
    assert env["DOC_ENGINE"] == "elasticsearch"
    assert env["ES_HOSTS"] == "http://elasticsearch:9200"
    assert env["DATABASE_URL"].startswith("mysql://") and env["DATABASE_URL"].endswith("@mysql:3306/ragline")
    assert ragline["ports"] == ["${RAGLINE_PUBLISH_PORT:-9380}:9380"]
    assert "9380/healthz" in " ".join(ragline["healthcheck"]["test"])
    settings = load_settings(environ=env)
    assert (settings.host, settings.port, settings.doc_engine) == ("0.0.0.0", 9380, "elasticsearch")
    assert settings.es_host_list == ["http://elasticsearch:9200"]


def test_database_credentials_match_between_ragline_and_mysql(compose):
    mysql_env = compose["services"]["mysql"]["environment"]
    url = with_defaults(compose["services"]["ragline"]["environment"]["DATABASE_URL"])
    user, password = re.match(r"mysql://([^:]+):([^@]+)@", url).groups()
    assert (user, password) == (mysql_env["MYSQL_USER"], with_defaults(mysql_env["MYSQL_PASSWORD"]))
    assert url.rsplit("/", 1)[1] == mysql_env["MYSQL_DATABASE"]
    assert compose["services"]["mysql"]["image"].startswith("mysql:8")


def test_elasticsearch_major_matches_the_python_client(compose):
    """The 9.x client's compatibility headers are refused by other server majors."""
    es = compose["services"]["elasticsearch"]
    server_major = es["image"].rsplit(":", 1)[1].split(".")[0]
    assert server_major == version("elasticsearch").split(".")[0]
    assert es["environment"]["discovery.type"] == "single-node"


def test_dockerfile_installs_cpu_torch_then_ragline_and_serves():
    text = DOCKERFILE.read_text(encoding="utf-8")
    makefile_torch = re.search(r"^TORCH := (\S+)", (ROOT / "Makefile").read_text(), re.M).group(1)
    torch_line = re.search(r"pip install --index-url https://download.pytorch.org/whl/cpu (\S+)", text)
    assert torch_line and torch_line.group(1) == makefile_torch
    assert text.index(torch_line.group(0)) < text.index("pip install .")
    assert 'CMD ["ragline", "serve"]' in text
    assert "EXPOSE 9380" in text and "/healthz" in text
    for source in re.findall(r"^COPY (.+) \S+$", text, re.M):
        for path in source.split():
            assert (ROOT / path).exists(), path


def _compose_plugin() -> bool:
    if shutil.which("docker") is None:
        return False
    return subprocess.run(["docker", "compose", "version"], capture_output=True, check=False).returncode == 0


@pytest.mark.skipif(not _compose_plugin(), reason="the docker compose CLI plugin is not installed")
def test_docker_compose_config_accepts_the_file():
    result = subprocess.run(
        ["docker", "compose", "-f", str(COMPOSE), "config", "--quiet"], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
