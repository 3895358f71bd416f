"""A dataset's automatic metadata settings (RAGFlow v0.27's ``auto_metadata_config``).

Stored as JSON text, null until a client sets it: what the dataset was created or updated
with is returned on the dataset object, and ``/datasets/{id}/metadata/config`` reads and
writes the same column.
"""

from peewee import TextField


def up(migrator, db):
    migrator.migrate(migrator.add_column("knowledgebase", "auto_metadata_config", TextField(null=True)))


def down(migrator, db):
    migrator.migrate(migrator.drop_column("knowledgebase", "auto_metadata_config"))
