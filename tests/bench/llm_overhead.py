"""What LLMBundle.chat costs on top of the call it wraps.

Runs the stub LLM in its own process, then times N non-streamed chat calls each way, in
rotating order so drift hits every way alike:

* bare httpx POST to /v1/chat/completions (the floor: HTTP + JSON),
* bare ``litellm.acompletion`` (the baseline the target is measured against),
* ``Router.acompletion`` (LiteLLM's reliability layer, which the bundle uses),
* ``LLMBundle.chat`` with an in-memory usage sink,
* ``LLMBundle.chat`` writing usage rows to SQLite (for information: the database write).

Prints a table and, last, ``bundle_overhead_ms_median=<median(bundle) - median(litellm)>``.
Run: ``.venv/bin/python -m tests.bench.llm_overhead [--calls 500]``.
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import httpx

import rag  # noqa: F401  - offline environment before LiteLLM loads
from api.db.database import MetaDB
from api.db.migrate import upgrade
from api.db.services.llm_service import LLMBundle
from api.db.services.usage_service import MemoryUsageSink, UsageService
from rag.llm.registry import ModelRegistry

MESSAGES = [{"role": "user", "content": "How long is the Golden Gate Bridge?"}]
MODEL = "stub-chat@OpenAI-API-Compatible"
WARMUP = 20
REPO_ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_stub(port: int) -> subprocess.Popen:
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.fixtures.stub_llm", "--port", str(port)],
        cwd=REPO_ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            httpx.get(f"http://127.0.0.1:{port}/v1/models", timeout=1).raise_for_status()
            return process
        except httpx.HTTPError:
            time.sleep(0.1)
    process.kill()
    raise RuntimeError("stub LLM did not start")


async def measure(ways: dict[str, Callable[[], Awaitable[object]]], calls: int) -> dict[str, list[float]]:
    for call in ways.values():
        for _ in range(WARMUP):
            await call()
    timings: dict[str, list[float]] = {name: [] for name in ways}
    order = list(ways.items())
    for index in range(calls):
        rotated = order[index % len(order) :] + order[: index % len(order)]
        for name, call in rotated:
            started = time.perf_counter()
            await call()
            timings[name].append((time.perf_counter() - started) * 1000)
    return timings


async def run(api_base: str, calls: int, db_path: Path) -> dict[str, list[float]]:
    import litellm

    registry = ModelRegistry.from_config(default_chat_model=MODEL, api_base=api_base, openai_api_key="k",
                                         timeout=30, max_retries=2)
    memory_bundle = LLMBundle(registry, "bench", MODEL, MemoryUsageSink())
    db = MetaDB("sqlite:///" + str(db_path))
    upgrade(db)
    db_bundle = LLMBundle(registry, "bench", MODEL, UsageService(db))
    router = registry.router
    async with httpx.AsyncClient(base_url=api_base, timeout=30) as client:
        ways = {
            "httpx": lambda: client.post("/chat/completions", json={"model": "stub-chat", "messages": MESSAGES}),
            "litellm.acompletion": lambda: litellm.acompletion(
                model="openai/stub-chat", api_base=api_base, api_key="k", messages=MESSAGES
            ),
            "Router.acompletion": lambda: router.acompletion(model=MODEL, messages=MESSAGES),
            "LLMBundle.chat": lambda: memory_bundle.chat(None, MESSAGES, {}),
            "LLMBundle.chat+sqlite": lambda: db_bundle.chat(None, MESSAGES, {}),
        }
        timings = await measure(ways, calls)
    db.close()
    return timings


def report(timings: dict[str, list[float]]) -> float:
    baseline = statistics.median(timings["litellm.acompletion"])
    print(f"{'way':<24}{'median ms':>10}{'p90 ms':>10}{'mean ms':>10}{'vs litellm':>12}")
    for name, values in timings.items():
        median = statistics.median(values)
        p90 = statistics.quantiles(values, n=10)[-1]
        print(f"{name:<24}{median:>10.3f}{p90:>10.3f}{statistics.fmean(values):>10.3f}{median - baseline:>+12.3f}")
    return statistics.median(timings["LLMBundle.chat"]) - baseline


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=500)
    args = parser.parse_args()
    port = free_port()
    stub = start_stub(port)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            timings = asyncio.run(run(f"http://127.0.0.1:{port}/v1", args.calls, Path(tmp) / "bench.db"))
    finally:
        stub.terminate()
        stub.wait(10)
    print(f"calls per way: {args.calls}")
    overhead = report(timings)
    print(f"bundle_overhead_ms_median={overhead:.3f}")


if __name__ == "__main__":
    main()
