"""Bring the metadata schema up to date with peewee's migration runner."""

from __future__ import annotations

from pathlib import Path

from playhouse.migrations import Runner

from api.db.database import MetaDB

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"


def upgrade(db: MetaDB) -> list[str]:
    """Apply every pending migration; returns the names applied (empty when up to date)."""
    with db.database.connection_context():
        return Runner(db.database, directory=str(MIGRATIONS_DIR)).up()


def pending(db: MetaDB) -> list[str]:
    with db.database.connection_context():
        return [m.name for m in Runner(db.database, directory=str(MIGRATIONS_DIR)).status() if not m.applied]
