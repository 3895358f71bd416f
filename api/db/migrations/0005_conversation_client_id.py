"""Conversations a client names itself (the WebSocket contract: ``"conversation_id": "c1"``).

The client's id is kept beside the generated primary key, unique per tenant, so two tenants may
both use "c1" and still hold two separate conversations.
"""

from peewee import CharField
from playhouse.migrate import make_index_name

COLUMNS = ("tenant_id", "client_id")


def up(migrator, db):
    migrator.migrate(
        migrator.add_column("conversation", "client_id", CharField(max_length=64, null=True)),
        migrator.add_index("conversation", COLUMNS, True),
    )


def down(migrator, db):
    migrator.migrate(
        migrator.drop_index("conversation", make_index_name("conversation", COLUMNS)),
        migrator.drop_column("conversation", "client_id"),
    )
