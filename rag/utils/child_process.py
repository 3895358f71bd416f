"""Set-up shared by the pools of child processes the serving process starts (searches, embeddings).

Such a child does CPU work the serving process hands it; it must never compete with the event
loop it serves, and never outlive it.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import multiprocessing
import multiprocessing.connection
import os
import pickle
import struct
import threading
import weakref
from collections.abc import Callable
from typing import Any, TypeVar

from threadpoolctl import threadpool_limits

log = logging.getLogger(__name__)
T = TypeVar("T")
STARTUP_TIMEOUT = 120.0  # seconds every child of a pool gets to start (imports, a model's weights)
STOP_SECONDS = 5.0  # a stopped child's time to finish its call and exit before it is killed


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


def _exit_with_parent() -> None:
    parent = multiprocessing.parent_process()
    if parent is not None:
        multiprocessing.connection.wait([parent.sentinel])
        os._exit(0)


FRAME_HEADER = struct.Struct("<Q")  # a message's length, before its pickle
READ_CHUNK = 1 << 20


class ChildPool:
    """``processes`` spawned children that run the functions handed to ``run``, one call per
    child at a time; started on first use (or by ``warm_up``).

    Why not ``ProcessPoolExecutor``: each of its calls crosses two helper threads of the serving
    process (one feeds the children, one reads their answers and wakes the loop), each a GIL
    hand-over and a wake-up on a loaded machine. Here the loop itself writes a call to a child's
    pipe and reads the answer when the pipe is readable (``add_reader``), without blocking on a
    child that writes slowly (children run at a lower priority).

    A child that dies (killed, out of memory) is replaced and the call runs once more on
    another child, so one lost child costs one slow call, never every later one. A caller that
    is cancelled does not stop its child's call: the answer is read and dropped, and the child
    serves the next call. A child's pipes are watched by the loop of the call it runs, and only
    meanwhile, so several loops (threads, tests) may share a pool.
    """

    def __init__(self, processes: int, initializer: Callable[..., None], initargs: tuple = ()) -> None:
        if processes < 1:
            raise ValueError("a pool of child processes needs at least one process")
        self.processes = processes
        self._initializer = initializer
        self._initargs = initargs
        # spawn, not fork: the serving process has threads (and their locks) a fork would copy
        self._context = multiprocessing.get_context("spawn")
        self._idle: list[_PipedChild] = []
        self._count = 0  # children started and not yet retired
        self._waiting: collections.deque[asyncio.Future[_PipedChild]] = collections.deque()
        self._closed = False
        self._lock = threading.Lock()  # calls may come from more than one thread (each with its loop)
        self._finalizer = weakref.finalize(self, _stop_children, self._idle)

    async def warm_up(self) -> list[int]:
        """Start every child now (a spawned child takes a second or more) instead of on the
        first calls; returns the children's pids once each has answered."""
        return sorted(await asyncio.gather(*(self.run(os.getpid) for _ in range(self.processes))))

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """``fn(*args)`` in a child (``fn`` and the arguments must pickle); the child's exception
        is raised here as it was there."""
        try:
            ok, value = await self._run_once(fn, args)
        except ChildDied as died:
            log.warning("a child process died (%s); running the call again in a new one", died)
            ok, value = await self._run_once(fn, args)
        if ok:
            return value
        raise value

    async def _run_once(self, fn: Callable[..., Any], args: tuple) -> tuple[bool, Any]:
        message = pickle.dumps((fn, args), pickle.HIGHEST_PROTOCOL)
        child = await self._take()
        exchange = asyncio.ensure_future(child.exchange(message))
        exchange.add_done_callback(lambda done: self._settle(child, done))
        return await asyncio.shield(exchange)  # a cancelled caller leaves the answer to be read

    async def _take(self) -> _PipedChild:
        with self._lock:
            if self._closed:
                raise RuntimeError("the pool of child processes is closed")
            if self._idle:
                return self._idle.pop()
            start = self._count < self.processes
            if start:
                self._count += 1
            else:
                waiter = asyncio.get_running_loop().create_future()
                self._waiting.append(waiter)
        if start:
            return self._start()
        return await waiter

    def _start(self) -> _PipedChild:
        return _PipedChild(self._context, self._initializer, self._initargs)

    def _settle(self, child: _PipedChild, exchange: asyncio.Future) -> None:
        """After a call: the child serves the next waiting call, or waits idle; a dead one is
        retired (a waiting call then starts a fresh one)."""
        interrupted = exchange.cancelled() or isinstance(exchange.exception(), ChildDied)
        if interrupted or self._closed:
            child.stop(kill=interrupted)
            with self._lock:
                self._count -= 1
            self._wake_one(None)
        else:
            self._wake_one(child)

    def _wake_one(self, child: _PipedChild | None) -> None:
        """Hand ``child`` (when None, a child started for it) to the first call still waiting,
        on that call's own loop; with none waiting the child goes idle."""
        with self._lock:
            waiter = None
            while self._waiting and waiter is None:
                candidate = self._waiting.popleft()
                waiter = None if candidate.done() else candidate
            if waiter is None:
                if child is not None and not self._closed:
                    self._idle.append(child)
                elif child is not None:
                    child.stop()
                return
            if child is None:
                self._count += 1
        if child is None:
            child = self._start()
        try:
            waiter.get_loop().call_soon_threadsafe(self._hand_over, waiter, child)
        except RuntimeError:  # that loop is closed: its call is gone
            self._wake_one(child)

    def _hand_over(self, waiter: asyncio.Future, child: _PipedChild) -> None:
        if waiter.done():  # its caller gave up meanwhile
            self._wake_one(child)
        else:
            waiter.set_result(child)

    def close(self) -> None:
        """Stop the idle children now and each busy one when its call ends; calls still waiting
        for a child raise ``RuntimeError``."""
        with self._lock:
            self._closed = True
            waiting, self._waiting = list(self._waiting), collections.deque()
        for waiter in waiting:
            with contextlib.suppress(RuntimeError):  # a closed loop: nobody waits there any more
                waiter.get_loop().call_soon_threadsafe(_refuse, waiter)
        self._finalizer()


def _refuse(waiter: asyncio.Future) -> None:
    if not waiter.done():
        waiter.set_exception(RuntimeError("the pool of child processes is closed"))


def _stop_children(idle: list[_PipedChild]) -> None:
    while idle:
        idle.pop().stop()


class _PipedChild:
    """One child of a ``ChildPool`` and the two pipes to it. The serving process's ends never
    block: a call is written and its answer read as the pipes allow (``exchange``)."""

    def __init__(self, context: Any, initializer: Callable[..., None], initargs: tuple) -> None:
        calls_in, self._calls = context.Pipe(duplex=False)
        self._answers, answers_out = context.Pipe(duplex=False)
        self._process = context.Process(target=_serve_frames, args=(calls_in, answers_out, initializer, initargs),
                                        name="ragline-child", daemon=True)
        self._process.start()
        calls_in.close()
        answers_out.close()
        os.set_blocking(self._calls.fileno(), False)
        os.set_blocking(self._answers.fileno(), False)

    async def exchange(self, message: bytes) -> tuple[bool, Any]:
        """Send one pickled call, return the child's ``(ok, value)``; ``ChildDied`` if it ends first."""
        loop = asyncio.get_running_loop()
        await self._write(loop, FRAME_HEADER.pack(len(message)) + message)
        return pickle.loads(await self._read(loop))

    async def _write(self, loop: asyncio.AbstractEventLoop, frame: bytes) -> None:
        fd = self._calls.fileno()
        view = memoryview(frame)
        while view:
            try:
                view = view[os.write(fd, view):]
            except BlockingIOError:
                await _when_ready(loop, loop.add_writer, loop.remove_writer, fd)
            except (BrokenPipeError, ConnectionResetError) as error:
                raise ChildDied(self._process.exitcode) from error

    async def _read(self, loop: asyncio.AbstractEventLoop) -> bytes:
        fd = self._answers.fileno()
        received = bytearray()
        needed = FRAME_HEADER.size
        while len(received) < needed:
            try:
                chunk = os.read(fd, READ_CHUNK)
            except BlockingIOError:
                await _when_ready(loop, loop.add_reader, loop.remove_reader, fd)
                continue
            if not chunk:
                self._process.join(timeout=1)
                raise ChildDied(self._process.exitcode)
            received += chunk
            if needed == FRAME_HEADER.size and len(received) >= needed:
                needed += FRAME_HEADER.unpack_from(received)[0]
        return bytes(received[FRAME_HEADER.size:])

    def stop(self, kill: bool = False) -> None:
        """Close the pipes (the child's next read ends it), then make sure it is gone; ``kill``
        at once a child whose call was interrupted (its loop ended) or that died."""
        self._calls.close()
        self._answers.close()
        if kill:
            self._process.kill()
        self._process.join(timeout=STOP_SECONDS)
        if self._process.exitcode is None:
            self._process.kill()
            self._process.join(timeout=STOP_SECONDS)


async def _when_ready(loop: asyncio.AbstractEventLoop, add: Callable, remove: Callable, fd: int) -> None:
    """Wait until ``fd`` can be read (or written), watching it only meanwhile."""
    ready = loop.create_future()
    add(fd, lambda: ready.done() or ready.set_result(None))
    try:
        await ready
    finally:
        remove(fd)


def _serve_frames(calls: multiprocessing.connection.Connection, answers: multiprocessing.connection.Connection,
                  initializer: Callable[..., None], initargs: tuple) -> None:
    """A ``ChildPool`` child's main: set up, then answer one framed call after another until
    the serving process closes its end."""
    initializer(*initargs)
    calls_fd, answers_fd = calls.fileno(), answers.fileno()
    while (message := _read_frame(calls_fd)) is not None:
        fn, args = pickle.loads(message)
        try:
            reply = (True, fn(*args))
        except BaseException as error:  # noqa: BLE001 - every failure travels back to the caller
            reply = (False, _portable(error))
        try:
            answer = pickle.dumps(reply, pickle.HIGHEST_PROTOCOL)
        except Exception as error:  # noqa: BLE001 - an answer that does not pickle
            answer = pickle.dumps((False, RuntimeError(f"the answer could not be sent back: "
                                                       f"{type(error).__name__}: {error}")))
        _write_all(answers_fd, FRAME_HEADER.pack(len(answer)) + answer)


def _read_frame(fd: int) -> bytes | None:
    header = _read_exactly(fd, FRAME_HEADER.size)
    return None if header is None else _read_exactly(fd, FRAME_HEADER.unpack(header)[0])


def _read_exactly(fd: int, size: int) -> bytes | None:
    """``size`` bytes from a blocking ``fd``; None at end of file."""
    parts, left = [], size
    while left:
        chunk = os.read(fd, min(left, READ_CHUNK))
        if not chunk:
            return None
        parts.append(chunk)
        left -= len(chunk)
    return b"".join(parts)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


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
