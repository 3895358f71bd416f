"""CPU per streamed chunk: LiteLLM's stream wrapper against Ragline's direct SSE transport.

Run: ``.venv/bin/python -m tests.bench.stream_overhead [--chunks 2000] [--rounds 3]``.

The stub LLM runs as its own process and streams one long answer as fast as it can; this
process reads it through ``BudgetedRouter.astream_chat`` on each transport (and, as the floor,
with bare httpx lines + ``json.loads``). CPU time of this process only, per chunk, the best of
``--rounds`` runs (the first run of each warms caches). This is the measurement behind
``LLM_DIRECT_STREAMING`` (see ``rag.llm.sse_stream``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import time

import httpx

from rag.llm.router import build_router
from tests.conftest import free_port, wait_for_url


async def through_router(api_base: str, direct: bool) -> int:
    router = build_router(timeout=60, max_retries=0, rate_limited=False, fallbacks={}, direct_streaming=direct)
    router.set_model_list([{"model_name": "m", "litellm_params": {
        "model": "openai/stub-chat", "api_base": api_base, "api_key": "k"}}])
    stream = await router.astream_chat("m", [{"role": "user", "content": "go"}], {})
    chunks = 0
    try:
        async for _ in stream:
            chunks += 1
    finally:
        await stream.aclose()
        await router.aclose_streams()
    return chunks


async def bare_httpx(api_base: str) -> int:
    chunks = 0
    body = {"model": "stub-chat", "stream": True, "messages": [{"role": "user", "content": "go"}]}
    async with httpx.AsyncClient() as client, client.stream("POST", api_base + "/chat/completions",
                                                            json=body) as response:
        async for line in response.aiter_lines():
            if line.startswith("data: ") and line != "data: [DONE]":
                json.loads(line[6:])
                chunks += 1
    return chunks


def cpu_per_chunk_us(run, api_base: str, rounds: int) -> float:
    best = float("inf")
    for _ in range(rounds + 1):
        started = time.process_time()
        chunks = asyncio.run(run(api_base))
        best = min(best, (time.process_time() - started) / chunks * 1e6)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chunks", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    port = free_port()
    reply = " ".join(f"w{i}" for i in range(args.chunks))
    stub = subprocess.Popen([sys.executable, "-m", "tests.fixtures.stub_llm", "--port", str(port), "--reply", reply],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    api_base = f"http://127.0.0.1:{port}/v1"
    try:
        wait_for_url(api_base + "/models", 60)
        litellm_us = cpu_per_chunk_us(lambda base: through_router(base, direct=False), api_base, args.rounds)
        direct_us = cpu_per_chunk_us(lambda base: through_router(base, direct=True), api_base, args.rounds)
        floor_us = cpu_per_chunk_us(bare_httpx, api_base, args.rounds)
    finally:
        stub.terminate()
        stub.wait(10)
    print(f"CPU per chunk, {args.chunks} chunks, best of {args.rounds}:")
    print(f"  LiteLLM stream wrapper   {litellm_us:8.1f} us")
    print(f"  direct SSE (Ragline)     {direct_us:8.1f} us")
    print(f"  bare httpx + json.loads  {floor_us:8.1f} us")
    print(f"litellm_over_direct_ratio={litellm_us / direct_us:.1f}")
    print(f"direct_over_bare_ratio={direct_us / floor_us:.2f}")


if __name__ == "__main__":
    main()
