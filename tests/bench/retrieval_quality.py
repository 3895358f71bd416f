"""Retrieval quality the way issue 22 is checked: a BEIR collection uploaded as files through the
HTTP API and asked through ``POST /api/v1/retrieval`` at w = 0, 0.3 and 1.

``rag.benchmark`` measures the ranking in process, on chunks it cuts itself. A user (and the
check) sees something longer: the dataset's default parser config, the upload and parse path,
the search children, the request's own defaults (``similarity_threshold`` 0.2, ``top_k`` 1024).
This benchmark runs that path on a real ``python -m api`` and, as its baseline in the same run,
``rag.benchmark``'s in-process pipeline on the same collection: the ratio says how much of the
in-process figure survives the server's path (1.000 when nothing is lost on the way).

Each corpus document becomes ``<_id>.txt`` (title line, blank line, text, as ``rag.benchmark``
writes it) in a dataset created with no parser config (the server's defaults). A document's score
is its best chunk's, as in ``rag.benchmark``.

    python -m tests.bench.retrieval_quality [--data ../shared/data/scifact] [--split test]
        [--weights 0,0.3,1] [--keep DIR] [--cache-dir DIR]

``--keep DIR`` keeps the server's data directory, so a second run asks again without
re-ingesting (about 5 minutes for SciFact's 5,183 documents on two cores); ``--cache-dir``
reuses the baseline's corpus embeddings (``rag.benchmark``'s cache).
"""

from __future__ import annotations

import argparse
import json
import signal
import subprocess
import tempfile
from pathlib import Path

import httpx

from rag.benchmark import (
    AT_API_DEFAULT,
    PAGE_SIZE,
    Collection,
    document_bytes,
    document_scores,
    evaluate,
    indexed,
    load_collection,
)
from rag.llm.embedding_model import BuiltinEmbedding
from tests.bench import SCIFACT
from tests.bench.ingest import (
    create_key,
    envelope,
    server_env,
    start_server,
    upload_and_queue,
    wait_for_parsing,
)
from tests.conftest import free_port

STATE_FILE = "retrieval_quality.json"  # in a --keep directory: the key and dataset of the last ingestion


def write_files(collection: Collection, folder: Path) -> list[Path]:
    paths = []
    for doc_id, (title, text) in collection.corpus.items():
        path = folder / f"{doc_id}.txt"
        path.write_bytes(document_bytes(title, text))
        paths.append(path)
    return paths


def ingest(http: httpx.Client, paths: list[Path]) -> str:
    """A dataset with the server's default parser config holding ``paths``, parsed; its id."""
    dataset_id = envelope(http.post("/api/v1/datasets", json={"name": "retrieval-quality"}))["id"]
    upload_and_queue(http, dataset_id, paths, batch=100)
    docs = wait_for_parsing(http, dataset_id, len(paths), interval=1.0)
    failed = [doc["name"] for doc in docs if doc["run"] != "DONE"]
    if failed:
        raise RuntimeError(f"{len(failed)} documents did not parse, e.g. {failed[:3]}")
    return dataset_id


def ask(http: httpx.Client, dataset_id: str, question: str, weight: float, threshold: float | None
        ) -> dict[str, float]:
    """One question's documents (corpus ids) scored as ``rag.benchmark`` scores them, from the
    same page size."""
    body = {"question": question, "dataset_ids": [dataset_id], "vector_similarity_weight": weight,
            "page_size": PAGE_SIZE}
    if threshold is not None:
        body["similarity_threshold"] = threshold
    chunks = envelope(http.post("/api/v1/retrieval", json=body))["chunks"]
    return document_scores((chunk["document_keyword"].removesuffix(".txt"), chunk["similarity"]) for chunk in chunks)


def http_ndcg(http: httpx.Client, dataset_id: str, collection: Collection, weight: float,
              threshold: float | None) -> float:
    run = {qid: ask(http, dataset_id, text, weight, threshold) for qid, text in collection.queries.items()}
    return evaluate(collection.qrels, run)["ndcg@10"]


def in_process_ndcg(collection: Collection, weights: list[float], cache_dir: Path | None = None,
                    model: BuiltinEmbedding | None = None) -> dict[float, tuple[float, float]]:
    """``rag.benchmark``'s nDCG@10 per weight, with the feedback strength the server uses: at
    threshold 0 and at the API's default threshold."""
    found = {}
    with indexed(collection, cache_dir=cache_dir, model=model) as index:
        for weight in weights:
            scores, _ = index.scores(weight)
            found[weight] = (scores["ndcg@10"], scores[AT_API_DEFAULT])
    return found


def prepared_server(data_dir: Path, collection: Collection, name: str
                    ) -> tuple[subprocess.Popen, httpx.Client, str]:
    """The server on ``data_dir`` with the collection ``name`` ingested (once per ``--keep``
    directory, which then holds that collection only): (process, client, dataset id)."""
    port = free_port()
    env = server_env(data_dir, port, workers=2)
    state_path = data_dir / STATE_FILE
    state = json.loads(state_path.read_text()) if state_path.exists() else None
    if state is None:
        data_dir.mkdir(parents=True, exist_ok=True)
        state = {"key": create_key(env), "collection": name}
    if state.get("collection") != name:
        raise SystemExit(f"{data_dir} holds {state.get('collection')!r}, not {name!r}: give --keep another directory")
    server = start_server(env, f"http://127.0.0.1:{port}", data_dir.parent / f"{data_dir.name}-server.log")
    http = httpx.Client(base_url=f"http://127.0.0.1:{port}", headers={"Authorization": f"Bearer {state['key']}"},
                        timeout=300)
    if "dataset_id" not in state:
        with tempfile.TemporaryDirectory(prefix="ragline-quality-files-") as files:
            state["dataset_id"] = ingest(http, write_files(collection, Path(files)))
        state_path.write_text(json.dumps(state))
    return server, http, state["dataset_id"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=SCIFACT)
    parser.add_argument("--split", default="test")
    parser.add_argument("--weights", default="0,0.3,1")
    parser.add_argument("--keep", type=Path, default=None, help="server data directory kept between runs")
    parser.add_argument("--cache-dir", type=Path, default=None, help="the baseline's corpus embeddings")
    args = parser.parse_args(argv)
    weights = [float(w) for w in args.weights.split(",")]
    collection = load_collection(args.data, args.split)

    baseline = in_process_ndcg(collection, weights, args.cache_dir)
    with tempfile.TemporaryDirectory(prefix="ragline-quality-") as tmp:
        data_dir = args.keep or Path(tmp, "data")
        server, http, dataset_id = prepared_server(data_dir, collection, f"{args.data.resolve()}:{args.split}")
        try:
            chunks = envelope(http.get("/api/v1/datasets", params={"id": dataset_id}))[0]["chunk_count"]
            print(f"{args.data.name}/{args.split}: {len(collection.corpus)} documents → {chunks} chunks "
                  f"through the API, {len(collection.queries)} queries")
            print(f"{'weight':>7} | {'threshold 0: in process':>23} {'HTTP':>7} {'ratio':>7} | "
                  f"{'API default: in process':>23} {'HTTP':>7} {'ratio':>7}")
            for weight in weights:
                at_zero = http_ndcg(http, dataset_id, collection, weight, 0.0)
                at_default = http_ndcg(http, dataset_id, collection, weight, None)
                zero_reference, default_reference = baseline[weight]
                print(f"{weight:>7g} | {zero_reference:>23.4f} {at_zero:>7.4f} {at_zero / zero_reference:>7.4f} | "
                      f"{default_reference:>23.4f} {at_default:>7.4f} {at_default / default_reference:>7.4f}",
                      flush=True)
        finally:
            http.close()
            server.send_signal(signal.SIGTERM)
            server.wait(60)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
