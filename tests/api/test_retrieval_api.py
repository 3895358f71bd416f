"""POST /api/v1/retrieval through the test client: validation, ownership, hostile questions,
tenant isolation, the fusion weight and the similarity threshold."""

from __future__ import annotations

import pytest

from tests.api.test_chunks_api import add, new_document, retrieve
from tests.api.test_documents_api import make_dataset

pytestmark = pytest.mark.usefixtures("app")

# The lexical chunk carries the question's rare word but means something else; the semantic chunk
# means what the question asks but shares none of its words.
LEXICAL = "The warehouse spreadsheet lists item code feline next to pallets of copper wire."
SEMANTIC = "Cats purr, nap in sunny spots and chase mice around the house."
OTHER = "Volcanic eruptions release ash and sulphur dioxide into the stratosphere."
QUESTION = "feline animal behaviour"


@pytest.fixture
async def corpus(client, auth) -> dict[str, str]:
    """A dataset with three hand-added chunks; returns the ids by role."""
    dataset_id, doc_id = await new_document(client, auth, "retrieval")
    ids = {"dataset": dataset_id, "doc": doc_id}
    for role, text in (("lexical", LEXICAL), ("semantic", SEMANTIC), ("other", OTHER)):
        ids[role] = (await add(client, auth, dataset_id, doc_id, text))["data"]["chunk"]["id"]
    return ids


# RAGFlow's own checks: 102 with its messages (its clients and tests compare them).
RAGFLOW_REFUSALS = [
    ({"question": "cats"}, "`dataset_ids` is required."),
    ({"dataset_ids": [], "question": "cats"}, "`dataset_ids` is required."),
    ({"dataset_ids": "notalist", "question": "cats"}, "`dataset_ids` should be a list"),
    ({"dataset_ids": ["x"]}, "`question` is required."),
    ({"dataset_ids": ["x"], "question": "cats", "document_ids": "x"}, "`documents` should be a list"),
    ({"dataset_ids": ["x"], "question": "cats", "highlight": "maybe"}, "`highlight` should be a boolean"),
]

INVALID_BODIES = [
    {"dataset_ids": ["x"], "question": "cats", "similarity_threshold": 2},
    {"dataset_ids": ["x"], "question": "cats", "page": 0},
    {"dataset_ids": ["x"], "question": "cats", "page": "a"},
    {"dataset_ids": ["x"], "question": "q" * 10_001},
    {"dataset_ids": ["x"], "question": "cats", "metadata_condition": {"conditions": [
        {"name": "a", "comparison_operator": "resembles", "value": "b"}]}},
]


# Search-engine syntax (FTS5 and Lucene) that a question must never be able to inject.
HOSTILE_QUESTIONS = [
    '"unbalanced quote', '"cats purr"', "(cats OR mice", "cats)) AND ((", "cats AND", "NEAR(cats mice)",
    "cats NEAR mice", "cat*", "*", "-cats", "^cats", "cats:purr", "content_ltks:cats", "🐈 cats 😺",
    "🐈‍⬛", "'; DROP TABLE task; --", "\\", "NOT", "a" * 10_000, ("cats purr " * 1000)[:10_000],
]


async def test_invalid_requests_are_101(client, auth) -> None:
    for body in INVALID_BODIES:
        reply = await (await client.post("/api/v1/retrieval", headers=auth, json=body)).get_json()
        assert reply["code"] == 101 and reply["message"], body


async def test_ragflow_refusals_are_102_with_its_messages(client, auth) -> None:
    for body, message in RAGFLOW_REFUSALS:
        reply = await (await client.post("/api/v1/retrieval", headers=auth, json=body)).get_json()
        assert (reply["code"], reply["message"]) == (102, message), body


async def test_top_k_must_be_positive_with_each_lines_code(client, auth) -> None:
    body = {"dataset_ids": ["x"], "question": "cats", "top_k": 0}
    v022 = await (await client.post("/api/v1/retrieval", headers=auth, json=body)).get_json()
    assert (v022["code"], v022["message"]) == (100, "`top_k` must be greater than 0")
    v027 = await (await client.post("/api/v1/retrieval", headers={**auth, "X-RAGFlow-API": "0.27"},
                                    json=body)).get_json()
    assert (v027["code"], v027["message"]) == (102, "`top_k` must be greater than 0")


async def test_not_json_is_101(client, auth) -> None:
    response = await client.post("/api/v1/retrieval", headers={**auth, "Content-Type": "application/json"},
                                 data=b"{not json")
    assert response.status_code == 200 and (await response.get_json())["code"] == 101


async def test_unknown_or_foreign_dataset_is_102(client, auth, make_key, corpus) -> None:
    assert (await retrieve(client, auth, ["0" * 32], "cats"))["code"] == 102
    mixed = await retrieve(client, auth, [corpus["dataset"], "0" * 32], "cats")
    assert mixed["code"] == 102 and "0" * 32 in mixed["message"]
    other = {"Authorization": f"Bearer {make_key('globex')}"}
    assert (await retrieve(client, other, [corpus["dataset"]], "cats"))["code"] == 102


async def test_datasets_with_different_embedding_models_are_102(client, auth, corpus) -> None:
    created = await (await client.post("/api/v1/datasets", headers=auth, json={
        "name": "openai-embedded", "embedding_model": "text-embedding-3-small@OpenAI"})).get_json()
    assert created["code"] == 0
    reply = await retrieve(client, auth, [corpus["dataset"], created["data"]["id"]], "cats")
    assert reply["code"] == 102 and "embedding model" in reply["message"]


async def test_search_syntax_in_questions_is_harmless(client, auth, corpus) -> None:
    for question in HOSTILE_QUESTIONS:
        reply = await retrieve(client, auth, [corpus["dataset"]], question)
        assert reply["code"] == 0, (question[:40], reply)
        assert reply["data"]["total"] >= len(reply["data"]["chunks"])
    purring = await retrieve(client, auth, [corpus["dataset"]], '"cats purr" (mice) 🐈')
    assert purring["data"]["chunks"][0]["id"] == corpus["semantic"]


async def test_a_quoted_phrase_still_finds_its_chunk(client, auth, corpus) -> None:
    reply = await retrieve(client, auth, [corpus["dataset"]], '"sulphur dioxide" AND (ash)')
    assert reply["data"]["chunks"][0]["id"] == corpus["other"]


async def test_tenant_b_chunks_are_never_returned(client, auth, make_key, corpus) -> None:
    other = {"Authorization": f"Bearer {make_key('globex')}"}
    b_dataset, b_doc = await new_document(client, other, "globex")
    b_chunk = (await add(client, other, b_dataset, b_doc, "Cats purr, nap and chase mice: globex secret."))
    b_chunk_id = b_chunk["data"]["chunk"]["id"]

    own = await retrieve(client, auth, [corpus["dataset"]], "cats purr nap chase mice globex secret",
                         similarity_threshold=0)
    returned = {c["id"] for c in own["data"]["chunks"]}
    assert own["code"] == 0 and corpus["semantic"] in returned and b_chunk_id not in returned
    guessed_dataset = await retrieve(client, auth, [corpus["dataset"], b_dataset], "globex secret")
    assert guessed_dataset["code"] == 102 and "globex secret" not in str(guessed_dataset)
    guessed_doc = await retrieve(client, auth, [corpus["dataset"]], "globex secret", document_ids=[b_doc])
    assert guessed_doc["code"] == 102
    theirs = await retrieve(client, other, [b_dataset], "cats purr nap chase mice", similarity_threshold=0)
    assert {c["id"] for c in theirs["data"]["chunks"]} == {b_chunk_id}


async def test_vector_weight_moves_the_ranking(client, auth, corpus) -> None:
    terms_only = await retrieve(client, auth, [corpus["dataset"]], QUESTION, vector_similarity_weight=0,
                                similarity_threshold=0)
    vectors_only = await retrieve(client, auth, [corpus["dataset"]], QUESTION, vector_similarity_weight=1,
                                  similarity_threshold=0)
    by_terms, by_vectors = terms_only["data"]["chunks"], vectors_only["data"]["chunks"]
    assert by_terms[0]["id"] == corpus["lexical"]
    assert by_vectors[0]["id"] == corpus["semantic"]
    assert all(c["similarity"] == pytest.approx(c["term_similarity"]) for c in by_terms)
    assert all(c["similarity"] == pytest.approx(c["vector_similarity"]) for c in by_vectors)
    semantic_by_terms = [c for c in by_terms if c["id"] == corpus["semantic"]]
    assert not semantic_by_terms or semantic_by_terms[0]["term_similarity"] == 0


async def test_similarity_threshold_filters(client, auth, corpus) -> None:
    everything = await retrieve(client, auth, [corpus["dataset"]], QUESTION, similarity_threshold=0)
    scores = {c["id"]: c["similarity"] for c in everything["data"]["chunks"]}
    assert set(scores) >= {corpus["lexical"], corpus["semantic"]}
    assert list(scores.values()) == sorted(scores.values(), reverse=True)
    cut = (min(scores.values()) + max(scores.values())) / 2  # between the scores, however many there are
    above = await retrieve(client, auth, [corpus["dataset"]], QUESTION, similarity_threshold=cut)
    kept = {c["id"] for c in above["data"]["chunks"]}
    assert kept == {cid for cid, score in scores.items() if score >= cut} and 0 < len(kept) < len(scores)
    assert above["data"]["total"] == len(kept)
    none = await retrieve(client, auth, [corpus["dataset"]], QUESTION, similarity_threshold=1)
    assert none["code"] == 0 and none["data"]["chunks"] == [] and none["data"]["doc_aggs"] == []


async def test_paging_and_doc_aggs(client, auth, corpus) -> None:
    first = await retrieve(client, auth, [corpus["dataset"]], QUESTION, similarity_threshold=0, page_size=1)
    second = await retrieve(client, auth, [corpus["dataset"]], QUESTION, similarity_threshold=0, page_size=1,
                            page=2)
    assert len(first["data"]["chunks"]) == len(second["data"]["chunks"]) == 1
    assert first["data"]["chunks"][0]["id"] != second["data"]["chunks"][0]["id"]
    assert first["data"]["total"] == second["data"]["total"] >= 2
    assert first["data"]["doc_aggs"][0]["doc_id"] == corpus["doc"]


async def test_empty_dataset_answers_nothing(client, auth) -> None:
    dataset_id = await make_dataset(client, auth, "empty")
    reply = await retrieve(client, auth, [dataset_id], "anything at all")
    assert reply["code"] == 0 and reply["data"] == {"total": 0, "chunks": [], "doc_aggs": []}


async def test_a_failing_model_is_an_error_envelope_not_a_500(client, auth, corpus) -> None:
    response = await client.post("/api/v1/retrieval", headers=auth, json={
        "dataset_ids": [corpus["dataset"]], "question": "cats", "rerank_id": "no-such-reranker@NoSuchFactory"})
    assert response.status_code == 200
    reply = await response.get_json()
    assert reply["code"] == 103 and "NoSuchFactory" in reply["message"]



async def test_a_retrieval_crosses_to_the_database_thread_once(client, auth, corpus, parts, monkeypatch) -> None:
    """The dataset check and the document filter share one trip to the worker pool: each trip is
    a wake-up of a thread and of the loop, on every question."""
    run = parts.db.run
    trips: list[str] = []

    async def counted(fn, *args, **kwargs):
        trips.append(getattr(fn, "__name__", repr(fn)))
        return await run(fn, *args, **kwargs)

    monkeypatch.setattr(parts.db, "run", counted)
    reply = await retrieve(client, auth, [corpus["dataset"]], "cats purr")
    assert reply["code"] == 0 and reply["data"]["chunks"]
    assert trips.count("search_scope") == 1
    assert not {"datasets_for_retrieval", "documents_to_search"} & set(trips)
