"""Set-up shared by the pools of child processes the serving process starts (searches, embeddings).

Such a child does CPU work the serving process hands it; it must never compete with the event
loop it serves, and never outlive it.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import multiprocessing.connection
import os
import pickle
import threading
import weakref
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any, TypeVar

from threadpoolctl import threadpool_limits

log = logging.getLogger(__name__)
T = TypeVar("T")
STARTUP_TIMEOUT = 120.0  # seconds every child of a pool gets to start (imports, a model's weights)


def settle_in_child(niceness: int) -> None:
    """Pool initializer: the offline environment, one BLAS thread, a lower priority and an exit
    with the parent.

    One BLAS thread: a child's matrix products are small, and OpenBLAS's own threads spin while
    they wait, at the parent's priority: under chat load they burned most of a core. (Niceness
    is per thread on Linux: it holds for the thread that works and those it starts.) Without
    the watch, a child outlives a killed parent: it holds both ends of the pipe it reads its
    work from, so it never sees EOF.
    """
    import rag  # noqa: F401  - the offline environment, before any library reads it

    threadpool_limits(1, user_api="blas")
    try:
        os.nice(niceness)
    except (AttributeError, OSError):
        pass
    threading.Thread(target=_exit_with_parent, name="ragline-child-orphan-watch", daemon=True).start()


def _announce_then(announced: Any, initializer: Callable[..., None], initargs: tuple) -> None:
    """Initializer of a ``ChildPool`` child: tell the pool this child's pid, then set up."""
    announced.put(os.getpid())
    initializer(*initargs)


def _exit_with_parent() -> None:
    parent = multiprocessing.parent_process()
    if parent is not None:
        multiprocessing.connection.wait([parent.sentinel])
        os._exit(0)


class ChildPool:
    """``processes`` spawned children that run the functions handed to ``run``; started on first
    use (or by ``warm_up``).

    A child that dies (killed, out of memory) breaks a ``ProcessPoolExecutor`` for good; the
    pool then starts a fresh set of children and runs the call once more, so one lost child
    costs one slow call, never every later one.
    """

    def __init__(self, processes: int, initializer: Callable[..., None], initargs: tuple = ()) -> None:
        if processes < 1:
            raise ValueError("a pool of child processes needs at least one process")
        self.processes = processes
        self._initializer = initializer
        self._initargs = initargs
        self._executor: ProcessPoolExecutor | None = None
        self._announced: Any = None  # the current children's pids, each sent once as it starts
        self._pids: list[int] = []

    def executor(self) -> ProcessPoolExecutor:
        if self._executor is None:
            # spawn, not fork: the serving process has threads (and their locks) a fork would copy
            context = multiprocessing.get_context("spawn")
            self._announced, self._pids = context.SimpleQueue(), []
            self._executor = ProcessPoolExecutor(self.processes, mp_context=context, initializer=_announce_then,
                                                 initargs=(self._announced, self._initializer, self._initargs))
        return self._executor

    async def warm_up(self) -> list[int]:
        """Start every child now (a spawned child takes a second or more) instead of on the
        first calls; returns the children's pids.

        The pids come from the children as they start: the answers of the calls that start them
        would not do, since a child that is up first may answer several of them.
        """
        loop = asyncio.get_running_loop()
        pool = self.executor()
        await asyncio.gather(*(loop.run_in_executor(pool, os.getpid) for _ in range(self.processes)))
        async with asyncio.timeout(STARTUP_TIMEOUT):
            while True:
                while not self._announced.empty():  # a poll of the pipe: never blocks
                    self._pids.append(self._announced.get())
                if len(self._pids) >= self.processes:
                    return sorted(self._pids)
                await asyncio.sleep(0.02)

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """``fn(*args)`` in a child (``fn`` and the arguments must pickle)."""
        loop = asyncio.get_running_loop()
        pool = self.executor()
        try:
            return await loop.run_in_executor(pool, fn, *args)
        except BrokenProcessPool:
            log.warning("a child process died; starting a new set and running the call again")
            self._discard(pool)
            return await loop.run_in_executor(self.executor(), fn, *args)

    def _discard(self, broken: ProcessPoolExecutor) -> None:
        """Forget ``broken`` unless a concurrent call has replaced it already."""
        if self._executor is broken:
            self._executor = None
            self._announced.close()
        broken.shutdown(wait=False, cancel_futures=True)

    def close(self) -> None:
        """Stop the children once their current calls end."""
        if self._executor is not None:
            self._executor.shutdown(wait=True, cancel_futures=True)
            self._executor = None
            self._announced.close()


# -- children that can be stopped mid-call ------------------------------------------------------


class ChildDied(RuntimeError):
    """The child ended before answering: killed, out of memory, or crashed."""

    def __init__(self, exitcode: int | None) -> None:
        self.exitcode = exitcode
        how = f"was killed by signal {-exitcode}" if exitcode is not None and exitcode < 0 else f"exited ({exitcode})"
        super().__init__(f"the child process {how} before answering")


def _serve_calls(conn: multiprocessing.connection.Connection, initializer: Callable[..., None],
                 initargs: tuple) -> None:
    """A ``StoppableChild``'s main: set up, say so, then answer ``(fn, args)`` messages one at a time."""
    initializer(*initargs)
    conn.send(os.getpid())
    while True:
        try:
            fn, args = conn.recv()
        except EOFError:  # the parent closed its end: nothing more to do
            return
        try:
            reply = (True, fn(*args))
        except BaseException as error:  # noqa: BLE001 - every failure travels back to the caller
            reply = (False, _portable(error))
        try:
            conn.send(reply)
        except Exception as error:  # noqa: BLE001 - an answer that does not pickle, or is too big
            conn.send((False, RuntimeError(f"the answer could not be sent back: {type(error).__name__}: {error}")))


def _portable(error: BaseException) -> BaseException:
    """``error`` if the parent can rebuild it, else a ``RuntimeError`` that names it (an
    exception whose ``__init__`` takes other arguments than its ``args`` would fail to unpickle
    in the parent, far from its cause)."""
    try:
        pickle.loads(pickle.dumps(error))
    except Exception:  # noqa: BLE001 - any failure to travel
        return RuntimeError(f"{type(error).__name__}: {error}")
    return error


class StoppableChild:
    """One child process that runs the calls sent to it, one at a time, and can be killed in
    the middle of one (``ProcessPoolExecutor`` cannot stop a call it has started).

    ``wait_ready`` and ``call`` block (run them in a thread); ``kill`` is safe from any thread
    and makes either raise ``ChildDied`` at once.
    """

    def __init__(self, context: Any, initializer: Callable[..., None], initargs: tuple, name: str) -> None:
        self._conn, child_end = context.Pipe()
        self._process = context.Process(target=_serve_calls, args=(child_end, initializer, initargs),
                                        name=name, daemon=True)
        self._process.start()
        child_end.close()
        self._ready = False

    @property
    def pid(self) -> int | None:
        return self._process.pid

    def wait_ready(self) -> int:
        """Wait until the child has set itself up (imports, initializer); returns its pid."""
        if not self._ready:
            self._exchange(None)
            self._ready = True
        return self._process.pid

    def call(self, fn: Callable[..., T], *args: Any) -> T:
        """``fn(*args)`` in the child; the child's exception is raised here as it was there."""
        self.wait_ready()
        ok, value = self._exchange((fn, args))
        if ok:
            return value
        raise value

    def _exchange(self, message: Any) -> Any:
        """Send ``message`` (unless None), return the answer; ``ChildDied`` if the child is gone."""
        try:
            if message is not None:
                self._conn.send(message)
            return self._conn.recv()
        except (EOFError, OSError) as error:
            self._process.join(timeout=5)
            self._conn.close()
            raise ChildDied(self._process.exitcode) from error

    def kill(self) -> None:
        """SIGKILL: the child holds nothing worth a clean exit."""
        if self._process.exitcode is None:
            self._process.kill()

    def close(self) -> None:
        """Kill an idle child and release its pipe (never while a thread is in ``call``)."""
        self.kill()
        self._process.join(timeout=5)
        self._conn.close()


class StoppablePool:
    """Up to ``processes`` warm children (``StoppableChild``), each running one call at a time.

    A call given up on (over its ``timeout``, or its awaiting task cancelled) kills the child
    that runs it and a fresh child takes its place, so the work stops at once and the next call
    does not wait for a start. Children are started on first use or by ``warm_up``. Nothing in
    the pool is bound to an event loop: one pool can serve several loops in turn (tests).

    The caller bounds how many calls run at once; a call that finds no idle child starts one,
    and a child coming back to a full pool is closed.
    """

    def __init__(self, processes: int, initializer: Callable[..., None], initargs: tuple = (),
                 name: str = "ragline-child") -> None:
        if processes < 1:
            raise ValueError("a pool of child processes needs at least one process")
        self.processes = processes
        self._initializer = initializer
        self._initargs = initargs
        self._name = name
        self._context = multiprocessing.get_context("spawn")  # see ChildPool.executor
        self._lock = threading.Lock()
        self._idle: list[StoppableChild] = []
        self._busy: set[StoppableChild] = set()
        self._closed = False
        # A pool dropped without close() (a script, a test) still takes its children with it.
        self._finalizer = weakref.finalize(self, _kill_all, self._idle, self._busy)

    def _start(self) -> StoppableChild:
        return StoppableChild(self._context, self._initializer, self._initargs, self._name)

    def _take(self) -> StoppableChild:
        with self._lock:
            if self._closed:
                raise RuntimeError("the pool is closed")
            child = self._idle.pop() if self._idle else self._start()
            self._busy.add(child)
            return child

    def _give_back(self, child: StoppableChild) -> None:
        with self._lock:
            self._busy.discard(child)
            keep = not self._closed and len(self._idle) < self.processes
            if keep:
                self._idle.append(child)
        if not keep:
            child.close()

    def _replace(self, child: StoppableChild) -> None:
        """Forget a dead or killed child; start its successor now, so it is warm when needed."""
        child.kill()
        with self._lock:
            self._busy.discard(child)
            if not self._closed and len(self._idle) < self.processes:
                self._idle.append(self._start())

    async def warm_up(self) -> list[int]:
        """Start every child now and wait until each answers; returns their pids."""
        with self._lock:
            while len(self._idle) < self.processes and not self._closed:
                self._idle.append(self._start())
            children = list(self._idle)
            self._idle.clear()
            self._busy.update(children)
        try:
            async with asyncio.timeout(STARTUP_TIMEOUT):
                return sorted(await asyncio.gather(*(asyncio.to_thread(child.wait_ready) for child in children)))
        finally:
            for child in children:
                self._give_back(child)

    async def run(self, fn: Callable[..., T], *args: Any, time_limit: float | None = None) -> T:
        """``fn(*args)`` in an idle child; ``TimeoutError`` if it runs longer than ``time_limit``
        seconds (counted once the child is ready: a fresh child's start is not the call's time).

        Past the limit, or when the awaiting task is cancelled, the child is killed at once; a
        child that died (``ChildDied``) or ran out of memory (``MemoryError``) is replaced too.
        """
        child = self._take()
        try:
            async with asyncio.timeout(STARTUP_TIMEOUT):
                await asyncio.to_thread(child.wait_ready)
            async with asyncio.timeout(time_limit):
                result = await asyncio.to_thread(child.call, fn, *args)
        except (ChildDied, MemoryError, TimeoutError, asyncio.CancelledError):
            self._replace(child)
            raise
        except BaseException:
            self._give_back(child)
            raise
        self._give_back(child)
        return result

    def close(self) -> None:
        """Kill every child, idle or busy: a call in progress raises ``ChildDied``."""
        with self._lock:
            self._closed = True
        self._finalizer()


def _kill_all(idle: list[StoppableChild], busy: set[StoppableChild]) -> None:
    for child in list(busy):
        child.kill()
    while idle:
        idle.pop().close()
