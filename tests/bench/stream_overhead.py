"""CPU per streamed chunk: LiteLLM's stream wrapper against Ragline's direct SSE transport.

Run: ``.venv/bin/python -m tests.bench.stream_overhead [--chunks 2000] [--rounds 3]``.

The stub LLM runs as its own process and streams one long answer as fast as it can; this
process reads it through ``BudgetedRouter.astream_chat`` on each transport (and, as floors,
with bare aiohttp or httpx lines + ``json.loads``). CPU time of this process only, per chunk,
the best of ``--rounds`` runs (the first run of each warms caches). This is the measurement
behind ``LLM_DIRECT_STREAMING`` (see ``rag.llm.sse_stream``).

The second table is a typical RAG answer instead: a 15 KB prompt and an 18-token reply, many
in a row on one client, where the request and its headers weigh as much as the chunks. It is
the measurement behind aiohttp as the direct transport (httpx's HTTP layers are pure Python).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import time

import aiohttp
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


async def bare_aiohttp(api_base: str) -> int:
    chunks = 0
    body = {"model": "stub-chat", "stream": True, "messages": [{"role": "user", "content": "go"}]}
    async with aiohttp.ClientSession() as client, client.post(api_base + "/chat/completions", json=body) as response:
        async for raw in response.content:
            line = raw.decode().strip()
            if line.startswith("data: ") and line != "data: [DONE]":
                json.loads(line[6:])
                chunks += 1
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


SHORT_REPLY = " ".join(f"w{i}" for i in range(18))
PROMPT = "context " * 1900  # about 15 KB, what a few retrieved chunks make
WARM_ANSWERS = 5


async def short_answers_router(api_base: str, answers: int) -> float:
    """CPU seconds for ``answers`` short answers through the direct transport, after warm-up."""
    router = build_router(timeout=60, max_retries=0, rate_limited=False, fallbacks={}, direct_streaming=True)
    router.set_model_list([{"model_name": "m", "litellm_params": {
        "model": "openai/stub-chat", "api_base": api_base, "api_key": "k"}}])
    messages = [{"role": "system", "content": PROMPT}, {"role": "user", "content": "go"}]
    try:
        for n in range(WARM_ANSWERS + answers):
            if n == WARM_ANSWERS:
                started = time.process_time()
            stream = await router.astream_chat("m", messages, {})
            try:
                async for _ in stream:
                    pass
            finally:
                await stream.aclose()
        return time.process_time() - started
    finally:
        await router.aclose_streams()


def _short_body() -> dict:
    return {"model": "stub-chat", "stream": True,
            "messages": [{"role": "system", "content": PROMPT}, {"role": "user", "content": "go"}]}


async def short_answers_aiohttp(api_base: str, answers: int) -> float:
    async with aiohttp.ClientSession() as client:
        for n in range(WARM_ANSWERS + answers):
            if n == WARM_ANSWERS:
                started = time.process_time()
            async with client.post(api_base + "/chat/completions", json=_short_body()) as response:
                async for raw in response.content:
                    line = raw.decode().strip()
                    if line.startswith("data: ") and line != "data: [DONE]":
                        json.loads(line[6:])
        return time.process_time() - started


async def short_answers_httpx(api_base: str, answers: int) -> float:
    async with httpx.AsyncClient() as client:
        for n in range(WARM_ANSWERS + answers):
            if n == WARM_ANSWERS:
                started = time.process_time()
            async with client.stream("POST", api_base + "/chat/completions", json=_short_body()) as response:
                async for line in response.aiter_lines():
                    if line.startswith("data: ") and line != "data: [DONE]":
                        json.loads(line[6:])
        return time.process_time() - started


def cpu_per_answer_ms(run, api_base: str, answers: int, rounds: int) -> float:
    return min(asyncio.run(run(api_base, answers)) for _ in range(rounds)) / answers * 1e3


def start_stub(reply: str) -> tuple[subprocess.Popen, str]:
    port = free_port()
    stub = subprocess.Popen([sys.executable, "-m", "tests.fixtures.stub_llm", "--port", str(port), "--reply", reply],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    api_base = f"http://127.0.0.1:{port}/v1"
    wait_for_url(api_base + "/models", 60)
    return stub, api_base


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chunks", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--answers", type=int, default=200, help="short answers per round")
    args = parser.parse_args()
    stub, api_base = start_stub(" ".join(f"w{i}" for i in range(args.chunks)))
    short_stub, short_base = start_stub(SHORT_REPLY)
    try:
        litellm_us = cpu_per_chunk_us(lambda base: through_router(base, direct=False), api_base, args.rounds)
        direct_us = cpu_per_chunk_us(lambda base: through_router(base, direct=True), api_base, args.rounds)
        aiohttp_us = cpu_per_chunk_us(bare_aiohttp, api_base, args.rounds)
        httpx_us = cpu_per_chunk_us(bare_httpx, api_base, args.rounds)
        short_direct_ms = cpu_per_answer_ms(short_answers_router, short_base, args.answers, args.rounds)
        short_aiohttp_ms = cpu_per_answer_ms(short_answers_aiohttp, short_base, args.answers, args.rounds)
        short_httpx_ms = cpu_per_answer_ms(short_answers_httpx, short_base, args.answers, args.rounds)
    finally:
        for process in (stub, short_stub):
            process.terminate()
            process.wait(10)
    print(f"CPU per chunk, {args.chunks} chunks, best of {args.rounds}:")
    print(f"  LiteLLM stream wrapper     {litellm_us:8.1f} us")
    print(f"  direct SSE (Ragline)       {direct_us:8.1f} us")
    print(f"  bare aiohttp + json.loads  {aiohttp_us:8.1f} us")
    print(f"  bare httpx + json.loads    {httpx_us:8.1f} us")
    print(f"CPU per short answer (15 KB prompt, 18 tokens), {args.answers} in a row, best of {args.rounds}:")
    print(f"  direct SSE (Ragline)       {short_direct_ms:8.2f} ms")
    print(f"  bare aiohttp               {short_aiohttp_ms:8.2f} ms")
    print(f"  bare httpx                 {short_httpx_ms:8.2f} ms")
    print(f"litellm_over_direct_ratio={litellm_us / direct_us:.1f}")
    print(f"direct_over_bare_ratio={direct_us / aiohttp_us:.2f}")
    print(f"short_answer_direct_over_httpx_ratio={short_direct_ms / short_httpx_ms:.2f}")

if __name__ == "__main__":
    main()
