"""A lone user's new questions through ``/api/v1/retrieval``: the search process embedding the
question itself (one process hop) against the embedding process first (two hops), same run.

Run: ``.venv/bin/python -m tests.bench.lone_question [--questions 150] [--gap 0.2]`` (the corpus
vectors are cached in ``--cache-dir`` as for ``chat_load``). SciFact is indexed once and copied;
two servers start on the copies, one with ``RAGLINE_SEARCH_EMBEDS_QUESTIONS=1`` (the default)
and one with ``0``. Each test question goes to both, in alternating order, ``--gap`` seconds
apart: new to each server and asked after a pause, as a lone user's next question is (a pause
lets the processes fall asleep and the model's weights leave the cache; see
``tests.bench.embed_after_idle``). Prints the wall p50 / p90 per server, their ratio, and the
resident memory of each server's child processes (the one-hop path loads the question graph
into every search process).
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import aiohttp

from tests.bench.chat_load import SCIFACT, build_index, start_server, stop
from tests.bench.ingest import children_of
from tests.conftest import free_port, wait_for_url

SWITCH = "RAGLINE_SEARCH_EMBEDS_QUESTIONS"
PATHS = {"one hop (search process embeds)": "1", "two hops (embedding process first)": "0"}


def start(data_dir: Path, switch: str) -> tuple[subprocess.Popen, str]:
    port = free_port()
    server = start_server(data_dir, port, free_port(), data_dir / "server.log", {SWITCH: switch})
    return server, f"http://127.0.0.1:{port}"


def children_rss_mb(pid: int) -> list[float]:
    """Resident MB of each child process of ``pid`` (Linux /proc)."""
    sizes = []
    for child in children_of(pid):
        for line in Path(f"/proc/{child}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                sizes.append(int(line.split()[1]) / 1024)
    return sorted(sizes)


async def ask(client: aiohttp.ClientSession, url: str, kb_id: str, question: str) -> float:
    body = {"question": question, "dataset_ids": [kb_id], "page_size": 6}
    started = time.perf_counter()
    async with client.post(f"{url}/api/v1/retrieval", json=body) as response:
        reply = await response.json()
    if reply["code"] != 0:
        raise RuntimeError(f"retrieval failed: {reply}")
    return (time.perf_counter() - started) * 1000


async def measure(urls: dict[str, str], key: str, kb_id: str, questions: list[str], gap: float,
                  settle: float) -> dict[str, list[float]]:
    times: dict[str, list[float]] = {name: [] for name in urls}
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {key}"}) as client:
        for url in urls.values():
            await ask(client, url, kb_id, "warm up the models")
        await asyncio.sleep(settle)  # the search processes read the postings ahead meanwhile
        names = list(urls)
        for number, question in enumerate(questions):
            for name in names if number % 2 == 0 else reversed(names):
                await asyncio.sleep(gap)
                times[name].append(await ask(client, urls[name], kb_id, question))
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--questions", type=int, default=150)
    parser.add_argument("--gap", type=float, default=0.2, help="seconds of quiet before each question")
    parser.add_argument("--settle", type=float, default=5.0)
    parser.add_argument("--data", type=Path, default=SCIFACT)
    parser.add_argument("--cache-dir", type=Path, default=Path(tempfile.gettempdir()) / "ragline-bench-cache")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        first = Path(tmp) / "one"
        key, kb_id, questions = build_index(first, args.data, None, args.cache_dir)
        dirs = dict(zip(PATHS, (first, Path(tmp) / "two"), strict=True))
        shutil.copytree(first, dirs[list(PATHS)[1]])
        servers, urls = {}, {}
        try:
            for name, switch in PATHS.items():
                servers[name], urls[name] = start(dirs[name], switch)
            for url in urls.values():
                wait_for_url(f"{url}/healthz", 180)
            times = asyncio.run(measure(urls, key, kb_id, questions[: args.questions], args.gap, args.settle))
            memory = {name: children_rss_mb(server.pid) for name, server in servers.items()}
        finally:
            for server in servers.values():
                stop(server)
    print(f"\n{len(questions[: args.questions])} new SciFact questions each, {args.gap * 1000:.0f} ms apart, wall ms:")
    for name, values in times.items():
        ordered = sorted(values)
        print(f"{name:40} p50 {statistics.median(values):6.2f}  p90 {ordered[int(0.9 * len(ordered))]:6.2f}  "
              f"children RSS MB {', '.join(f'{mb:.0f}' for mb in memory[name])}")
    one, two = (statistics.median(times[name]) for name in PATHS)
    print(f"one_hop_vs_two_hops_p50_ratio={one / two:.3f}")


if __name__ == "__main__":
    main()
