"""The initial schema: every table Ragline starts with.

A frozen copy of the models as they stood when this migration was written, deliberately
independent of ``api/db/models.py``: later changes to the models come with migrations of
their own, and this one must keep producing the same tables forever.
"""

from peewee import BigIntegerField, BooleanField, CharField, FloatField, IntegerField, Model, TextField


def _models(db):
    class Base(Model):
        id = CharField(primary_key=True, max_length=32)
        create_time = BigIntegerField(index=True)
        update_time = BigIntegerField(index=True)

        class Meta:
            database = db
            legacy_table_names = False

    class Tenant(Base):
        name = CharField(max_length=128, unique=True)

    class ApiToken(Base):
        tenant_id = CharField(max_length=32, index=True)
        token_hash = CharField(max_length=64, unique=True)
        prefix = CharField(max_length=16)
        name = CharField(max_length=128)
        last_used_time = BigIntegerField(null=True)

    class Knowledgebase(Base):
        tenant_id = CharField(max_length=32, index=True)
        name = CharField(max_length=128)
        name_key = CharField(max_length=128)
        avatar = TextField(null=True)
        description = TextField(null=True)
        embd_id = CharField(max_length=128)
        permission = CharField(max_length=16)
        parser_id = CharField(max_length=32)
        parser_config = TextField()
        doc_num = IntegerField()
        chunk_num = IntegerField()
        token_num = IntegerField()
        similarity_threshold = FloatField()
        vector_similarity_weight = FloatField()
        pagerank = IntegerField()

        class Meta:
            indexes = ((("tenant_id", "name_key"), True),)

    class File(Base):
        tenant_id = CharField(max_length=32, index=True)
        name = CharField(max_length=255)
        location = CharField(max_length=255)
        size = BigIntegerField()
        type = CharField(max_length=32)

    class Document(Base):
        tenant_id = CharField(max_length=32, index=True)
        kb_id = CharField(max_length=32, index=True)
        file_id = CharField(max_length=32, null=True)
        name = CharField(max_length=255)
        type = CharField(max_length=32)
        suffix = CharField(max_length=16)
        size = BigIntegerField()
        location = CharField(max_length=255)
        parser_id = CharField(max_length=32)
        parser_config = TextField()
        meta_fields = TextField()
        run = CharField(max_length=16, index=True)
        progress = FloatField()
        progress_msg = TextField()
        chunk_num = IntegerField()
        token_num = IntegerField()
        enabled = BooleanField()
        process_begin_at = BigIntegerField(null=True)
        process_duration = FloatField()

    class Task(Base):
        tenant_id = CharField(max_length=32, index=True)
        kind = CharField(max_length=32, index=True)
        doc_id = CharField(max_length=32, null=True, index=True)
        status = CharField(max_length=16, index=True)
        payload = TextField()
        result = TextField(null=True)
        error = TextField(null=True)
        progress = FloatField()
        attempts = IntegerField()
        claimed_by = CharField(max_length=64, null=True)
        claimed_time = BigIntegerField(null=True)

    class Dialog(Base):
        tenant_id = CharField(max_length=32, index=True)
        name = CharField(max_length=255)
        avatar = TextField(null=True)
        description = TextField(null=True)
        kb_ids = TextField()
        llm_id = CharField(max_length=128, null=True)
        llm_setting = TextField()
        prompt_config = TextField()
        similarity_threshold = FloatField()
        vector_similarity_weight = FloatField()
        top_n = IntegerField()
        top_k = IntegerField()
        rerank_id = CharField(max_length=128, null=True)

    class Conversation(Base):
        tenant_id = CharField(max_length=32, index=True)
        dialog_id = CharField(max_length=32, null=True, index=True)
        name = CharField(max_length=255)
        user_id = CharField(max_length=255, null=True, index=True)
        system_prompt = TextField(null=True)

    class Message(Base):
        tenant_id = CharField(max_length=32, index=True)
        conversation_id = CharField(max_length=32, index=True)
        seq = IntegerField()
        role = CharField(max_length=16)
        content = TextField()
        reference = TextField(null=True)
        status = CharField(max_length=16)
        error = TextField(null=True)

        class Meta:
            indexes = ((("conversation_id", "seq"), True),)

    class Usage(Base):
        tenant_id = CharField(max_length=32, index=True)
        model = CharField(max_length=128, index=True)
        kind = CharField(max_length=16)
        dialog_id = CharField(max_length=32, null=True, index=True)
        conversation_id = CharField(max_length=32, null=True)
        message_id = CharField(max_length=32, null=True)
        prompt_tokens = IntegerField()
        completion_tokens = IntegerField()
        cost = FloatField(null=True)
        latency_ms = FloatField(null=True)
        ttft_ms = FloatField(null=True)
        retrieval_ms = FloatField(null=True)
        attempts = IntegerField()
        outcome = CharField(max_length=32)

    return [Tenant, ApiToken, Knowledgebase, File, Document, Task, Dialog, Conversation, Message, Usage]


def up(migrator, db):
    db.create_tables(_models(db))


def down(migrator, db):
    db.drop_tables(_models(db))
