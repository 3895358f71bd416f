"""Event-loop lag of a real server under 200 concurrent ``GET /api/v1/datasets`` requests.

Run: ``.venv/bin/python -m tests.bench.loop_lag`` (``make bench`` runs every benchmark).
Starts ``python -m api`` on a temp dir with a 5 ms lag sampler, measures the lag histogram while
idle (the baseline) and while 200 clients list datasets at once, and prints both p99s; the last
line is ``loop_lag_p99_ms=<x>``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import free_port, wait_for_url

LAG_METRIC = "ragline_event_loop_lag_histogram_seconds"


def lag_buckets(metrics_text: str) -> list[tuple[float, float]]:
    """Cumulative (upper bound, count) pairs of the loop-lag histogram."""
    for family in text_string_to_metric_families(metrics_text):
        if family.name == LAG_METRIC:
            return [(float(s.labels["le"]), s.value) for s in family.samples if s.name.endswith("_bucket")]
    raise RuntimeError("the server exports no loop-lag histogram")


def quantile(before: list[tuple[float, float]], after: list[tuple[float, float]], q: float) -> float:
    """Prometheus-style histogram_quantile over the samples taken between two scrapes."""
    counts = [(bound, a - b) for (bound, a), (_, b) in zip(after, before, strict=True)]
    total = counts[-1][1]
    if total == 0:
        return 0.0
    rank, lower, previous = q * total, 0.0, 0.0
    for bound, cumulative in counts:
        if cumulative >= rank:
            if bound == float("inf"):
                return lower
            return lower + (bound - lower) * (rank - previous) / max(cumulative - previous, 1e-9)
        lower, previous = bound, cumulative
    return lower


async def fire(client: httpx.AsyncClient, headers: dict[str, str], concurrency: int, rounds: int) -> list[float]:
    latencies: list[float] = []

    async def one() -> None:
        started = time.perf_counter()
        response = await client.get("/api/v1/datasets", headers=headers)
        body = response.json()
        if body["code"] != 0:
            raise RuntimeError(body)
        latencies.append(time.perf_counter() - started)

    for _ in range(rounds):
        await asyncio.gather(*(one() for _ in range(concurrency)))
    return latencies


async def measure(url: str, key: str, concurrency: int, rounds: int) -> dict[str, float]:
    headers = {"Authorization": f"Bearer {key}"}
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=60) as client:
        for index in range(20):
            await client.post("/api/v1/datasets", headers=headers, json={"name": f"bench-{index}"})
        idle_before = lag_buckets((await client.get("/metrics")).text)
        await asyncio.sleep(3)
        idle_after = lag_buckets((await client.get("/metrics")).text)
        started = time.perf_counter()
        latencies = await fire(client, headers, concurrency, rounds)
        elapsed = time.perf_counter() - started
        load_after = lag_buckets((await client.get("/metrics")).text)
    latencies.sort()
    return {
        "idle_p99_ms": quantile(idle_before, idle_after, 0.99) * 1000,
        "load_p99_ms": quantile(idle_after, load_after, 0.99) * 1000,
        "load_p50_ms": quantile(idle_after, load_after, 0.50) * 1000,
        "requests": len(latencies),
        "requests_per_s": len(latencies) / elapsed,
        "request_p50_ms": latencies[len(latencies) // 2] * 1000,
        "request_p99_ms": latencies[int(len(latencies) * 0.99)] * 1000,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--concurrency", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=10)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as data_dir:
        port = free_port()
        env = {**os.environ, "RAGLINE_DATA_DIR": data_dir, "RAGLINE_PORT": str(port),
               "RAGLINE_LOOP_LAG_INTERVAL": "0.005", "RAGLINE_LOG_LEVEL": "WARNING"}
        ragline = str(Path(sys.executable).parent / "ragline")
        made = subprocess.run([ragline, "token", "create", "--tenant", "bench", "--init"], env=env, capture_output=True,
                              text=True, check=True)
        key = made.stdout.strip().splitlines()[-1]
        server = subprocess.Popen([sys.executable, "-m", "api"], env=env, stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL)
        try:
            url = f"http://127.0.0.1:{port}"
            wait_for_url(f"{url}/healthz")
            result = asyncio.run(measure(url, key, args.concurrency, args.rounds))
        finally:
            server.terminate()
            server.wait(30)
    print(f"{'measure':<28}{'value':>12}")
    for name, value in result.items():
        print(f"{name:<28}{value:>12.2f}")
    print(f"load_vs_idle_p99_ratio={result['load_p99_ms'] / max(result['idle_p99_ms'], 1e-3):.2f}")
    print(f"loop_lag_p99_ms={result['load_p99_ms']:.2f}")


if __name__ == "__main__":
    main()
