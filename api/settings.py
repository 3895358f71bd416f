"""One typed settings object, built once at start-up and handed down.

Defaults live in ``conf/service_conf.yaml``; environment variables override them. The
environment names are the ones operators already know (``DATABASE_URL``, ``OPENAI_API_KEY``)
rather than one uniform prefix, so the mapping is spelled out in ``ENV_NAMES``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

DEFAULT_CONF = Path(__file__).resolve().parent.parent / "conf" / "service_conf.yaml"

ENV_NAMES: dict[str, str] = {
    "host": "RAGLINE_HOST",
    "port": "RAGLINE_PORT",
    "data_dir": "RAGLINE_DATA_DIR",
    "database_url": "DATABASE_URL",
    "doc_engine": "DOC_ENGINE",
    "es_hosts": "ES_HOSTS",
    "llm_model": "LLM_MODEL",
    "llm_api_base": "LLM_API_BASE",
    "openai_api_key": "OPENAI_API_KEY",
    "ollama_base_url": "OLLAMA_BASE_URL",
    "llm_timeout": "LLM_TIMEOUT",
    "llm_max_retries": "LLM_MAX_RETRIES",
    "llm_rate_limit": "LLM_RATE_LIMIT",
    "llm_direct_streaming": "LLM_DIRECT_STREAMING",
    "embedding_model": "EMBEDDING_MODEL",
    "max_content_length": "MAX_CONTENT_LENGTH",
    "worker_threads": "RAGLINE_WORKER_THREADS",
    "compute_threads": "RAGLINE_COMPUTE_THREADS",
    "search_processes": "RAGLINE_SEARCH_PROCESSES",
    "search_embeds_questions": "RAGLINE_SEARCH_EMBEDS_QUESTIONS",
    "graceful_timeout": "RAGLINE_GRACEFUL_TIMEOUT",
    "event_loop": "RAGLINE_EVENT_LOOP",
    "log_level": "RAGLINE_LOG_LEVEL",
    "loop_lag_interval": "RAGLINE_LOOP_LAG_INTERVAL",
    "ingest_workers": "RAGLINE_INGEST_WORKERS",
    "ingest_documents_in_flight": "RAGLINE_INGEST_DOCUMENTS_IN_FLIGHT",
    "embed_processes": "RAGLINE_EMBED_PROCESSES",
    "parse_timeout": "RAGLINE_PARSE_TIMEOUT",
    "parse_memory_mb": "RAGLINE_PARSE_MEMORY_MB",
    "parse_max_expanded_mb": "RAGLINE_PARSE_MAX_EXPANDED_MB",
    "parse_max_xml_elements": "RAGLINE_PARSE_MAX_XML_ELEMENTS",
    "parse_max_package_entries": "RAGLINE_PARSE_MAX_PACKAGE_ENTRIES",
    "parse_max_rows": "RAGLINE_PARSE_MAX_ROWS",
    "parse_max_slides": "RAGLINE_PARSE_MAX_SLIDES",
    "parse_max_pages": "RAGLINE_PARSE_MAX_PAGES",
    "parse_max_ocr_pages": "RAGLINE_PARSE_MAX_OCR_PAGES",
    "parse_max_image_megapixels": "RAGLINE_PARSE_MAX_IMAGE_MEGAPIXELS",
    "parse_max_attachments": "RAGLINE_PARSE_MAX_ATTACHMENTS",
    "response_cache_ttl": "RAGLINE_RESPONSE_CACHE_TTL",
}

DATABASE_SCHEMES = ("sqlite", "mysql", "postgres", "postgresql")


class SettingsError(ValueError):
    """A setting has a value Ragline cannot run with; the message is one line for operators."""


def _check_model_name(value: str | None) -> str | None:
    if value is None:
        return None
    name, sep, factory = value.rpartition("@")
    if not sep or not name or not factory:
        raise ValueError(f"expected name@factory (e.g. gpt-4o-mini@OpenAI), got {value!r}")
    return value


class Settings(BaseModel):
    """Everything configurable about one Ragline process."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    host: str = "127.0.0.1"
    port: int = Field(9380, ge=1, le=65535)
    data_dir: Path = Path("./data")
    database_url: str | None = None
    doc_engine: Literal["sqlite", "elasticsearch"] = "sqlite"
    es_hosts: str | None = None
    llm_model: str | None = None
    llm_api_base: str | None = None
    openai_api_key: SecretStr | None = None
    ollama_base_url: str = "http://localhost:11434"
    llm_timeout: float = Field(60.0, gt=0)
    llm_max_retries: int = Field(2, ge=0, le=10)
    llm_rate_limit: int = Field(0, ge=0)
    llm_direct_streaming: bool = True
    embedding_model: str = "all-MiniLM-L6-v2@Builtin"
    max_content_length: int = Field(128 * 1024 * 1024, gt=0)
    worker_threads: int = Field(32, ge=1, le=512)
    compute_threads: int = Field(0, ge=0, le=256)  # 0: one per core
    search_processes: int = Field(-1, ge=-1, le=64)  # embedded index searches; -1: one per core, 0: in threads
    search_embeds_questions: bool = True  # a lone new question embedded by the search process (builtin model)
    graceful_timeout: float = Field(10.0, ge=0)
    event_loop: Literal["uvloop", "asyncio"] = "uvloop"  # the serving loop (api.server.new_event_loop)
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    loop_lag_interval: float = Field(0.1, gt=0, le=10)
    ingest_workers: int = Field(2, ge=0, le=64)
    ingest_documents_in_flight: int = Field(128, ge=1, le=4096)
    embed_processes: int = Field(-1, ge=-1, le=64)  # builtin embedding models; -1: one per core, 0: in threads
    # Per document, in the parse child processes (rag.svr.parse_processes): wall clock, address
    # space, what a ZIP-based file (.docx) may expand to (rag.app.parsers.package), and what one
    # document may hold (rag.app.parsers.limits.FormatLimits, whose defaults these repeat).
    parse_timeout: float = Field(300.0, gt=0)
    parse_memory_mb: int = Field(2048, ge=256)
    parse_max_expanded_mb: int = Field(256, ge=1)
    parse_max_xml_elements: int = Field(1_000_000, ge=1)
    parse_max_package_entries: int = Field(10_000, ge=1)
    parse_max_rows: int = Field(10_000, ge=1)  # spreadsheet / CSV rows, all sheets together
    parse_max_slides: int = Field(2_000, ge=1)
    parse_max_pages: int = Field(5_000, ge=1)  # PDF pages
    parse_max_ocr_pages: int = Field(200, ge=0)  # PDF pages without a text layer; 0: a PDF with one fails
    parse_max_image_megapixels: float = Field(50.0, gt=0)  # one image's (or rendered page's) pixels
    parse_max_attachments: int = Field(50, ge=0)  # an e-mail's attachments read; later ones are left out
    response_cache_ttl: float = Field(3600.0, ge=0)  # seconds a cached answer lives; 0: no response cache

    @field_validator("llm_model", "embedding_model")
    @classmethod
    def _model_names(cls, value: str | None) -> str | None:
        return _check_model_name(value)

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper_log_level(cls, value: Any) -> Any:
        return value.upper() if isinstance(value, str) else value

    @field_validator("database_url")
    @classmethod
    def _database_scheme(cls, value: str | None) -> str | None:
        if value is None:
            return None
        scheme = value.split("://", 1)[0].split("+", 1)[0]
        if "://" not in value or scheme not in DATABASE_SCHEMES:
            raise ValueError(f"expected a URL starting with one of {', '.join(s + '://' for s in DATABASE_SCHEMES)}")
        return value

    @model_validator(mode="after")
    def _es_needs_hosts(self) -> Settings:
        if self.doc_engine == "elasticsearch" and not self.es_hosts:
            raise ValueError("DOC_ENGINE=elasticsearch needs ES_HOSTS (comma-separated URLs)")
        return self

    @property
    def resolved_database_url(self) -> str:
        """The URL the metadata database opens: the configured one, else SQLite in data_dir."""
        return self.database_url or f"sqlite:///{(self.data_dir / 'ragline.db').resolve()}"

    @property
    def embedding_process_count(self) -> int:
        """Children computing builtin embedding models (0: they run in the process's threads)."""
        return self.embed_processes if self.embed_processes >= 0 else (os.cpu_count() or 1)

    @property
    def embed_parallelism(self) -> int:
        """Local-model calls computed at once, one core each: one per child, else one per core."""
        return self.embedding_process_count or (os.cpu_count() or 1)

    @property
    def es_host_list(self) -> list[str]:
        return [h.strip() for h in (self.es_hosts or "").split(",") if h.strip()]


def _read_yaml(path: Path) -> dict[str, Any]:
    with path.open(encoding="utf-8") as handle:
        loaded = yaml.safe_load(handle) or {}
    if not isinstance(loaded, dict):
        raise SettingsError(f"{path}: expected a mapping of setting names to values")
    return loaded


def _env_overrides(environ: Mapping[str, str]) -> dict[str, str | None]:
    """Environment values by field name; an empty string means "unset" (back to null)."""
    overrides: dict[str, str | None] = {}
    for field, env_name in ENV_NAMES.items():
        if env_name in environ:
            overrides[field] = environ[env_name] or None
    return overrides


def _describe(error: ValidationError, sources: Mapping[str, str]) -> str:
    first = error.errors()[0]
    field = str(first["loc"][0]) if first["loc"] else ""
    name = ENV_NAMES.get(field, field or "settings")
    origin = sources.get(field, "conf")
    shown = "" if field == "openai_api_key" or not first["loc"] else f"={first.get('input')!r}"
    message = first["msg"].removeprefix("Value error, ")
    return f"invalid setting {name}{shown} (from {origin}): {message}"


def load_settings(
    environ: Mapping[str, str] | None = None,
    conf_path: Path | None = None,
    **overrides: Any,
) -> Settings:
    """Build the settings: YAML defaults, then the environment, then explicit overrides.

    Raises ``SettingsError`` with one line naming the bad setting, so start-up can stop
    with exactly that line.
    """
    environ = os.environ if environ is None else environ
    values: dict[str, Any] = _read_yaml(conf_path or DEFAULT_CONF)
    unknown = sorted(set(values) - set(Settings.model_fields))
    if unknown:
        raise SettingsError(f"unknown setting(s) in {conf_path or DEFAULT_CONF}: {', '.join(unknown)}")
    sources = {field: "conf" for field in values}
    env_values = _env_overrides(environ)
    values.update(env_values)
    sources.update({field: "environment" for field in env_values})
    values.update(overrides)
    sources.update({field: "arguments" for field in overrides})
    try:
        return Settings.model_validate(values)
    except ValidationError as error:
        raise SettingsError(_describe(error, sources)) from None
