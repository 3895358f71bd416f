"""A lone new question reaches one search process, which embeds it itself, through the server's
start-up (``warm_up_and_freeze``) and ``/api/v1/retrieval``; answers and accounting as before."""

from __future__ import annotations

import gc

import pytest

from api.db.models import Usage
from tests.api.test_chunks_api import add, new_document, retrieve
from tests.conftest import BUILTIN_EMBEDDING
from tests.retrieval.test_search_processes import CountingBatcher

pytestmark = pytest.mark.usefixtures("app")


@pytest.fixture
def settings(make_settings):
    return make_settings(search_processes=1, ingest_workers=0)


@pytest.fixture
async def warmed(app, parts):
    """The server's start-up, its garbage-collector settings undone afterwards."""
    from api.server import warm_up_and_freeze

    thresholds = gc.get_threshold()
    try:
        await warm_up_and_freeze(app.app)
        yield parts
    finally:
        gc.unfreeze()
        gc.set_threshold(*thresholds)


async def test_a_new_question_is_embedded_by_the_search_process(client, auth, warmed) -> None:
    parts = warmed
    assert BUILTIN_EMBEDDING in parts.question_graphs  # the start-up loaded it in the search process
    parts.question_batcher = counting = CountingBatcher(parts.question_batcher)
    dataset_id, doc_id = await new_document(client, auth, "graph")
    for text in ("Cats purr and chase mice around the house.", "Volcanoes release ash into the sky."):
        assert (await add(client, auth, dataset_id, doc_id, text))["code"] == 0

    body = await retrieve(client, auth, [dataset_id], "Which pet hunts rodents?", similarity_threshold=0)
    assert body["code"] == 0 and body["data"]["chunks"][0]["content"].startswith("Cats purr")
    assert counting.questions == []  # not sent to the embedding model's batcher
    await parts.usage.settled()
    rows = parts.db.call(lambda: list(Usage.select().where(Usage.kind == "embedding")))
    assert [(row.model, row.prompt_tokens > 0) for row in rows][-1] == (BUILTIN_EMBEDDING, True)
