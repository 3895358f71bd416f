"""Round trip of a call to a child process: ``ChildPool`` against ``ProcessPoolExecutor``.

Run: ``.venv/bin/python -m tests.bench.child_round_trip [--calls 2000]``. Both pools have one
spawned child and are warm; each call sends a small payload and gets it back, one call at a
time, so the time is the hand-over itself (pickling, pipes, wake-ups), which every search and
every question embedding pays. Prints wall p50 per call in µs and the ratio measured in the
same run.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import statistics
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ProcessPoolExecutor

from rag.utils.child_process import ChildPool

PAYLOAD = b"x" * 1600  # about a question and its 384-float vector


def _quiet() -> None:
    """The children need no set-up."""


def _echo(data: bytes) -> bytes:
    return data


async def p50_us(call: Callable[[], Awaitable[object]], calls: int) -> float:
    for _ in range(min(calls, 100)):
        await call()
    times = []
    for _ in range(calls):
        started = time.perf_counter()
        await call()
        times.append((time.perf_counter() - started) * 1e6)
    return statistics.median(times)


async def measure(calls: int) -> tuple[float, float]:
    pool = ChildPool(1, _quiet)
    executor = ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn"))
    loop = asyncio.get_running_loop()
    try:
        await pool.warm_up()
        piped = await p50_us(lambda: pool.run(_echo, PAYLOAD), calls)
        through_threads = await p50_us(lambda: loop.run_in_executor(executor, _echo, PAYLOAD), calls)
    finally:
        pool.close()
        executor.shutdown()
    return piped, through_threads


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=2000)
    args = parser.parse_args()
    piped, through_threads = asyncio.run(measure(args.calls))
    print(f"round trip p50: ChildPool {piped:.0f} µs, ProcessPoolExecutor {through_threads:.0f} µs "
          f"(ratio {piped / through_threads:.2f})")


if __name__ == "__main__":
    main()
