"""A chat assistant's metadata filter (RAGFlow v0.27's ``meta_data_filter``).

Stored as JSON text, null when the chat has none: retrieval for the chat's answers is then
restricted to the documents whose metadata match it.
"""

from peewee import TextField


def up(migrator, db):
    migrator.migrate(migrator.add_column("dialog", "meta_data_filter", TextField(null=True)))


def down(migrator, db):
    migrator.migrate(migrator.drop_column("dialog", "meta_data_filter"))
