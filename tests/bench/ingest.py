"""Ingestion benchmark: the SciFact corpus as one small file per document, through the HTTP API.

A real server process (``python -m api``) runs on a temporary data directory with
``RAGLINE_INGEST_WORKERS`` set from ``--workers``. The corpus (5,183 documents, or ``--limit N``)
is written as ``<id>.txt`` files, uploaded in multipart batches and queued for parsing batch by
batch, as a client would; the clock stops when every document has left RUNNING.

The baseline is the floor any ingestion pays: the builtin model embedding exactly the chunk
texts the server produced (read back through the chunk API) the way the server embeds them,
in its batch size on its model threads (``EmbeddingBatcher``, ``RAGLINE_EMBED_THREADS``) with
every batch ready at once, measured in this process after the server has stopped (so the two
never share the CPU). Ratio = total ingestion time / pure embedding time; the target is ≤ 1.25.
The same ratio in CPU seconds (server process vs. this process) is printed too: on a machine
shared with other work, wall time drifts with their load, CPU time much less. For reference it
also prints the naive embedding time, one call after another with torch's default threads,
which on two cores is slower than the server's way.

    python -m tests.bench.ingest [--limit N] [--workers 2] [--embed-threads 0] [--upload-batch 100]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

import rag  # noqa: F401  - offline environment before the model library loads
from rag.llm.embedding_model import BUILTIN_FACTORY, BUILTIN_MINILM, BuiltinEmbedding
from rag.llm.embedding_processes import EmbeddingProcesses, ProcessEmbedding
from rag.svr.embed_batcher import EmbeddingBatcher, default_model_threads
from tests.bench import SCIFACT
from tests.conftest import free_port

CORPUS = SCIFACT / "corpus.jsonl"
BUILTIN = f"{BUILTIN_MINILM}@{BUILTIN_FACTORY}"
EMBED_BATCH = 64  # TaskExecutor's embed_batch_size: the server's batches are at most this big
TERMINAL = {"DONE", "FAIL", "CANCEL"}
POLL_PAGE = 100  # documents per progress poll
ROOT = Path(__file__).resolve().parents[2]
CLI = "import sys; from api.cli import main; sys.exit(main(sys.argv[1:]))"  # `ragline`, from this venv


@dataclass
class IngestRun:
    documents: int
    chunks: int
    failed: int
    upload_seconds: float
    total_seconds: float
    server_cpu_seconds: float
    peak_rss_mib: float
    chunk_texts: list[str]


def write_corpus(folder: Path, limit: int | None) -> list[Path]:
    """One ``<id>.txt`` per SciFact document: its title, a blank line, its abstract."""
    paths = []
    with CORPUS.open() as corpus:
        for line in corpus:
            if limit is not None and len(paths) >= limit:
                break
            doc = json.loads(line)
            path = folder / f"{doc['_id']}.txt"
            path.write_text(f"{doc['title']}\n\n{doc['text']}\n", encoding="utf-8")
            paths.append(path)
    return paths


def server_env(data_dir: Path, port: int, workers: int, in_flight: int | None = None,
               embed_processes: int = -1) -> dict[str, str]:
    own = ("RAGLINE_", "DATABASE_URL", "DOC_ENGINE")  # the bench decides these, not the caller's shell
    env = {k: v for k, v in os.environ.items() if not k.startswith(own)}
    env.update(RAGLINE_DATA_DIR=str(data_dir), RAGLINE_PORT=str(port), RAGLINE_INGEST_WORKERS=str(workers),
               RAGLINE_LOG_LEVEL="warning", RAGLINE_EMBED_PROCESSES=str(embed_processes))
    if in_flight is not None:
        env["RAGLINE_INGEST_DOCUMENTS_IN_FLIGHT"] = str(in_flight)
    return env


def create_key(env: dict[str, str]) -> str:
    """A key from the CLI (``ragline token create``), as an operator would make one."""
    out = subprocess.run([sys.executable, "-c", CLI, "token", "create", "--tenant", "bench", "--init"], env=env,
                         cwd=ROOT, check=True, capture_output=True, text=True).stdout
    return out.strip().splitlines()[-1]


def start_server(env: dict[str, str], base_url: str, log: Path) -> subprocess.Popen:
    process = subprocess.Popen([sys.executable, "-m", "api"], env=env, cwd=ROOT, stdout=log.open("w"),
                               stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}; see {log}")
        try:
            if httpx.get(f"{base_url}/healthz", timeout=1).status_code == 200:
                return process
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    process.kill()
    raise RuntimeError("server did not answer /healthz within 60 s")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of the process (all its threads) so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def children_of(pid: int) -> list[int]:
    return [int(child) for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


def tree_cpu_seconds(pid: int) -> float:
    """CPU seconds of the process and its live children (the search and embedding processes)."""
    return cpu_seconds(pid) + sum(cpu_seconds(child) for child in children_of(pid))


def peak_rss_mib(pid: int) -> float:
    """VmHWM (the kernel's peak resident set) of the process and its children, in MiB."""
    pids = [pid, *children_of(pid)]
    total_kib = 0
    for one in pids:
        for line in Path(f"/proc/{one}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                total_kib += int(line.split()[1])
    return total_kib / 1024


def envelope(response: httpx.Response):
    body = response.json()
    if body.get("code") != 0:
        raise RuntimeError(f"{response.request.method} {response.request.url.path}: {body}")
    return body["data"]


def warm_up(http: httpx.Client, dataset_id: str) -> None:
    """Load the server's embedding model before the clock starts, as the baseline loads its own
    outside its timing: a retrieval embeds its question even on an empty dataset. (Loading the
    weights takes seconds, a tenth of a 500-document run.)"""
    http.post("/api/v1/retrieval", json={"question": "warm up", "dataset_ids": [dataset_id]})


def upload_and_queue(http: httpx.Client, dataset_id: str, paths: list[Path], batch: int) -> list[str]:
    """Upload ``batch`` files per request and queue each batch for parsing straight away."""
    ids: list[str] = []
    for start in range(0, len(paths), batch):
        files = [("file", (p.name, p.read_bytes(), "text/plain")) for p in paths[start:start + batch]]
        docs = envelope(http.post(f"/api/v1/datasets/{dataset_id}/documents", files=files))
        batch_ids = [doc["id"] for doc in docs]
        envelope(http.post(f"/api/v1/datasets/{dataset_id}/chunks", json={"document_ids": batch_ids}))
        ids.extend(batch_ids)
    return ids


def list_documents(http: httpx.Client, dataset_id: str) -> list[dict]:
    docs: list[dict] = []
    page = 1
    while True:
        data = envelope(http.get(f"/api/v1/datasets/{dataset_id}/documents",
                                 params={"page": page, "page_size": 1000}))
        docs.extend(data["docs"])
        if len(docs) >= data["total"] or not data["docs"]:
            return docs
        page += 1


def finished_prefix(http: httpx.Client, dataset_id: str, cursor: int) -> tuple[int, int]:
    """Move ``cursor`` (how many of the oldest documents are known finished) over the finished
    documents of its page; returns it and the dataset's document total."""
    page = cursor // POLL_PAGE
    data = envelope(http.get(f"/api/v1/datasets/{dataset_id}/documents",
                             params={"page": page + 1, "page_size": POLL_PAGE, "orderby": "create_time",
                                     "desc": "false"}))
    for position, doc in enumerate(data["docs"], start=page * POLL_PAGE):
        if position < cursor:
            continue
        if doc["run"] not in TERMINAL:
            break
        cursor = position + 1
    return cursor, data["total"]


def wait_for_parsing(http: httpx.Client, dataset_id: str, expected: int, interval: float) -> list[dict]:
    """Poll as a careful client would: only the oldest documents not yet seen finished, one page
    at a time (the queue is worked oldest first), then one full listing to confirm.

    Re-listing every document each half second costs the server O(documents) per poll, which at
    thousands of documents becomes a large share of the very time this benchmark measures.
    """
    cursor = 0
    while True:
        before = cursor
        cursor, total = finished_prefix(http, dataset_id, cursor)
        if total == expected and cursor >= expected:
            docs = list_documents(http, dataset_id)
            if len(docs) == expected and all(doc["run"] in TERMINAL for doc in docs):
                return docs
            cursor = 0  # the order changed under us: start over (never seen in practice)
        if cursor == before or cursor % POLL_PAGE:  # no progress, or stopped inside the page
            time.sleep(interval)


def chunk_texts(http: httpx.Client, dataset_id: str, docs: list[dict]) -> list[str]:
    """Every chunk's text as the server stored it, read back through the chunk API."""
    texts: list[str] = []
    for doc in docs:
        if not doc["chunk_count"]:
            continue
        data = envelope(http.get(f"/api/v1/datasets/{dataset_id}/documents/{doc['id']}/chunks",
                                 params={"page_size": 1000}))
        texts.extend(chunk["content"] for chunk in data["chunks"])
    return texts


def run_ingestion(paths: list[Path], data_dir: Path, workers: int, upload_batch: int,
                  in_flight: int | None = None, embed_processes: int = -1) -> IngestRun:
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    env = server_env(data_dir, port, workers, in_flight, embed_processes)
    key = create_key(env)
    server = start_server(env, base_url, data_dir.parent / "server.log")
    try:
        with httpx.Client(base_url=base_url, headers={"Authorization": f"Bearer {key}"}, timeout=300) as http:
            dataset_id = envelope(http.post("/api/v1/datasets", json={"name": "scifact"}))["id"]
            warm_up(http, dataset_id)
            started, cpu_before = time.perf_counter(), tree_cpu_seconds(server.pid)
            upload_and_queue(http, dataset_id, paths, upload_batch)
            uploaded = time.perf_counter()
            docs = wait_for_parsing(http, dataset_id, len(paths), interval=0.5)
            finished, cpu_after = time.perf_counter(), tree_cpu_seconds(server.pid)
            peak = peak_rss_mib(server.pid)
            texts = chunk_texts(http, dataset_id, docs)
            stored = envelope(http.get("/api/v1/datasets", params={"id": dataset_id}))[0]["chunk_count"]
            if stored != len(texts):
                raise RuntimeError(f"dataset says {stored} chunks, the chunk API listed {len(texts)}")
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(60)
    return IngestRun(len(docs), len(texts), sum(d["run"] != "DONE" for d in docs), uploaded - started,
                     finished - started, cpu_after - cpu_before, peak, texts)


def sequential_embedding_seconds(model: BuiltinEmbedding, texts: list[str]) -> tuple[float, float]:
    """Wall and CPU seconds of ``encode`` over ``texts``, one 64-text call after the other on
    this thread with torch's default intra-op threads: the naive way to embed them."""
    started, cpu_started = time.perf_counter(), time.process_time()
    for start in range(0, len(texts), EMBED_BATCH):
        model.encode(texts[start:start + EMBED_BATCH])
    return time.perf_counter() - started, time.process_time() - cpu_started


def batched_embedding_seconds(texts: list[str], processes: int) -> tuple[float, float]:
    """Wall and CPU seconds of the server's own way to embed ``texts``, without the server: its
    ``EmbeddingBatcher`` over the builtin model in ``processes`` embedding processes
    (``RAGLINE_EMBED_PROCESSES``; 0: on model threads of this process, one per core), every
    64-text request waiting at once (the most a batcher can be fed). CPU counts the children."""
    async def embed_all() -> tuple[float, float]:
        children = EmbeddingProcesses(processes) if processes else None
        model = ProcessEmbedding(BUILTIN, children) if children else BuiltinEmbedding()
        batcher = EmbeddingBatcher(max_batch=EMBED_BATCH, threads=processes or default_model_threads())
        try:
            if children:
                await children.warm_up(BUILTIN)
            await asyncio.gather(*(batcher.encode("bench", model, [text]) for text in texts[:8]))
            started, cpu_started = time.perf_counter(), tree_cpu_seconds(os.getpid())
            await asyncio.gather(*(batcher.encode("bench", model, texts[start:start + EMBED_BATCH])
                                   for start in range(0, len(texts), EMBED_BATCH)))
            return time.perf_counter() - started, tree_cpu_seconds(os.getpid()) - cpu_started
        finally:
            await batcher.close()
            if children:
                children.close()

    return asyncio.run(embed_all())


def pure_embedding_seconds(texts: list[str], processes: int) -> dict[str, tuple[float, float]]:
    """(wall, CPU) seconds of pure embedding ``texts``, after a warm-up, two ways: the server's
    (the baseline of the ratio) and the naive sequential one (for reference). The CPU figures
    are the steadier ones on a machine shared with others."""
    model = BuiltinEmbedding()
    model.encode(texts[:EMBED_BATCH])
    # sequential first: model threads in this process would set torch's default to one thread
    return {"sequential": sequential_embedding_seconds(model, texts),
            "server": batched_embedding_seconds(texts, processes)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit", type=int, default=None, help="first N documents only (default: all 5,183)")
    parser.add_argument("--workers", type=int, default=2, help="RAGLINE_INGEST_WORKERS of the server")
    parser.add_argument("--upload-batch", type=int, default=100, help="files per upload request")
    parser.add_argument("--embed-processes", type=int, default=-1,
                        help="RAGLINE_EMBED_PROCESSES of the server and its baseline (-1: one per core; 0: threads)")
    parser.add_argument("--in-flight", type=int, default=None,
                        help="RAGLINE_INGEST_DOCUMENTS_IN_FLIGHT of the server (default: the server's default)")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="ragline-bench-ingest-") as tmp:
        corpus_dir, data_dir = Path(tmp, "corpus"), Path(tmp, "data")
        corpus_dir.mkdir()
        paths = write_corpus(corpus_dir, args.limit)
        load_before = os.getloadavg()[0]
        run = run_ingestion(paths, data_dir, args.workers, args.upload_batch, args.in_flight, args.embed_processes)
    load_between = os.getloadavg()[0]
    processes = args.embed_processes if args.embed_processes >= 0 else (os.cpu_count() or 1)
    pure = pure_embedding_seconds(run.chunk_texts, processes)
    (embed_seconds, embed_cpu), (sequential_seconds, sequential_cpu) = pure["server"], pure["sequential"]
    load_after = os.getloadavg()[0]

    in_flight = "default" if args.in_flight is None else args.in_flight
    print(f"\nSciFact ingestion through the HTTP API (workers={args.workers}, documents in flight={in_flight}, "
          f"embedding processes={processes}, upload batch={args.upload_batch})")
    print(f"| {'measure':<34} | {'value':>12} |")
    print(f"|{'-' * 36}|{'-' * 14}|")
    rows = [
        ("documents (failed)", f"{run.documents} ({run.failed})"),
        ("chunks", f"{run.chunks}"),
        ("upload + queue time (s)", f"{run.upload_seconds:.1f}"),
        ("total time: upload → all parsed (s)", f"{run.total_seconds:.1f}"),
        ("pure embedding, same chunks (s)", f"{embed_seconds:.1f}"),
        ("ratio total / embedding (≤ 1.25)", f"{run.total_seconds / embed_seconds:.2f}"),
        ("server CPU during ingestion (s)", f"{run.server_cpu_seconds:.1f}"),
        ("CPU of the pure embedding (s)", f"{embed_cpu:.1f}"),
        ("CPU ratio server / embedding", f"{run.server_cpu_seconds / embed_cpu:.2f}"),
        ("sequential embedding (s, CPU s)", f"{sequential_seconds:.1f}, {sequential_cpu:.1f}"),
        ("ratio total / sequential", f"{run.total_seconds / sequential_seconds:.2f}"),
        ("documents per second", f"{run.documents / run.total_seconds:.1f}"),
        ("peak RSS of the server (MiB)", f"{run.peak_rss_mib:.0f}"),
        ("1-min load: start / mid / end", f"{load_before:.1f}/{load_between:.1f}/{load_after:.1f}"),
    ]
    for name, value in rows:
        print(f"| {name:<34} | {value:>12} |")
    return 0 if run.failed == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
