"""The RAGFlow API line (``0.22``/``0.27``) a tenant's client last showed, kept across restarts
so a ragflow-sdk 0.27 client's first list after a restart gets the shape it parses."""

from peewee import CharField


def up(migrator, db):
    migrator.migrate(migrator.add_column("tenant", "api_line", CharField(max_length=8, null=True)))


def down(migrator, db):
    migrator.migrate(migrator.drop_column("tenant", "api_line"))
