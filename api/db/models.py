"""Peewee models for Ragline's metadata.

Models are declared unbound; ``api.db.database.open_database`` binds them to the database
chosen by the settings, so tests and CLI commands each bind their own. Every row carries its
``tenant_id`` so that tenant isolation is one ``where`` clause, never a join.

Times are integers of milliseconds since the epoch (``create_time``/``update_time``), the
shape RAGFlow clients read; RFC 1123 dates are derived from them when serialising.
"""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

from peewee import (
    BigIntegerField,
    BooleanField,
    CharField,
    Database,
    FloatField,
    IntegerField,
    Model,
    TextField,
)


def new_id() -> str:
    """A 32-char lowercase hex id (uuid4), the id format of the whole API."""
    return uuid.uuid4().hex


def now_ms() -> int:
    return int(time.time() * 1000)


class JSONField(TextField):
    """JSON stored as text: the same column type on SQLite, MySQL and PostgreSQL."""

    field_type = "TEXT"

    def db_value(self, value: Any) -> str | None:
        return None if value is None else json.dumps(value, ensure_ascii=False)

    def python_value(self, value: str | None) -> Any:
        return None if value is None else json.loads(value)


def bound_database(model: type[Model]) -> Database:
    """The database ``model`` is bound to, behind the models' proxy: where the backend decides
    the SQL (SQLite or a server database)."""
    database = model._meta.database
    return getattr(database, "obj", None) or database


class BaseModel(Model):
    id = CharField(primary_key=True, max_length=32, default=new_id)
    create_time = BigIntegerField(default=now_ms, index=True)
    update_time = BigIntegerField(default=now_ms, index=True)

    class Meta:
        legacy_table_names = False

    def save(self, *args: Any, **kwargs: Any) -> int:
        self.update_time = now_ms()
        return super().save(*args, **kwargs)


class Tenant(BaseModel):
    name = CharField(max_length=128, unique=True)
    api_line = CharField(max_length=8, null=True)  # migration 0006: the RAGFlow API line its client last showed


class ApiToken(BaseModel):
    """An API key, stored as its SHA-256 digest; ``prefix`` lets an operator recognise it."""

    tenant_id = CharField(max_length=32, index=True)
    token_hash = CharField(max_length=64, unique=True)
    prefix = CharField(max_length=16)
    name = CharField(max_length=128, default="")
    last_used_time = BigIntegerField(null=True)


class Knowledgebase(BaseModel):
    """A dataset. ``name_key`` is the lower-cased name: unique per tenant, ignoring case."""

    tenant_id = CharField(max_length=32, index=True)
    name = CharField(max_length=128)
    name_key = CharField(max_length=128)
    avatar = TextField(null=True)
    description = TextField(null=True)
    embd_id = CharField(max_length=128)
    permission = CharField(max_length=16, default="me")
    parser_id = CharField(max_length=32, default="naive")
    parser_config = JSONField(default=dict)
    doc_num = IntegerField(default=0)
    chunk_num = IntegerField(default=0)
    token_num = IntegerField(default=0)
    similarity_threshold = FloatField(default=0.2)
    vector_similarity_weight = FloatField(default=0.3)
    pagerank = IntegerField(default=0)
    auto_metadata_config = JSONField(null=True)  # migration 0003: RAGFlow v0.27's metadata extraction settings

    class Meta:
        indexes = ((("tenant_id", "name_key"), True),)


class File(BaseModel):
    """A stored upload; ``location`` is the generated storage key, never the user's name."""

    tenant_id = CharField(max_length=32, index=True)
    name = CharField(max_length=255)
    location = CharField(max_length=255)
    size = BigIntegerField(default=0)
    type = CharField(max_length=32, default="")


class Document(BaseModel):
    tenant_id = CharField(max_length=32, index=True)
    kb_id = CharField(max_length=32, index=True)
    file_id = CharField(max_length=32, null=True)
    name = CharField(max_length=255)
    type = CharField(max_length=32, default="")
    suffix = CharField(max_length=16, default="")
    size = BigIntegerField(default=0)
    location = CharField(max_length=255, default="")
    parser_id = CharField(max_length=32, default="naive")
    parser_config = JSONField(default=dict)
    meta_fields = JSONField(default=dict)
    run = CharField(max_length=16, default="UNSTART", index=True)
    progress = FloatField(default=0.0)
    progress_msg = TextField(default="")
    chunk_num = IntegerField(default=0)
    token_num = IntegerField(default=0)
    enabled = BooleanField(default=True)
    process_begin_at = BigIntegerField(null=True)
    process_duration = FloatField(default=0.0)

    class Meta:
        indexes = ((("kb_id", "create_time"), False),)  # migration 0002: pages in upload order


class Task(BaseModel):
    """One unit of background work; the table is the queue workers claim from."""

    tenant_id = CharField(max_length=32, index=True)
    kind = CharField(max_length=32, index=True)
    doc_id = CharField(max_length=32, null=True, index=True)
    status = CharField(max_length=16, default="queued", index=True)
    payload = JSONField(default=dict)
    result = JSONField(null=True)
    error = TextField(null=True)
    progress = FloatField(default=0.0)
    attempts = IntegerField(default=0)
    claimed_by = CharField(max_length=64, null=True)
    claimed_time = BigIntegerField(null=True)

    class Meta:
        indexes = ((("status", "create_time"), False),)  # migration 0002: claims walk the queue by age


class Dialog(BaseModel):
    """A chat assistant: its datasets, its model and its prompt settings."""

    tenant_id = CharField(max_length=32, index=True)
    name = CharField(max_length=255)
    avatar = TextField(null=True)
    description = TextField(null=True)
    kb_ids = JSONField(default=list)
    llm_id = CharField(max_length=128, null=True)
    llm_setting = JSONField(default=dict)
    prompt_config = JSONField(default=dict)
    similarity_threshold = FloatField(default=0.2)
    vector_similarity_weight = FloatField(default=0.3)
    top_n = IntegerField(default=6)
    top_k = IntegerField(default=1024)
    rerank_id = CharField(max_length=128, null=True)
    meta_data_filter = JSONField(null=True)  # migration 0004: RAGFlow v0.27's document filter of a chat


class Conversation(BaseModel):
    """A session of a chat assistant, or a free conversation of the gateway routes."""

    tenant_id = CharField(max_length=32, index=True)
    dialog_id = CharField(max_length=32, null=True, index=True)
    name = CharField(max_length=255, default="")
    user_id = CharField(max_length=255, null=True, index=True)
    system_prompt = TextField(null=True)
    client_id = CharField(max_length=64, null=True)  # migration 0005: the id a WebSocket client chose

    class Meta:
        indexes = ((("tenant_id", "client_id"), True),)  # one conversation per tenant and client id


class Message(BaseModel):
    """One turn of a conversation, a row of its own so no write rewrites the history.

    ``status`` says how an answer ended: ``complete``, ``interrupted`` (client gone) or
    ``error`` (the model failed), so a partial answer is kept with the reason it stopped.
    """

    tenant_id = CharField(max_length=32, index=True)
    conversation_id = CharField(max_length=32, index=True)
    seq = IntegerField()
    role = CharField(max_length=16)
    content = TextField(default="")
    reference = JSONField(null=True)
    status = CharField(max_length=16, default="complete")
    error = TextField(null=True)
    intent = CharField(max_length=64, null=True)  # migration 0009: the intent an answer was routed by
    intent_confidence = FloatField(null=True)  # migration 0009

    class Meta:
        indexes = ((("conversation_id", "seq"), True),)


class Usage(BaseModel):
    """One model call's accounting: tokens, cost (null when the price is unknown), timing."""

    tenant_id = CharField(max_length=32, index=True)
    model = CharField(max_length=128, index=True)
    kind = CharField(max_length=16, default="chat")
    dialog_id = CharField(max_length=32, null=True, index=True)
    conversation_id = CharField(max_length=32, null=True)
    message_id = CharField(max_length=32, null=True)
    prompt_tokens = IntegerField(default=0)
    completion_tokens = IntegerField(default=0)
    cost = FloatField(null=True)
    latency_ms = FloatField(null=True)
    ttft_ms = FloatField(null=True)
    retrieval_ms = FloatField(null=True)
    attempts = IntegerField(default=1)
    outcome = CharField(max_length=32, default="ok")
    arm = CharField(max_length=128, null=True, index=True)  # migration 0008: the A/B arm that served the call


class ResponseCache(BaseModel):
    """One cached answer (migration 0007): ``key`` hashes tenant, model, the whole prompt and the
    generation parameters, so only an exact repeat of a call finds it; the tenant is in the key and
    in the row, and every lookup filters on both."""

    tenant_id = CharField(max_length=32, index=True)
    key = CharField(max_length=64, unique=True)
    model = CharField(max_length=128)
    answer = TextField(default="")
    prompt_tokens = IntegerField(default=0)
    completion_tokens = IntegerField(default=0)
    cost = FloatField(null=True)  # what the original call cost
    expires_time = BigIntegerField(index=True)
    hits = IntegerField(default=0)


class IntentRoute(BaseModel):
    """One intent of a tenant's router (migration 0009): messages like ``examples`` (or, without
    examples, like ``description``) go to the chat assistant ``dialog_id``."""

    tenant_id = CharField(max_length=32, index=True)
    name = CharField(max_length=64)
    description = TextField(default="")
    examples = JSONField(default=list)
    dialog_id = CharField(max_length=32)

    class Meta:
        indexes = ((("tenant_id", "name"), True),)


class IntentSettings(BaseModel):
    """A tenant's router settings (migration 0009); absent values take the tuned defaults."""

    tenant_id = CharField(max_length=32, unique=True)
    fallback_dialog_id = CharField(max_length=32, null=True)
    accept = FloatField(null=True)
    margin = FloatField(null=True)
    classifier_model = CharField(max_length=128, null=True)


ALL_MODELS: list[type[BaseModel]] = [
    Tenant,
    ApiToken,
    Knowledgebase,
    File,
    Document,
    Task,
    Dialog,
    Conversation,
    Message,
    Usage,
    ResponseCache,
    IntentRoute,
    IntentSettings,
]
