"""Builds the configured chunk store: the one place that knows every backend by name."""

from __future__ import annotations

from pathlib import Path

from rag.utils.doc_store_conn import DocStoreConnection

ENGINES = ("sqlite", "elasticsearch")


def create_doc_store(engine: str, data_dir: Path, es_hosts: list[str] | None,
                     warm_postings: bool = False) -> DocStoreConnection:
    """``sqlite`` keeps one database per tenant under ``data_dir/index``; ``elasticsearch``
    needs ``es_hosts``. Backends are imported lazily so the default never loads the ES client.
    ``warm_postings``: the embedded store reads quiet indexes' term postings ahead (for search
    processes; ``rag.utils.postings_warmup``)."""
    name = (engine or "sqlite").lower()
    if name == "sqlite":
        from rag.utils.sqlite_conn import SqliteConnection

        return SqliteConnection(Path(data_dir) / "index", warm_postings=warm_postings)
    if name in ("elasticsearch", "es"):
        if not es_hosts:
            raise ValueError("DOC_ENGINE=elasticsearch needs ES_HOSTS")
        from rag.utils.es_conn import ESConnection

        return ESConnection(list(es_hosts))
    raise ValueError(f"Unknown doc engine {engine!r}; expected one of {', '.join(ENGINES)}")
