"""The ``ragline`` command: serve, keys, database upgrades.

A bad setting ends any command with exit status 2 and one line naming it, before anything
is opened or started.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from api.settings import Settings, SettingsError, load_settings


def _settings_or_exit() -> Settings:
    try:
        return load_settings()
    except SettingsError as error:
        print(f"ragline: {error}", file=sys.stderr)
        raise SystemExit(2) from None


def cmd_serve(_: argparse.Namespace) -> int:
    settings = _settings_or_exit()
    from api.observability import configure_logging
    from api.server import run

    configure_logging(settings.log_level)
    run(settings)
    return 0


def _migrated_database(settings: Settings):
    """The metadata database, brought up to date; returns it and the migrations applied."""
    from api.db.database import MetaDB
    from api.db.migrate import upgrade

    settings.data_dir.mkdir(parents=True, exist_ok=True)
    db = MetaDB(settings.resolved_database_url, max_connections=2)
    return db, upgrade(db)


def cmd_token_create(args: argparse.Namespace) -> int:
    from api.db.services import tenant_service

    db, _ = _migrated_database(_settings_or_exit())
    try:
        issued = db.call(tenant_service.create_key_for, args.tenant, args.name)
    finally:
        db.close()
    print(f"tenant {issued.tenant_name} ({issued.tenant_id}): new API key, shown once:")
    print(issued.key)
    return 0


def cmd_db_upgrade(_: argparse.Namespace) -> int:
    db, applied = _migrated_database(_settings_or_exit())
    db.close()
    print("applied: " + ", ".join(applied) if applied else "database is up to date")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ragline", description="Ragline, a self-hosted async RAG server.")
    commands = parser.add_subparsers(dest="command", required=True)

    commands.add_parser("serve", help="serve the HTTP API (settings from conf/ and the environment)").set_defaults(
        handler=cmd_serve
    )

    token = commands.add_parser("token", help="API keys").add_subparsers(dest="token_command", required=True)
    create = token.add_parser("create", help="create a key for a tenant (created if needed); prints the key last")
    create.add_argument("--tenant", required=True, help="tenant name")
    create.add_argument("--name", default="", help="a label for the key")
    create.set_defaults(handler=cmd_token_create)

    db = commands.add_parser("db", help="metadata database").add_subparsers(dest="db_command", required=True)
    db.add_parser("upgrade", help="apply pending schema migrations").set_defaults(handler=cmd_db_upgrade)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.handler(args)
