"""POST /api/v1/retrieval with ``metadata_condition``: only matching documents' chunks, nothing
when nothing matches, the intersection with ``document_ids``; and the body ragflow-sdk 0.27
sends (nulls for what it leaves at default)."""

from __future__ import annotations

import pytest

from api.db.models import Knowledgebase
from api.db.services.metadata_service import matching_document_ids
from tests.api.test_chunks_api import add, retrieve
from tests.api.test_documents_api import make_dataset, upload

pytestmark = pytest.mark.usefixtures("app")

QUESTION = "who lived in which period of Chinese history"


@pytest.fixture
async def kingdoms(client, auth) -> dict[str, str]:
    """Two documents with different metadata, one chunk each, both relevant to QUESTION."""
    dataset_id = await make_dataset(client, auth, "kingdoms")
    files = [("zhuge.txt", b"placeholder"), ("cao.txt", b"placeholder")]
    docs = (await (await upload(client, auth, dataset_id, *files)).get_json())["data"]
    ids = {"dataset": dataset_id, "zhuge": docs[0]["id"], "cao": docs[1]["id"]}
    for role, meta, text in (
        ("zhuge", {"character": "Zhuge Liang", "era": "Three Kingdoms", "year": "181"},
         "Zhuge Liang lived in the Three Kingdoms period of Chinese history."),
        ("cao", {"character": "Cao Cao", "era": "Late Eastern Han", "year": "155"},
         "Cao Cao lived in the Late Eastern Han period of Chinese history."),
    ):
        changed = await (await client.put(f"/api/v1/datasets/{dataset_id}/documents/{ids[role]}", headers=auth,
                                          json={"meta_fields": meta})).get_json()
        assert changed["code"] == 0, changed
        added = await add(client, auth, dataset_id, ids[role], text)
        assert added["code"] == 0, added
    return ids


def condition(*rules: tuple, logic: str = "and") -> dict:
    return {"logic": logic, "conditions": [{"name": n, "comparison_operator": op, "value": v} for n, op, v in rules]}


def documents_of(reply: dict) -> set[str]:
    assert reply["code"] == 0, reply
    return {chunk["document_id"] for chunk in reply["data"]["chunks"]}


async def test_without_a_condition_both_documents_answer(client, auth, kingdoms) -> None:
    reply = await retrieve(client, auth, [kingdoms["dataset"]], QUESTION, similarity_threshold=0)
    assert documents_of(reply) == {kingdoms["zhuge"], kingdoms["cao"]}


@pytest.mark.parametrize("rules, logic, expected", [
    ([("character", "is", "Zhuge Liang")], "and", {"zhuge"}),
    ([("era", "contains", "han")], "and", {"cao"}),
    ([("year", ">", "160")], "and", {"zhuge"}),
    ([("character", "not is", "Cao Cao"), ("era", "start with", "three")], "and", {"zhuge"}),
    ([("character", "is", "Cao Cao"), ("year", "≥", "181")], "or", {"zhuge", "cao"}),
    ([("era", "not empty", None)], "and", {"zhuge", "cao"}),
])
async def test_only_matching_documents_answer(client, auth, kingdoms, rules, logic, expected) -> None:
    reply = await retrieve(client, auth, [kingdoms["dataset"]], QUESTION, similarity_threshold=0,
                           metadata_condition=condition(*rules, logic=logic))
    assert documents_of(reply) == {kingdoms[role] for role in expected}


async def test_no_matching_document_means_no_chunks_not_no_filter(client, auth, kingdoms) -> None:
    reply = await retrieve(client, auth, [kingdoms["dataset"]], QUESTION, similarity_threshold=0,
                           metadata_condition=condition(("character", "is", "Liu Bei")))
    assert reply["code"] == 0 and reply["data"]["chunks"] == [] and reply["data"]["total"] == 0
    missing_field = await retrieve(client, auth, [kingdoms["dataset"]], QUESTION, similarity_threshold=0,
                                   metadata_condition=condition(("dynasty", "not is", "Han")))
    assert missing_field["data"]["chunks"] == []


async def test_document_ids_and_condition_intersect(client, auth, kingdoms) -> None:
    both = [kingdoms["zhuge"], kingdoms["cao"]]
    reply = await retrieve(client, auth, [kingdoms["dataset"]], QUESTION, similarity_threshold=0,
                           document_ids=both, metadata_condition=condition(("era", "contains", "han")))
    assert documents_of(reply) == {kingdoms["cao"]}
    disjoint = await retrieve(client, auth, [kingdoms["dataset"]], QUESTION, similarity_threshold=0,
                              document_ids=[kingdoms["cao"]],
                              metadata_condition=condition(("character", "is", "Zhuge Liang")))
    assert disjoint["code"] == 0 and disjoint["data"]["chunks"] == []


async def test_the_body_ragflow_sdk_027_sends(client, auth, kingdoms) -> None:
    body = {"page": 1, "page_size": 30, "similarity_threshold": 0, "vector_similarity_weight": 0.3, "top_k": 1024,
            "rerank_id": None, "keyword": False, "question": QUESTION, "dataset_ids": [kingdoms["dataset"]],
            "document_ids": [], "cross_languages": None, "metadata_condition": None, "use_kg": False,
            "toc_enhance": False}
    reply = await (await client.post("/api/v1/retrieval", headers=auth, json=body)).get_json()
    assert documents_of(reply) == {kingdoms["zhuge"], kingdoms["cao"]}
    filtered = {**body, "metadata_condition": condition(("character", "=", "cao cao")), "page": "1",
                "highlight": "False", "vector_similarity_weight": 10, "cross_languages": ["French"]}
    reply = await (await client.post("/api/v1/retrieval", headers=auth, json=filtered)).get_json()
    assert documents_of(reply) == {kingdoms["cao"]}
    assert all("highlight" not in chunk for chunk in reply["data"]["chunks"])


async def test_matching_document_ids_is_scoped_to_the_tenant_and_datasets(client, auth, make_key, kingdoms,
                                                                          parts) -> None:
    tenant_id = parts.db.call(lambda: Knowledgebase.get_by_id(kingdoms["dataset"]).tenant_id)
    rule = condition(("character", "contains", "a"))
    found = parts.db.call(lambda: matching_document_ids(tenant_id, [kingdoms["dataset"]], rule))
    assert sorted(found) == sorted([kingdoms["zhuge"], kingdoms["cao"]])
    assert parts.db.call(lambda: matching_document_ids("someone-else", [kingdoms["dataset"]], rule)) == []
    assert parts.db.call(lambda: matching_document_ids(tenant_id, [], rule)) == []
