"""Intent routing: each tenant's routes (intent → chat assistant), its router settings, and the
intent and confidence an answer was routed by, kept on its message.

Frozen copies of the tables as this migration creates them.
"""

from peewee import BigIntegerField, CharField, FloatField, Model, TextField


def _models(db):
    class Base(Model):
        id = CharField(primary_key=True, max_length=32)
        create_time = BigIntegerField(index=True)
        update_time = BigIntegerField(index=True)

        class Meta:
            database = db
            legacy_table_names = False

    class IntentRoute(Base):
        tenant_id = CharField(max_length=32, index=True)
        name = CharField(max_length=64)
        description = TextField()
        examples = TextField()
        dialog_id = CharField(max_length=32)

        class Meta:
            indexes = ((("tenant_id", "name"), True),)

    class IntentSettings(Base):
        tenant_id = CharField(max_length=32, unique=True)
        fallback_dialog_id = CharField(max_length=32, null=True)
        accept = FloatField(null=True)
        margin = FloatField(null=True)
        classifier_model = CharField(max_length=128, null=True)

    return [IntentRoute, IntentSettings]


def up(migrator, db):
    db.create_tables(_models(db))
    migrator.migrate(
        migrator.add_column("message", "intent", CharField(max_length=64, null=True)),
        migrator.add_column("message", "intent_confidence", FloatField(null=True)),
    )


def down(migrator, db):
    migrator.migrate(migrator.drop_column("message", "intent_confidence"), migrator.drop_column("message", "intent"))
    db.drop_tables(_models(db))
