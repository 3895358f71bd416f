"""``ChildPool``: calls written to and answers read from the children's shared pipes by the event
loop itself. Messages of any size arrive whole, calls beyond the children wait their turn and
go to whichever child is free, a call can run once in each child, a cancelled caller leaves its child usable, a child's exception
reaches the caller, a killed child is replaced (its call run again), and ``close`` ends the
children."""

from __future__ import annotations

import asyncio
import os
import signal
import time

import pytest

from rag.utils.child_process import ChildPool

BIG = 5 * 1024 * 1024  # far beyond a pipe's 64 KiB buffer, so both ends must wait for the other


def _quiet() -> None:
    """A child's initializer that does nothing (the pools under test need no set-up)."""


def _echo(data: bytes) -> bytes:
    return data


def _big_answer(size: int) -> bytes:
    return bytes(range(256)) * (size // 256)


def _pid_after(seconds: float) -> int:
    time.sleep(seconds)
    return os.getpid()


def _fail(message: str) -> None:
    raise LookupError(message)


@pytest.fixture
def pool():
    children = ChildPool(2, _quiet)
    yield children
    children.close()


async def test_calls_and_answers_larger_than_a_pipe_arrive_whole(pool: ChildPool) -> None:
    sent = os.urandom(BIG)
    assert await pool.run(_echo, sent) == sent
    assert await pool.run(_big_answer, BIG) == bytes(range(256)) * (BIG // 256)


async def test_the_loop_keeps_running_while_a_child_answers(pool: ChildPool) -> None:
    ticks = 0

    async def tick() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0.005)

    ticker = asyncio.create_task(tick())
    try:
        await pool.run(_pid_after, 0.3)
    finally:
        ticker.cancel()
    assert ticks >= 20  # the loop was free for most of the 0.3 s the call took


async def test_calls_beyond_the_children_wait_for_one_and_all_are_answered(pool: ChildPool) -> None:
    pids = await asyncio.gather(*(pool.run(_pid_after, 0.05) for _ in range(8)))
    assert len(pids) == 8
    assert len(set(pids)) <= 2
    assert os.getpid() not in pids


async def test_a_short_call_does_not_wait_behind_a_long_one_while_another_child_is_free(pool: ChildPool) -> None:
    await pool.warm_up()
    long = asyncio.ensure_future(pool.run(_pid_after, 1.0))
    await asyncio.sleep(0.1)  # a child has taken it
    short = asyncio.ensure_future(pool.run(_pid_after, 0))
    done, _ = await asyncio.wait({long, short}, return_when=asyncio.FIRST_COMPLETED)
    assert done == {short}
    assert short.result() != await long


async def test_a_call_whose_child_is_killed_midway_runs_again_in_a_new_child() -> None:
    pool = ChildPool(1, _quiet)
    try:
        [pid] = await pool.warm_up()
        call = asyncio.ensure_future(pool.run(_pid_after, 0.5))
        await asyncio.sleep(0.2)
        os.kill(pid, signal.SIGKILL)
        assert await call not in (pid, os.getpid())
    finally:
        pool.close()


async def test_a_cancelled_caller_leaves_its_child_to_answer_the_next_call() -> None:
    pool = ChildPool(1, _quiet)
    try:
        slow = asyncio.create_task(pool.run(_pid_after, 0.3))
        await asyncio.sleep(0.1)
        slow.cancel()
        with pytest.raises(asyncio.CancelledError):
            await slow
        assert await pool.run(_echo, b"next") == b"next"  # not the cancelled call's late answer
        [pid] = await pool.warm_up()
        assert await pool.run(_pid_after, 0) == pid  # the same child: it was not replaced
    finally:
        pool.close()


async def test_a_call_runs_once_in_every_child_and_in_flight_calls_are_counted(pool: ChildPool) -> None:
    assert pool.calls_in_flight == 0
    results = await pool.run_in_every_child(_pid_after, 0.05)  # busy children: the others take the retries
    assert sorted(results) == sorted(await pool.warm_up()) and all(pid == v for pid, v in results.items())
    slow = asyncio.ensure_future(pool.run(_pid_after, 0.3))
    await asyncio.sleep(0)
    assert pool.calls_in_flight == 1
    await slow
    assert pool.calls_in_flight == 0


async def test_a_child_exception_is_raised_in_the_caller(pool: ChildPool) -> None:
    with pytest.raises(LookupError, match="no such thing"):
        await pool.run(_fail, "no such thing")
    assert await pool.run(_echo, b"still here") == b"still here"


async def test_a_killed_child_is_replaced_and_the_call_answered() -> None:
    pool = ChildPool(1, _quiet)
    try:
        [pid] = await pool.warm_up()
        os.kill(pid, signal.SIGKILL)
        assert await pool.run(_echo, b"again") == b"again"
        assert await pool.warm_up() != [pid]
    finally:
        pool.close()


async def test_close_ends_the_children_and_refuses_new_calls() -> None:
    pool = ChildPool(2, _quiet)
    pids = await pool.warm_up()
    pool.close()
    for pid in pids:
        with pytest.raises(ProcessLookupError):  # exited and reaped
            os.kill(pid, 0)
    with pytest.raises(RuntimeError, match="closed"):
        await pool.run(_echo, b"late")


async def test_close_from_another_thread_fails_the_calls_still_waiting() -> None:
    pool = ChildPool(1, _quiet)
    await pool.warm_up()
    call = asyncio.ensure_future(pool.run(_pid_after, 0.5))
    await asyncio.sleep(0.1)
    await asyncio.to_thread(pool.close)  # as the server's shutdown closes it
    with pytest.raises(RuntimeError, match="closed"):
        await call
