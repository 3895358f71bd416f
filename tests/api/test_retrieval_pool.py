"""Retrieval never waits on the worker pool it occupies (the pool-exhaustion deadlock)."""

from __future__ import annotations

import asyncio

import httpx
import pytest


@pytest.fixture(params=[0, 1], ids=["search-in-threads", "search-in-a-process"])
def settings(make_settings, request):
    """Two worker threads: with retrieval asking the sync model from inside the pool, two
    concurrent questions would hold both threads and wait for a third that never comes. Run
    with searches in the compute threads and in one search process (eight questions queue)."""
    return make_settings(worker_threads=2, llm_timeout=5, ingest_workers=0, search_processes=request.param)


def test_concurrent_retrievals_on_a_tiny_pool_all_answer(live_server) -> None:
    headers = {"Authorization": f"Bearer {live_server.key()}"}
    with httpx.Client(base_url=live_server.url, headers=headers, timeout=30) as client:
        dataset = client.post("/api/v1/datasets", json={"name": "pool"}).json()["data"]["id"]
        doc = client.post(f"/api/v1/datasets/{dataset}/documents",
                          files={"file": ("a.txt", b"placeholder")}).json()["data"][0]["id"]
        added = client.post(f"/api/v1/datasets/{dataset}/documents/{doc}/chunks",
                            json={"content": "Photosynthesis turns light into chemical energy."}).json()
        assert added["code"] == 0

    async def ask_many() -> list[dict]:
        async with httpx.AsyncClient(base_url=live_server.url, headers=headers, timeout=30) as client:
            replies = await asyncio.gather(*(
                client.post("/api/v1/retrieval", json={"dataset_ids": [dataset], "question": f"light energy {n}",
                                                   "similarity_threshold": 0})  # the pool is on trial, not the score
                for n in range(8)))
        return [reply.json() for reply in replies]

    bodies = asyncio.run(ask_many())
    assert [body["code"] for body in bodies] == [0] * 8
    assert all(body["data"]["chunks"] for body in bodies)
