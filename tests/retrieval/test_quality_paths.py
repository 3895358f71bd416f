"""The ranking ``rag.benchmark`` measures in process is the ranking ``/api/v1/retrieval`` serves.

Issue 22's ranking is tuned in process and checked through the API (files uploaded into a dataset
with the server's defaults, parsed by its workers, asked over HTTP). ``tests.bench.retrieval_quality``
runs both on SciFact; this runs them on a small collection, so a difference between the two paths
(another chunking default, a lost field, a doc id mapped wrongly) fails here first.
"""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from rag.benchmark import Collection
from tests.bench.retrieval_quality import http_ndcg, in_process_ndcg, ingest, write_files

WEIGHTS = [0.0, 0.3, 1.0]

COLLECTION = Collection(
    corpus={
        "d1": ("Vitamin D and bone density", "Vitamin D supplements raised bone mineral density in older women "
                                              "over two years of follow-up."),
        "d2": ("Sleep and memory", "Deep sleep consolidates declarative memory; students deprived of sleep "
                                   "recalled fewer word pairs."),
        "d3": ("Statins and muscle pain", "Muscle pain was reported as often with placebo as with statins in a "
                                          "blinded crossover trial."),
        "d4": ("Coffee and heart rhythm", "Habitual coffee drinking was not associated with atrial fibrillation "
                                          "in a large cohort."),
        "d5": ("Exercise and mood", "Aerobic exercise three times a week reduced depressive symptoms as much as "
                                    "medication in mild depression."),
        "d6": ("Bone loss in astronauts", "Astronauts lose bone density in microgravity despite daily exercise "
                                          "on the station."),
    },
    queries={
        "q1": "vitamin D improves bone density",
        "q2": "sleep loss impairs memory",
        "q3": "statins cause muscle pain",
        "q4": "exercise treats depression",
        # many keywords, three of them in its document once: a weak keyword match the default threshold drops
        "q5": "which cardiovascular outcomes did habitual coffee consumption change in elderly cohorts",
    },
    qrels={"q1": {"d1": 1}, "q2": {"d2": 1}, "q3": {"d3": 1}, "q4": {"d5": 1}, "q5": {"d4": 1}},
)


def test_the_api_ranks_a_collection_as_the_in_process_benchmark_does(live_server, make_key, builtin_embedding,
                                                                      tmp_path: Path) -> None:
    headers = {"Authorization": f"Bearer {make_key('quality')}"}
    with httpx.Client(base_url=live_server.url, headers=headers, timeout=60) as http:
        dataset_id = ingest(http, write_files(COLLECTION, tmp_path))
        over_http = {weight: (http_ndcg(http, dataset_id, COLLECTION, weight, threshold=0.0),
                              http_ndcg(http, dataset_id, COLLECTION, weight, threshold=None))
                     for weight in WEIGHTS}
    in_process = in_process_ndcg(COLLECTION, WEIGHTS, model=builtin_embedding)

    assert list(over_http) == WEIGHTS == list(in_process)
    assert [n for pair in over_http.values() for n in pair] == pytest.approx(
        [n for pair in in_process.values() for n in pair], abs=1e-9)
    assert min(ndcg for ndcg, _ in in_process.values()) > 0.9  # each question finds its document at threshold 0
    assert in_process[0.0][1] < in_process[0.0][0]  # and the default threshold cuts the weak keyword match
