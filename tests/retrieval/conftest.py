"""Doc-store fixtures: every contract test runs on SQLite, and on Elasticsearch when ES_HOSTS is set."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from rag.utils.doc_store import create_doc_store
from rag.utils.doc_store_conn import DocStoreConnection, index_name

ES_HOSTS = [h for h in os.environ.get("ES_HOSTS", "").split(",") if h]
BACKENDS = ["sqlite", pytest.param("elasticsearch", marks=pytest.mark.skipif(not ES_HOSTS, reason="ES_HOSTS unset"))]


@pytest.fixture(params=BACKENDS)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[DocStoreConnection]:
    built = create_doc_store(request.param, tmp_path, ES_HOSTS)
    yield built
    built.close()


@pytest.fixture
def tenant(store: DocStoreConnection) -> Iterator[str]:
    """A fresh tenant whose index is dropped afterwards (ES indexes outlive the test otherwise)."""
    tenant_id = uuid.uuid4().hex
    yield tenant_id
    store.delete_idx(index_name(tenant_id), "")
