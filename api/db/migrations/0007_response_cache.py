"""The response cache: answers of exact repeated model calls, per tenant, until they expire.

A frozen copy of the table as this migration creates it (later changes get migrations of their own).
"""

from peewee import BigIntegerField, CharField, FloatField, IntegerField, Model, TextField


def _model(db):
    class ResponseCache(Model):
        id = CharField(primary_key=True, max_length=32)
        create_time = BigIntegerField(index=True)
        update_time = BigIntegerField(index=True)
        tenant_id = CharField(max_length=32, index=True)
        key = CharField(max_length=64, unique=True)
        model = CharField(max_length=128)
        answer = TextField()
        prompt_tokens = IntegerField()
        completion_tokens = IntegerField()
        cost = FloatField(null=True)
        expires_time = BigIntegerField(index=True)
        hits = IntegerField()

        class Meta:
            database = db
            legacy_table_names = False

    return ResponseCache


def up(migrator, db):
    db.create_tables([_model(db)])


def down(migrator, db):
    db.drop_tables([_model(db)])
