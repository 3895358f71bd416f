"""Chat under load: concurrent streaming sessions over the indexed SciFact corpus (issue 6, item 7).

Run: ``.venv/bin/python -m tests.bench.chat_load`` (200 sessions, 60 s); shorter:
``--sessions 20 --seconds 10``. What it does, all on a temp data dir:

1. Index SciFact (``/work/shared/data/scifact``, BEIR layout) in this process, before the server
   starts, through the server's own path: the naive chunker, the builtin MiniLM model,
   ``make_chunk_row`` and the doc store of ``build_components`` (one ``Document`` row per corpus
   document). Vectors are cached in ``--cache-dir`` so a second run skips the embedding.
2. Start the stub LLM (``python -m tests.fixtures.stub_llm``, first token after 200 ms, then
   50 tokens/s) and ``python -m api`` as separate processes, with a 5 ms loop-lag sampler.
3. Create a chat assistant over the dataset (defaults: no refine, no keywords), then measure a
   baseline (one session, sequential questions) and the load: ``--sessions`` concurrent
   clients, each in its own session (a new one every ``--turns`` questions) asking SciFact test
   queries through ``POST /api/v1/chats/<id>/completions`` with ``stream: true`` until
   ``--seconds`` have passed. ``--api openai`` runs the same load through
   ``/api/v1/chats_openai/<id>/chat/completions`` instead (single-turn, nothing stored but usage),
   which separates the pipeline's cost from the session storage's.
4. After the run, join each answer (by message id) with its usage row in the database: the
   row carries ``retrieval_ms`` and the LLM call's own ``ttft_ms``.

Prints errors (target 0), the loop-lag p99 under load vs idle (target ≤ 20 ms), the server
overhead in time to first token = client TTFT − stub first-token delay − retrieval time (target
p50 ≤ 10 ms), and the per-step breakdown of an answer read from the server's
``ragline_chat_step_seconds`` histograms (history, refine, keywords, retrieval, prompt, first
token), taken between scrapes of ``/metrics`` around the baseline and the load.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from tests.bench import SCIFACT
from tests.bench.loop_lag import lag_buckets, quantile
from tests.conftest import free_port, wait_for_url

STUB_MODEL = "stub-chat@OpenAI-API-Compatible"
EMBEDDING_MODEL = "all-MiniLM-L6-v2@Builtin"
TENANT = "bench"
STEP_METRIC = "ragline_chat_step_seconds"
STEPS = ("history", "refine", "keywords", "retrieval", "prompt", "first_token")


@dataclass
class Answer:
    """One streamed answer as the client saw it."""

    ttft_ms: float | None = None
    total_ms: float = 0.0
    message_id: str | None = None
    error: str | None = None


@dataclass
class QuestionPool:
    """The questions clients ask. With ``fresh``, each ask gets a unique numbered suffix, so no
    answer reuses a remembered question embedding: the cost of a stream of new questions."""

    questions: list[str]
    fresh: bool = False
    asked: int = 0

    def pick(self, rng: random.Random) -> str:
        question = rng.choice(self.questions)
        self.asked += 1
        return f"{question} (#{self.asked})" if self.fresh else question


@dataclass
class Load:
    answers: list[Answer] = field(default_factory=list)

    @property
    def errors(self) -> list[str]:
        return [a.error for a in self.answers if a.error]


# -- 1. the index --------------------------------------------------------------------------------


def build_index(data_dir: Path, corpus_dir: Path, max_docs: int | None, cache_dir: Path) -> tuple[str, str, list[str]]:
    """Index the corpus into ``data_dir`` as the server would; returns (api key, dataset id, questions)."""
    from api.components import build_components
    from api.db.migrate import upgrade
    from api.db.models import Document, Knowledgebase, new_id
    from api.db.services import knowledgebase_service, tenant_service
    from api.settings import load_settings
    from rag.benchmark import chunk_corpus, embed, load_collection
    from rag.llm.embedding_model import BuiltinEmbedding
    from rag.utils.doc_store_conn import index_name, make_chunk_row

    collection = load_collection(corpus_dir, "test")
    corpus = dict(list(collection.corpus.items())[:max_docs] if max_docs else collection.corpus.items())
    chunks = chunk_corpus(corpus, 512)
    vectors, seconds = embed(BuiltinEmbedding(), [piece.content for piece in chunks], cache_dir)
    parts = build_components(load_settings(environ={}, data_dir=data_dir))
    try:
        upgrade(parts.db)
        issued = parts.db.call(tenant_service.create_key_for, TENANT)
        kb = parts.db.call(knowledgebase_service.create, issued.tenant_id,
                           {"name": "scifact", "embedding_model": EMBEDDING_MODEL})
        doc_ids = {corpus_id: new_id() for corpus_id in corpus}

        def documents() -> None:
            counts: dict[str, int] = {}
            for piece in chunks:
                counts[piece.doc_id] = counts.get(piece.doc_id, 0) + 1
            rows = [dict(id=doc_ids[c], tenant_id=issued.tenant_id, kb_id=kb["id"], name=f"{c}.txt", type="doc",
                         suffix="txt", run="DONE", progress=1.0, chunk_num=counts.get(c, 0)) for c in corpus]
            with Document._meta.database.atomic():
                for start in range(0, len(rows), 500):
                    Document.insert_many(rows[start:start + 500]).execute()
                Knowledgebase.update(doc_num=len(rows), chunk_num=len(chunks)).where(
                    Knowledgebase.id == kb["id"]).execute()

        parts.db.call(documents)
        index = index_name(issued.tenant_id)
        parts.doc_store.create_idx(index, kb["id"], vectors.shape[1])
        for start in range(0, len(chunks), 500):
            rows = [make_chunk_row(doc_ids[piece.doc_id], kb["id"], f"{piece.doc_id}.txt", piece.content,
                                   vectors[start + i], title=piece.title)
                    for i, piece in enumerate(chunks[start:start + 500])]
            if errors := parts.doc_store.insert(rows, index, kb["id"]):
                raise RuntimeError(f"indexing failed: {errors[:3]}")
    finally:
        parts.close()
    print(f"indexed {len(corpus)} documents → {len(chunks)} chunks (embedding {seconds:.1f}s, 0 = cached)",
          flush=True)
    return issued.key, kb["id"], list(collection.queries.values())


# -- 2. the processes ----------------------------------------------------------------------------


def start_stub(port: int, first_token_delay: float, tokens_per_second: float) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "tests.fixtures.stub_llm", "--port", str(port),
         "--first-token-delay", str(first_token_delay), "--tokens-per-second", str(tokens_per_second)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def start_server(data_dir: Path, port: int, stub_port: int, log: Path,
                 settings: dict[str, str] | None = None) -> subprocess.Popen:
    """``python -m api`` on ``data_dir``, with ``settings`` (environment variables) on top of the
    bench's; its stderr (JSON log lines) goes to ``log``."""
    env = {**os.environ, "RAGLINE_DATA_DIR": str(data_dir), "RAGLINE_PORT": str(port), "LLM_MODEL": STUB_MODEL,
           "LLM_API_BASE": f"http://127.0.0.1:{stub_port}/v1", "RAGLINE_LOOP_LAG_INTERVAL": "0.005",
           "RAGLINE_LOG_LEVEL": "WARNING", **(settings or {})}
    with open(log, "wb") as sink:
        return subprocess.Popen([sys.executable, "-m", "api"], env=env, stdout=subprocess.DEVNULL, stderr=sink)


def stop(process: subprocess.Popen) -> None:
    process.terminate()
    try:
        process.wait(30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


# -- 3. the load ---------------------------------------------------------------------------------


async def create(client: aiohttp.ClientSession, path: str, body: dict) -> dict:
    async with client.post(path, json=body) as response:
        reply = await response.json()
    if reply["code"] != 0:
        raise RuntimeError(f"POST {path}: {reply}")
    return reply["data"]


async def metrics(client: aiohttp.ClientSession) -> str:
    async with client.get("/metrics") as response:
        return await response.text()


async def read_stream(client: aiohttp.ClientSession, path: str, body: dict, read: Callable[[str, Answer, float], bool],
                      closing: str) -> Answer:
    """POST ``body`` and feed each line of the streamed reply, with the ms since the request, to
    ``read``, which fills the answer and returns True on the closing line; anything but a clean
    stream ending there is an error."""
    answer, closed = Answer(), False
    started = time.perf_counter()
    try:
        async with client.post(path, json=body) as response:
            if response.status != 200:
                answer.error = f"HTTP {response.status}"
                return answer
            async for raw in response.content:
                elapsed_ms = (time.perf_counter() - started) * 1000
                closed = read(raw.decode().rstrip("\r\n"), answer, elapsed_ms) or closed
    except aiohttp.ClientError as error:
        answer.error = f"{type(error).__name__}: {error}"
    answer.total_ms = (time.perf_counter() - started) * 1000
    if answer.error is None and not closed:
        answer.error = f"the stream ended without {closing}"
    if answer.error is None and answer.ttft_ms is None:
        answer.error = "no answer text"
    return answer


def read_ragflow_line(line: str, answer: Answer, elapsed_ms: float) -> bool:
    """A RAGFlow completion event: ``data:{code, message, data}``, closed by ``data: true``."""
    if not line.startswith("data:"):
        return False
    event = json.loads(line[5:])
    if event.get("code") != 0:
        answer.error = f"code {event.get('code')}: {event.get('message')}"
    elif event["data"] is True:
        return True
    elif event["data"].get("answer") and answer.ttft_ms is None:
        answer.ttft_ms, answer.message_id = elapsed_ms, event["data"].get("id")
    return False


def read_openai_line(line: str, answer: Answer, elapsed_ms: float) -> bool:
    """An OpenAI chunk: ``data: {...}``, closed by ``data: [DONE]``."""
    if line == "data: [DONE]":
        return True
    if line.startswith("data: "):
        chunk = json.loads(line[6:])
        if "error" in chunk:
            answer.error = f"error event: {chunk['error'].get('message')}"
        elif answer.ttft_ms is None and chunk["choices"] and chunk["choices"][0]["delta"].get("content"):
            answer.ttft_ms, answer.message_id = elapsed_ms, chunk["id"].removeprefix("chatcmpl-")
    return False


async def ask_streaming(client: aiohttp.ClientSession, chat_id: str, session_id: str, question: str) -> Answer:
    """One streamed answer in a session (RAGFlow's completion route)."""
    body = {"question": question, "stream": True, "session_id": session_id}
    return await read_stream(client, f"/api/v1/chats/{chat_id}/completions", body, read_ragflow_line,
                             "its closing event")


async def ask_openai_streaming(client: aiohttp.ClientSession, chat_id: str, question: str) -> Answer:
    """One streamed answer through the OpenAI-compatible route (no session storage)."""
    body = {"model": "any", "stream": True, "messages": [{"role": "user", "content": question}]}
    return await read_stream(client, f"/api/v1/chats_openai/{chat_id}/chat/completions", body, read_openai_line,
                             "data: [DONE]")


async def openai_worker(client: aiohttp.ClientSession, chat_id: str, questions: QuestionPool, deadline: float,
                        turns: int, load: Load, seed: int) -> None:
    """Single-turn questions through the OpenAI route until the deadline (``turns`` is unused)."""
    rng = random.Random(seed)
    while time.monotonic() < deadline:
        load.answers.append(await ask_openai_streaming(client, chat_id, questions.pick(rng)))


async def session_worker(client: aiohttp.ClientSession, chat_id: str, questions: QuestionPool, deadline: float,
                         turns: int, load: Load, seed: int) -> None:
    """Ask questions in a session (a fresh one every ``turns`` questions) until the deadline."""
    rng = random.Random(seed)
    while time.monotonic() < deadline:
        try:
            session = await create(client, f"/api/v1/chats/{chat_id}/sessions", {"name": f"bench-{seed}"})
        except (aiohttp.ClientError, RuntimeError) as error:
            load.answers.append(Answer(error=f"session: {error}"))
            await asyncio.sleep(0.1)
            continue
        for _ in range(turns):
            if time.monotonic() >= deadline:
                return
            load.answers.append(await ask_streaming(client, chat_id, session["id"], questions.pick(rng)))


WORKERS = {"session": session_worker, "openai": openai_worker}


async def run_load(client: aiohttp.ClientSession, chat_id: str, questions: QuestionPool, sessions: int, seconds: float,
                   turns: int, api: str, grace: float) -> Load:
    """Workers ask until ``seconds`` pass; answers still running ``grace`` seconds later are
    cancelled and counted as errors, so an overloaded server cannot stretch the run unboundedly."""
    load = Load()
    deadline = time.monotonic() + seconds
    worker = WORKERS[api]
    tasks = [asyncio.create_task(worker(client, chat_id, questions, deadline, turns, load, seed))
             for seed in range(sessions)]
    _, pending = await asyncio.wait(tasks, timeout=seconds + grace)
    for task in pending:
        task.cancel()
    await asyncio.gather(*pending, return_exceptions=True)
    load.answers.extend(Answer(error=f"still running {grace:g} s after the end") for _ in pending)
    return load


def step_buckets(metrics_text: str) -> dict[str, list[tuple[float, float]]]:
    """Cumulative (upper bound, count) pairs of each step's histogram, by step."""
    steps: dict[str, list[tuple[float, float]]] = {}
    for family in text_string_to_metric_families(metrics_text):
        if family.name == STEP_METRIC:
            for sample in family.samples:
                if sample.name.endswith("_bucket"):
                    steps.setdefault(sample.labels["step"], []).append((float(sample.labels["le"]), sample.value))
    return steps


def step_quantiles(before: dict, after: dict, q: float) -> dict[str, float]:
    """Each step's q-quantile in ms over the answers between two scrapes (absent steps: none ran)."""
    empty = [(bound, 0.0) for bound, _ in next(iter(after.values()), [])]
    return {step: quantile(before.get(step, empty), after[step], q) * 1000 for step in after
            if after[step][-1][1] > dict(before.get(step, empty)).get(float("inf"), 0.0)}


@dataclass
class CpuProbe:
    """CPU seconds used so far by the processes of a run, read from /proc: the server's main
    process, its live children (search and embedding processes), the stub LLM and this client."""

    server: int
    stub: int
    ticks: int = field(default_factory=lambda: os.sysconf("SC_CLK_TCK"))

    def _stat(self, pid: int) -> list[str] | None:
        try:
            text = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            return None
        return text[text.rindex(")") + 2 :].split()  # the fields after the command name, from state on

    def _seconds(self, fields: list[str] | None) -> float:
        return 0.0 if fields is None else (int(fields[11]) + int(fields[12])) / self.ticks  # utime + stime

    def read(self) -> dict[str, float]:
        children = 0.0
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit() and (fields := self._stat(int(entry.name))) and int(fields[1]) == self.server:
                children += self._seconds(fields)
        return {"server main": self._seconds(self._stat(self.server)), "server children": children,
                "stub LLM": self._seconds(self._stat(self.stub)), "load client": self._seconds(self._stat(os.getpid()))}


async def measure(url: str, key: str, kb_id: str, questions: list[str], args: argparse.Namespace,
                  probe: CpuProbe | None = None) -> dict:
    # aiohttp, not httpx: at 200 streams httpx took half a core here, CPU the server then lacked.
    connector = aiohttp.TCPConnector(limit=args.sessions + 10)
    timeout = aiohttp.ClientTimeout(total=120, connect=30)
    async with aiohttp.ClientSession(base_url=url, headers={"Authorization": f"Bearer {key}"}, connector=connector,
                                     timeout=timeout) as client:
        prompt = {"refine_multiturn": args.refine, "keyword": args.keywords}
        chat = await create(client, "/api/v1/chats", {"name": "scifact-bench", "dataset_ids": [kb_id], "prompt": prompt})
        session = await create(client, f"/api/v1/chats/{chat['id']}/sessions", {"name": "warm-up"})
        warm_up = await ask_streaming(client, chat["id"], session["id"], questions[0])  # loads the models
        if warm_up.error:
            raise RuntimeError(f"the warm-up question failed: {warm_up.error}")
        await asyncio.sleep(args.settle)  # the search processes read the index's postings ahead
        steps_before_baseline = step_buckets(await metrics(client))
        pool = QuestionPool(questions, fresh=args.fresh_questions)
        baseline = await run_load(client, chat["id"], pool, 1, args.baseline_seconds, args.turns, args.api,
                                  args.grace)
        metrics_text = await metrics(client)
        steps_after_baseline = step_buckets(metrics_text)
        idle_before = lag_buckets(metrics_text)
        await asyncio.sleep(3)
        idle_after = lag_buckets(await metrics(client))
        cpu_before = probe.read() if probe else {}
        started = time.perf_counter()
        load = await run_load(client, chat["id"], pool, args.sessions, args.seconds, args.turns, args.api,
                              args.grace)
        elapsed = time.perf_counter() - started
        cpu = {name: seconds - cpu_before[name] for name, seconds in probe.read().items()} if probe else {}
        metrics_text = await metrics(client)
        load_after, steps_after_load = lag_buckets(metrics_text), step_buckets(metrics_text)
    steps = {"base p50": step_quantiles(steps_before_baseline, steps_after_baseline, 0.5)}
    for q in (0.5, 0.9, 0.99):
        steps[f"load p{round(q * 100)}"] = step_quantiles(steps_after_baseline, steps_after_load, q)
    return {"baseline": baseline, "load": load, "elapsed": elapsed, "steps": steps, "cpu": cpu,
            "lag_idle_p99_ms": quantile(idle_before, idle_after, 0.99) * 1000,
            "lag_load_p99_ms": quantile(idle_after, load_after, 0.99) * 1000,
            "lag_load_p50_ms": quantile(idle_after, load_after, 0.50) * 1000}


# -- 4. the usage rows ---------------------------------------------------------------------------


def usage_rows(data_dir: Path) -> dict[str, dict]:
    """Chat usage rows by message id (read after the server stopped)."""
    from api.db.database import MetaDB
    from api.db.models import Usage
    from api.settings import load_settings

    db = MetaDB(load_settings(environ={}, data_dir=data_dir).resolved_database_url)
    try:
        rows = db.call(lambda: list(Usage.select().where(Usage.kind == "chat").dicts()))
    finally:
        db.close()
    return {row["message_id"]: row for row in rows if row["message_id"]}


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def breakdown(load: Load, rows: dict[str, dict], first_token_delay_ms: float) -> dict[str, list[float]]:
    """Per answer: client TTFT, retrieval, the LLM call's TTFT, and the server's own share."""
    columns: dict[str, list[float]] = {"client TTFT": [], "retrieval": [], "first token (LLM call)": [],
                                       "LLM call overhead (LLM TTFT - stub delay)": [],
                                       "server overhead (TTFT - stub delay - retrieval)": [],
                                       "rest (TTFT - retrieval - LLM TTFT)": []}
    for answer in load.answers:
        row = rows.get(answer.message_id or "")
        if answer.error or answer.ttft_ms is None or row is None or row["retrieval_ms"] is None:
            continue
        columns["client TTFT"].append(answer.ttft_ms)
        columns["retrieval"].append(row["retrieval_ms"])
        columns["server overhead (TTFT - stub delay - retrieval)"].append(
            answer.ttft_ms - first_token_delay_ms - row["retrieval_ms"])
        if row["ttft_ms"] is not None:
            columns["first token (LLM call)"].append(row["ttft_ms"])
            columns["LLM call overhead (LLM TTFT - stub delay)"].append(row["ttft_ms"] - first_token_delay_ms)
            columns["rest (TTFT - retrieval - LLM TTFT)"].append(answer.ttft_ms - row["retrieval_ms"] - row["ttft_ms"])
    return columns


def print_report(result: dict, rows: dict[str, dict], args: argparse.Namespace) -> None:
    delay_ms = args.first_token_delay * 1000
    load, baseline = result["load"], result["baseline"]
    print(f"\n[{args.api}] {args.sessions} sessions for {result['elapsed']:.1f} s: {len(load.answers)} answers "
          f"({len(load.answers) / result['elapsed']:.1f}/s), errors {len(load.errors)}")
    for error in sorted(set(load.errors))[:10]:
        print(f"  error x{load.errors.count(error)}: {error}")
    print(f"baseline (1 session): {len(baseline.answers)} answers, errors {len(baseline.errors)}")
    print(f"event-loop lag p99: idle {result['lag_idle_p99_ms']:.2f} ms, load {result['lag_load_p99_ms']:.2f} ms "
          f"(p50 {result['lag_load_p50_ms']:.2f} ms)")
    under_load = breakdown(load, rows, delay_ms)
    alone = breakdown(baseline, rows, delay_ms)
    print(f"\n{'per answer, ms':<50}{'base p50':>10}{'load p50':>10}{'load p90':>10}{'load p99':>10}")
    for name, values in under_load.items():
        print(f"{name:<50}{pct(alone[name], 0.5):>10.1f}{pct(values, 0.5):>10.1f}{pct(values, 0.9):>10.1f}"
              f"{pct(values, 0.99):>10.1f}")
    print(f"(joined with usage rows: load {len(under_load['client TTFT'])}/{len(load.answers)}, "
          f"baseline {len(alone['client TTFT'])}/{len(baseline.answers)})")
    print(f"\n{'steps of DialogService (server histograms), ms':<50}" + "".join(f"{c:>10}" for c in result["steps"]))
    for step in STEPS:
        values = [result["steps"][column].get(step) for column in result["steps"]]
        if any(v is not None for v in values):
            print(f"{step:<50}" + "".join(f"{v:>10.1f}" if v is not None else f"{'-':>10}" for v in values))
    print("(refine and keywords run only when the chat enables them; history runs beside retrieval)")
    overhead = under_load["server overhead (TTFT - stub delay - retrieval)"]
    base_overhead = alone["server overhead (TTFT - stub delay - retrieval)"]
    if overhead and base_overhead:
        print(f"overhead_load_vs_baseline_p50_ratio={statistics.median(overhead) / max(statistics.median(base_overhead), 1e-3):.2f}")
    if result["cpu"] and load.answers:
        per_answer = {name: seconds * 1000 / len(load.answers) for name, seconds in result["cpu"].items()}
        print("\nCPU per answer under load, ms: " + ", ".join(f"{n} {v:.2f}" for n, v in per_answer.items())
              + f"; total {sum(per_answer.values()):.2f} (cores busy {sum(result['cpu'].values()) / result['elapsed']:.2f},"
              f" the server's main process {result['cpu']['server main'] / result['elapsed']:.2f})")
        print(f"server_main_cpu_ms_per_answer={per_answer['server main']:.2f}")
    print(f"errors={len(load.errors)}")
    print(f"loop_lag_p99_ms={result['lag_load_p99_ms']:.2f}")
    print(f"ttft_server_overhead_p50_ms={pct(overhead, 0.5):.1f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--baseline-seconds", type=float, default=10)
    parser.add_argument("--settle", type=float, default=5.0,
                        help="seconds between the warm-up question and the baseline, as a server that has been "
                             "running has had (0: right after start)")
    parser.add_argument("--grace", type=float, default=30, help="seconds an answer may run past the end")
    parser.add_argument("--api", choices=sorted(WORKERS), default="session",
                        help="session: RAGFlow session completions (stores turns); openai: chats_openai, no storage")
    parser.add_argument("--turns", type=int, default=10, help="questions per session before a new one")
    parser.add_argument("--data", type=Path, default=SCIFACT)
    parser.add_argument("--max-docs", type=int, default=None, help="index only the first N corpus documents")
    parser.add_argument("--cache-dir", type=Path, default=Path(tempfile.gettempdir()) / "ragline-bench-cache")
    parser.add_argument("--refine", action="store_true", help="turn the chat's refine_multiturn on (one LLM call)")
    parser.add_argument("--keywords", action="store_true", help="turn the chat's keyword step on (one LLM call)")
    parser.add_argument("--fresh-questions", action="store_true",
                        help="number every question asked, so none is a repeat (no remembered embeddings)")
    parser.add_argument("--first-token-delay", type=float, default=0.2)
    parser.add_argument("--tokens-per-second", type=float, default=50)
    parser.add_argument("--log-lines", type=int, default=20, help="server log lines to print after errors")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        data_dir = Path(tmp)
        key, kb_id, questions = build_index(data_dir, args.data, args.max_docs, args.cache_dir)
        stub_port, port = free_port(), free_port()
        stub = start_stub(stub_port, args.first_token_delay, args.tokens_per_second)
        server_log = data_dir / "server.log"
        server = start_server(data_dir, port, stub_port, server_log)
        try:
            wait_for_url(f"http://127.0.0.1:{stub_port}/v1/models", 120)
            url = f"http://127.0.0.1:{port}"
            wait_for_url(f"{url}/healthz", 120)
            result = asyncio.run(measure(url, key, kb_id, questions, args, CpuProbe(server.pid, stub.pid)))
        except Exception:
            print("server log (last lines):\n" + "\n".join(server_log.read_text().splitlines()[-args.log_lines:]))
            raise
        finally:
            stop(server)
            stop(stub)
        print_report(result, usage_rows(data_dir), args)
        if result["load"].errors or result["baseline"].errors:
            print("server log (last lines):\n" + "\n".join(server_log.read_text().splitlines()[-args.log_lines:]))


if __name__ == "__main__":
    main()
