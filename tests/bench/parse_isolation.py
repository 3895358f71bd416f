"""Latency of cheap requests while a hostile .docx parses: is parsing off the event loop's cores?

Run: ``.venv/bin/python -m tests.bench.parse_isolation`` (from the checkout to measure).
Starts ``python -m api`` on a temp dir, times rounds of ``--concurrency`` concurrent
``GET /api/v1/datasets`` while idle, then uploads the issue-18 bomb (a .docx of
``--paragraphs`` empty paragraphs, ~50 KB) and times the same rounds while it parses. The element
limit is raised (``RAGLINE_PARSE_MAX_XML_ELEMENTS``) so the bomb really parses instead of being
refused: this measures where the parse runs, not the limit. The last line is
``parse_vs_idle_round_ratio=<x>``: median round time while parsing over idle.

The server is killed (SIGKILL) at the end, since a server whose parse cannot be stopped would
otherwise take minutes to exit.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import httpx

from tests.conftest import free_port, wait_for_url
from tests.ingest.documents import docx_of_empty_paragraphs


async def one_round(client: httpx.AsyncClient, concurrency: int) -> tuple[float, list[float]]:
    """(wall time of the round, each request's latency) for ``concurrency`` requests at once."""
    latencies: list[float] = []

    async def one() -> None:
        started = time.perf_counter()
        response = await client.get("/api/v1/datasets")
        if response.json()["code"] != 0:
            raise RuntimeError(response.text)
        latencies.append(time.perf_counter() - started)

    started = time.perf_counter()
    await asyncio.gather(*(one() for _ in range(concurrency)))
    return time.perf_counter() - started, latencies


async def rounds_while(client: httpx.AsyncClient, concurrency: int, seconds: float,
                       going: Callable[[], Awaitable[bool]]) -> tuple[list[float], list[float]]:
    rounds: list[float] = []
    latencies: list[float] = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and await going():
        wall, each = await one_round(client, concurrency)
        rounds.append(wall)
        latencies.extend(each)
        await asyncio.sleep(0.1)
    return rounds, latencies


async def measure(url: str, key: str, concurrency: int, paragraphs: int, seconds: float) -> dict[str, float]:
    headers = {"Authorization": f"Bearer {key}"}
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, headers=headers, limits=limits, timeout=120) as client:
        kb_id = (await client.post("/api/v1/datasets", json={"name": "bench"})).json()["data"]["id"]

        async def always() -> bool:
            return True

        idle_rounds, idle_latencies = await rounds_while(client, concurrency, 5, always)
        bomb = docx_of_empty_paragraphs(paragraphs)
        uploaded = await client.post(f"/api/v1/datasets/{kb_id}/documents", files=[("file", ("bomb.docx", bomb))])
        doc_id = uploaded.json()["data"][0]["id"]
        started = time.monotonic()
        await client.post(f"/api/v1/datasets/{kb_id}/chunks", json={"document_ids": [doc_id]})

        async def parsing() -> bool:
            docs = (await client.get(f"/api/v1/datasets/{kb_id}/documents")).json()["data"]["docs"]
            return docs[0]["run"] in ("UNSTART", "RUNNING")

        busy_rounds, busy_latencies = await rounds_while(client, concurrency, seconds, parsing)
        still_parsing = await parsing()
    return {
        "bomb_kb": len(bomb) / 1024,
        "idle_round_median_ms": statistics.median(idle_rounds) * 1000,
        "parse_round_median_ms": statistics.median(busy_rounds) * 1000 if busy_rounds else float("nan"),
        "idle_request_p95_ms": statistics.quantiles(idle_latencies, n=20)[-1] * 1000,
        "parse_request_p95_ms": statistics.quantiles(busy_latencies, n=20)[-1] * 1000 if len(busy_latencies) > 1
        else float("nan"),
        "parse_rounds": len(busy_rounds),
        "measured_s": time.monotonic() - started,
        "still_parsing_at_end": float(still_parsing),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--concurrency", type=int, default=20)
    parser.add_argument("--paragraphs", type=int, default=2_000_000)
    parser.add_argument("--seconds", type=float, default=20.0, help="at most this long measuring while it parses")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as data_dir:
        port = free_port()
        env = {**os.environ, "RAGLINE_DATA_DIR": data_dir, "RAGLINE_PORT": str(port), "RAGLINE_LOG_LEVEL": "WARNING",
               "RAGLINE_PARSE_MAX_XML_ELEMENTS": str(10 * args.paragraphs), "RAGLINE_EMBED_PROCESSES": "0",
               "RAGLINE_SEARCH_PROCESSES": "0"}
        ragline = str(Path(sys.executable).parent / "ragline")
        made = subprocess.run([ragline, "token", "create", "--tenant", "bench", "--init"], env=env,
                              capture_output=True, text=True, check=True)
        key = made.stdout.strip().splitlines()[-1]
        server = subprocess.Popen([sys.executable, "-m", "api"], env=env, cwd=os.getcwd(),
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            url = f"http://127.0.0.1:{port}"
            wait_for_url(f"{url}/healthz", seconds=120)
            result = asyncio.run(measure(url, key, args.concurrency, args.paragraphs, args.seconds))
        finally:
            server.kill()
            server.wait(30)
    print(f"{'measure':<28}{'value':>12}")
    for name, value in result.items():
        print(f"{name:<28}{value:>12.2f}")
    ratio = result["parse_round_median_ms"] / result["idle_round_median_ms"]
    print(f"parse_vs_idle_round_ratio={ratio:.2f}")


if __name__ == "__main__":
    main()
