"""Helpers the task-queue and worker tests share: fake embedding models, seeding, chunk counts."""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable

import numpy as np

from api.components import Components, build_components
from api.db.migrate import upgrade
from api.db.models import Document, Knowledgebase, Task
from api.db.services import document_service, knowledgebase_service, tenant_service
from api.settings import Settings
from rag.app.naive import parse_and_chunk
from rag.utils.doc_store_conn import chunk_id, index_name

DIM = 16
WORDS = ("alpha beta gamma delta ocean river mountain protein cell gene signal network model data "
         "light carbon market theory engine planet").split()


def fake_vectors(texts: list[str]) -> np.ndarray:
    """Unit vectors seeded by each text: deterministic, distinct, no model needed."""
    rows = []
    for text in texts:
        seed = int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "big")
        vector = np.random.default_rng(seed).standard_normal(DIM).astype(np.float32)
        rows.append(vector / np.linalg.norm(vector))
    return np.vstack(rows)


class FakeEmbedding:
    """A sync embedding model (like the builtin one); ``on_encode(call_number)`` hooks each call."""

    def __init__(self, on_encode: Callable[[int], None] | None = None) -> None:
        self.calls = 0
        self.on_encode = on_encode

    def encode(self, texts: list[str]) -> tuple[np.ndarray, int]:
        self.calls += 1
        if self.on_encode:
            self.on_encode(self.calls)
        return fake_vectors(texts), sum(len(t.split()) for t in texts)


class AsyncFakeEmbedding(FakeEmbedding):
    """The same model with an ``async def encode``, like the LiteLLM ones."""

    async def encode(self, texts: list[str]) -> tuple[np.ndarray, int]:  # type: ignore[override]
        return FakeEmbedding.encode(self, texts)


def prose(paragraphs: int, seed: int, words_per_sentence: int = 12) -> str:
    """Markdown of distinct random sentences: many chunks at a small ``chunk_token_num``."""
    rng = random.Random(seed)
    body = []
    for number in range(paragraphs):
        sentences = [" ".join(rng.choice(WORDS) for _ in range(words_per_sentence)) + f" {seed}x{number}."
                     for _ in range(3)]
        body.append(" ".join(sentences))
    return f"# Document {seed}\n\n" + "\n\n".join(body)


def migrated_parts(settings: Settings) -> Components:
    parts = build_components(settings)
    upgrade(parts.db)
    return parts


def seed_documents(parts: Components, files: dict[str, bytes], chunk_token_num: int = 32,
                   tenant: str = "acme") -> tuple[str, str, list[str]]:
    """A tenant, a dataset and its uploaded documents; returns (tenant_id, kb_id, doc_ids)."""
    def seed() -> tuple[str, str, list[str]]:
        tenant_id = tenant_service.get_or_create_tenant(tenant).id
        kb = knowledgebase_service.create(tenant_id, {
            "name": f"kb-{random.random()}", "embedding_model": "fake@Builtin",
            "parser_config": {"chunk_token_num": chunk_token_num},
        })
        uploads = [document_service.Upload(name, data) for name, data in files.items()]
        docs = document_service.upload(tenant_id, kb["id"], uploads, parts.storage)
        return tenant_id, kb["id"], [doc["id"] for doc in docs]

    return parts.db.call(seed)


def queue(parts: Components, tenant_id: str, kb_id: str, doc_ids: list[str]) -> None:
    parts.db.call(document_service.queue_parsing, tenant_id, kb_id, doc_ids)


def expected_chunk_ids(doc_id: str, name: str, data: bytes, chunk_token_num: int = 32) -> set[str]:
    return {chunk_id(doc_id, c.content) for c in parse_and_chunk(name, data, {"chunk_token_num": chunk_token_num})}


def stored_chunk_ids(parts: Components, tenant_id: str, kb_id: str, doc_id: str) -> list[str]:
    """Every chunk row of the document in the chunk store (a list: duplicates would show)."""
    store = parts.doc_store
    if not store.index_exist(index_name(tenant_id), kb_id):
        return []
    result = store.search(["id"], [], {"doc_id": doc_id}, [], None, 0, 100_000, [index_name(tenant_id)], [kb_id])
    return [row["id"] for row in result.rows]


def document(parts: Components, doc_id: str) -> Document:
    return parts.db.call(Document.get_by_id, doc_id)


def dataset(parts: Components, kb_id: str) -> Knowledgebase:
    return parts.db.call(Knowledgebase.get_by_id, kb_id)


def tasks_of(parts: Components, doc_id: str) -> list[Task]:
    return parts.db.call(lambda: list(Task.select().where(Task.doc_id == doc_id).order_by(Task.create_time)))
