"""Fixtures for the model-layer tests: a registry pointed at the stub LLM, a usage database.

``stub_llm`` comes from ``tests.fixtures.stub_llm``, which tests/conftest.py loads as a plugin.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import litellm.utils
import pytest
import yaml

from api.db.database import MetaDB
from api.db.migrate import upgrade
from api.db.services.usage_service import UsageService
from rag.llm.registry import ModelRegistry
from tests.fixtures.stub_llm import StubLLMServer

STUB_CHAT = "stub-chat@OpenAI-API-Compatible"
STUB_BACKUP = "stub-backup@OpenAI-API-Compatible"
STUB_EMBED = "stub-embed@OpenAI-API-Compatible"
STUB_RERANK = "stub-rerank@OpenAI-API-Compatible"
INPUT_PRICE = 1e-6
OUTPUT_PRICE = 2e-6


@pytest.fixture(autouse=True)
def short_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    """LiteLLM's backoff starts at 0.5 s plus up to 0.75 s of jitter; shrink it so retry tests
    stay fast. Retry-After values the stub sends are still honoured as given."""
    monkeypatch.setattr(litellm.utils, "INITIAL_RETRY_DELAY", 0.05)
    monkeypatch.setattr(litellm.utils, "JITTER", 0.05)


@pytest.fixture
def models_yaml(tmp_path: Path) -> Path:
    path = tmp_path / "models.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "models": {
                    STUB_CHAT: {
                        "input_cost_per_token": INPUT_PRICE,
                        "output_cost_per_token": OUTPUT_PRICE,
                        "max_output_tokens": 50,
                    },
                    STUB_EMBED: {"input_cost_per_token": INPUT_PRICE, "output_cost_per_token": 0.0},
                },
                "fallbacks": {STUB_CHAT: [STUB_BACKUP]},
            }
        )
    )
    return path


@pytest.fixture(params=["direct", "litellm"])
def stream_transport(request: pytest.FixtureRequest) -> str:
    """Every model test runs on both stream transports: OpenAI-compatible SSE read directly,
    and LiteLLM's stream wrapper (LLM_DIRECT_STREAMING=false, and every other provider)."""
    return request.param


@pytest.fixture
def make_registry(stub_llm: StubLLMServer, models_yaml: Path, stream_transport: str) -> Callable[..., ModelRegistry]:
    """A registry routed to the stub; keyword arguments override from_config's."""

    def make(**overrides: object) -> ModelRegistry:
        params = {
            "default_chat_model": STUB_CHAT,
            "api_base": stub_llm.api_base,
            "openai_api_key": "test-key",
            "timeout": 3.0,
            "max_retries": 2,
            "models_yaml_path": models_yaml,
            "direct_streaming": stream_transport == "direct",
        }
        return ModelRegistry.from_config(**{**params, **overrides})

    return make


@pytest.fixture
def registry(make_registry: Callable[..., ModelRegistry]) -> ModelRegistry:
    return make_registry()


@pytest.fixture
def meta_db(tmp_path: Path) -> Iterator[MetaDB]:
    db = MetaDB("sqlite:///" + str(tmp_path / "m.db"))
    upgrade(db)
    yield db
    db.close()


@pytest.fixture
def usage_service(meta_db: MetaDB) -> UsageService:
    return UsageService(meta_db)
