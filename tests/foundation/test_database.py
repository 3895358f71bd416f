"""The metadata database on every backend: migrations, keys, bootstrap."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from api.db.database import MetaDB
from api.db.migrate import pending, upgrade
from api.db.models import ApiToken, Knowledgebase, Tenant
from api.db.services import tenant_service

MIGRATIONS_DIR = Path(__file__).resolve().parents[2] / "api" / "db" / "migrations"


def test_migrations_apply_once_and_record_themselves(fresh_database_url: Callable[[str], str], db_backend: str) -> None:
    db = MetaDB(fresh_database_url(db_backend), max_connections=4)
    try:
        every = sorted(path.stem for path in MIGRATIONS_DIR.glob("[0-9][0-9][0-9][0-9]_*.py"))
        assert every[:2] == ["0001_initial", "0002_queue_and_listing_indexes"]
        assert [int(name[:4]) for name in every] == list(range(1, len(every) + 1))  # numbered without gaps
        assert pending(db) == every
        assert upgrade(db) == every
        assert upgrade(db) == []
        assert pending(db) == []
        tables = set(db.call(db.database.get_tables))
        assert {"tenant", "api_token", "knowledgebase", "document", "file", "task", "dialog",
                "conversation", "message", "usage", "response_cache"} <= tables
    finally:
        db.close()


def test_keys_are_stored_hashed_and_resolve_to_their_tenant(
    fresh_database_url: Callable[[str], str], db_backend: str
) -> None:
    db = MetaDB(fresh_database_url(db_backend), max_connections=4)
    try:
        upgrade(db)
        first = db.call(tenant_service.create_key_for, "acme")
        second = db.call(tenant_service.create_key_for, "acme")
        other = db.call(tenant_service.create_key_for, "globex")
        assert first.tenant_id == second.tenant_id != other.tenant_id
        assert db.call(tenant_service.tenant_for_key, first.key) == first.tenant_id
        assert db.call(tenant_service.tenant_for_key, other.key) == other.tenant_id
        assert db.call(tenant_service.tenant_for_key, first.key + "x") is None
        assert db.call(tenant_service.tenant_for_key, "") is None
        stored = db.call(lambda: [t.token_hash for t in ApiToken.select()])
        assert first.key not in stored and tenant_service.hash_key(first.key) in stored
    finally:
        db.close()


def test_bootstrap_creates_one_default_tenant_only_on_an_empty_database(
    fresh_database_url: Callable[[str], str], db_backend: str
) -> None:
    db = MetaDB(fresh_database_url(db_backend), max_connections=4)
    try:
        upgrade(db)
        issued = db.call(tenant_service.bootstrap_default_tenant)
        assert issued is not None and issued.tenant_name == "default"
        assert db.call(tenant_service.tenant_for_key, issued.key) == issued.tenant_id
        assert db.call(tenant_service.bootstrap_default_tenant) is None
        assert db.call(Tenant.select().count) == 1
    finally:
        db.close()


def test_dataset_names_are_unique_per_tenant_ignoring_case_at_the_database(
    fresh_database_url: Callable[[str], str], db_backend: str
) -> None:
    from api.db.services import knowledgebase_service
    from api.errors import ApiError

    db = MetaDB(fresh_database_url(db_backend), max_connections=4)
    try:
        upgrade(db)
        acme = db.call(tenant_service.create_key_for, "acme").tenant_id
        globex = db.call(tenant_service.create_key_for, "globex").tenant_id
        fields = {"name": "Papers", "embedding_model": "all-MiniLM-L6-v2@Builtin"}
        db.call(knowledgebase_service.create, acme, fields)
        db.call(knowledgebase_service.create, globex, fields)
        try:
            db.call(knowledgebase_service.create, acme, {**fields, "name": "PAPERS"})
            raise AssertionError("a duplicate name was accepted")
        except ApiError as error:
            assert error.code == 102
        assert db.call(Knowledgebase.select().count) == 2
    finally:
        db.close()
