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
import time
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


FRAME_HEADER = struct.Struct("<qQ")  # a message's call id (0: a child saying it is ready) and length
READ_CHUNK = 1 << 20
EXTRA_CALLS = 1  # calls in the pipe beyond one per child, so a child that answers finds its next one
EVERY_CHILD_RETRY_SECONDS = 0.05  # between rounds of ``run_in_every_child``


def _with_pid(fn: Callable[..., T], *args: Any) -> tuple[int, T]:
    return os.getpid(), fn(*args)


class ChildPool:
    """``processes`` spawned children that run the functions handed to ``run``; started on first
    use (or by ``warm_up``).

    As in ``ProcessPoolExecutor``, the children take calls from one shared pipe (whichever is
    free takes the next; a few wait in the pipe, so none idles between calls) and answer on
    another. Unlike it, no helper thread of the serving process moves calls and answers: under
    load each of its calls crossed two (a GIL hand-over and a wake-up each). Here the event loop
    writes the calls as the pipe accepts them and reads the answers when the pipe is readable,
    never blocking on a child that writes slowly (children run at a lower priority).

    A child that dies (killed, out of memory) fails the calls in flight with ``ChildDied``; a
    fresh set of children is started and each such call runs once more, so one lost child costs
    one slow call, never every later one. A cancelled caller's call is dropped if it has not
    reached a child, else its answer is read and dropped. The pipes are watched by the loop of
    the calls in flight and only meanwhile, so several loops (tests) may use a pool in turn.
    """

    def __init__(self, processes: int, initializer: Callable[..., None], initargs: tuple = ()) -> None:
        if processes < 1:
            raise ValueError("a pool of child processes needs at least one process")
        self.processes = processes
        self._initializer = initializer
        self._initargs = initargs
        # spawn, not fork: the serving process has threads (and their locks) a fork would copy
        self._context = multiprocessing.get_context("spawn")
        self._lock = threading.Lock()
        self._children: _ChildSet | None = None
        self._closed = False

    def _current(self) -> _ChildSet:
        with self._lock:
            if self._closed:
                raise RuntimeError("the pool of child processes is closed")
            if self._children is None or self._children.broken:
                self._children = _ChildSet(self._context, self.processes, self._initializer, self._initargs)
            return self._children

    @property
    def calls_in_flight(self) -> int:
        """Calls handed to the children (or waiting for one) and not answered yet."""
        children = self._children
        return 0 if children is None else children.calls_in_flight

    async def warm_up(self) -> list[int]:
        """Start every child now (a spawned child takes a second or more) instead of on the
        first calls; returns the children's pids once each has set itself up."""
        async with asyncio.timeout(STARTUP_TIMEOUT):
            return await self._current().ready()

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """``fn(*args)`` in a child (``fn`` and the arguments must pickle); the child's exception
        is raised here as it was there."""
        message = pickle.dumps((fn, args), pickle.HIGHEST_PROTOCOL)
        try:
            ok, value = await self._current().call(message)
        except ChildDied as died:
            log.warning("a child process died (%s); starting a new set and running the call again", died)
            ok, value = await self._current().call(message)
        if ok:
            return value
        raise value

    async def run_in_every_child(self, fn: Callable[..., T], *args: Any) -> dict[int, T]:
        """``fn(*args)`` once in each child (starting them first): the results by the pid that
        computed them, from every child that answered within ``STARTUP_TIMEOUT``.

        Nothing sends a call to a given child: one that is free may take the next call too
        while a sibling is still starting. So calls are sent, side by side, until every child
        has answered one (later answers of a child that answered already are dropped).
        """
        pids = set(await self.warm_up())
        results: dict[int, T] = {}
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while pids - results.keys() and time.monotonic() < deadline:
            answers = await asyncio.gather(*(self.run(_with_pid, fn, *args) for _ in pids - results.keys()))
            for pid, value in answers:
                results.setdefault(pid, value)
            if pids - results.keys():
                await asyncio.sleep(EVERY_CHILD_RETRY_SECONDS)  # let the slower child come to the queue
        return {pid: value for pid, value in results.items() if pid in pids}

    def close(self) -> None:
        """Stop the children once their current calls end; calls not yet answered raise
        ``ChildDied``."""
        with self._lock:
            self._closed = True
            children, self._children = self._children, None
        if children is not None:
            children.stop()


class _ChildSet:
    """One generation of a ``ChildPool``'s children, the two pipes they share and the calls in
    flight. Everything but ``stop`` runs on the loop of the calls in flight."""

    def __init__(self, context: Any, processes: int, initializer: Callable[..., None], initargs: tuple) -> None:
        calls_in, self._calls = context.Pipe(duplex=False)
        self._answers, answers_out = context.Pipe(duplex=False)
        # One child reads a call, and one writes an answer, at a time. Kept here: a lock dropped by
        # this process before a child has unpickled it is gone for the child.
        self._take, self._give = context.Lock(), context.Lock()
        self._processes = [
            context.Process(target=_serve_calls_from_pipe, name="ragline-child", daemon=True,
                            args=(calls_in, answers_out, self._take, self._give, initializer, initargs))
            for _ in range(processes)]
        for process in self._processes:
            process.start()
        calls_in.close()
        answers_out.close()
        os.set_blocking(self._calls.fileno(), False)
        os.set_blocking(self._answers.fileno(), False)
        self.broken = False
        self._next_id = 0
        self._unsent: collections.deque[tuple[int, bytes]] = collections.deque()
        self._in_pipe = 0  # calls written and not yet answered
        self._outgoing = bytearray()  # what the calls pipe has not accepted yet
        self._incoming = bytearray()
        self._pending: dict[int, asyncio.Future] = {}
        self._ready_pids: set[int] = set()
        self._ready_waiters: list[asyncio.Future] = []
        self._loop: asyncio.AbstractEventLoop | None = None  # watching the pipes, while anything waits

    async def call(self, message: bytes) -> tuple[bool, Any]:
        loop = self._bind()
        self._next_id += 1
        answer = self._pending[self._next_id] = loop.create_future()
        self._unsent.append((self._next_id, message))
        self._send_more()
        return await answer

    @property
    def calls_in_flight(self) -> int:
        return len(self._pending)

    async def ready(self) -> list[int]:
        loop = self._bind()
        if len(self._ready_pids) < len(self._processes):
            waiter = loop.create_future()
            self._ready_waiters.append(waiter)
            await waiter
        return sorted(self._ready_pids)

    # -- on the loop --------------------------------------------------------------------------

    def _bind(self) -> asyncio.AbstractEventLoop:
        """Watch the pipes (and the children's exits) from the running loop."""
        if self.broken:
            raise ChildDied(None)
        loop = asyncio.get_running_loop()
        if self._loop is loop:
            return loop
        if self._loop is not None and not self._loop.is_closed():
            raise RuntimeError("these child processes are serving calls of another event loop")
        self._pending.clear()  # calls of a loop that is gone: nobody waits for them any more
        self._ready_waiters.clear()
        self._loop = loop
        loop.add_reader(self._answers.fileno(), self._on_answers)
        for process in self._processes:  # a child that ends takes its calls, and maybe a pipe's lock, with it
            loop.add_reader(process.sentinel, self._break)
        if self._outgoing:
            loop.add_writer(self._calls.fileno(), self._flush)
        return loop

    def _unbind_when_idle(self) -> None:
        self._ready_waiters = [waiter for waiter in self._ready_waiters if not waiter.done()]
        if not (self._pending or self._ready_waiters or self._outgoing):
            self._unwatch()

    def _unwatch(self) -> None:
        loop, self._loop = self._loop, None
        if loop is None or loop.is_closed():
            return
        loop.remove_writer(self._calls.fileno())
        loop.remove_reader(self._answers.fileno())
        for process in self._processes:
            loop.remove_reader(process.sentinel)

    def _send_more(self) -> None:
        """Move calls into the pipe while fewer than one per child (plus ``EXTRA_CALLS``) wait there."""
        limit = len(self._processes) + EXTRA_CALLS
        while self._unsent and self._in_pipe < limit:
            call_id, message = self._unsent.popleft()
            answer = self._pending.get(call_id)
            if answer is None or answer.done():  # its caller gave up before a child saw it
                self._pending.pop(call_id, None)
                continue
            self._outgoing += FRAME_HEADER.pack(call_id, len(message)) + message
            self._in_pipe += 1
        self._flush()

    def _flush(self) -> None:
        if not self._outgoing:
            return
        try:
            written = os.write(self._calls.fileno(), self._outgoing)
        except BlockingIOError:
            written = 0
        except (BrokenPipeError, ConnectionResetError):
            self._break()
            return
        del self._outgoing[:written]
        if self._outgoing:
            self._loop.add_writer(self._calls.fileno(), self._flush)
        else:
            self._loop.remove_writer(self._calls.fileno())

    def _on_answers(self) -> None:
        while True:
            try:
                chunk = os.read(self._answers.fileno(), READ_CHUNK)
            except BlockingIOError:
                break
            if not chunk:  # every child is gone
                self._break()
                return
            self._incoming += chunk
        while len(self._incoming) >= FRAME_HEADER.size:
            call_id, size = FRAME_HEADER.unpack_from(self._incoming)
            end = FRAME_HEADER.size + size
            if len(self._incoming) < end:
                break
            payload = bytes(self._incoming[FRAME_HEADER.size:end])
            del self._incoming[:end]
            self._deliver(call_id, payload)
        if not self.broken:
            self._send_more()
            self._unbind_when_idle()

    def _deliver(self, call_id: int, payload: bytes) -> None:
        if call_id == 0:  # a child has set itself up
            self._ready_pids.add(pickle.loads(payload))
            if len(self._ready_pids) >= len(self._processes):
                for waiter in self._ready_waiters:
                    if not waiter.done():
                        waiter.set_result(None)
                self._ready_waiters.clear()
            return
        self._in_pipe -= 1
        answer = self._pending.pop(call_id, None)
        if answer is None or answer.done():
            return
        try:
            answer.set_result(pickle.loads(payload))
        except Exception as error:  # noqa: BLE001 - an answer this process cannot rebuild
            answer.set_exception(error)

    def _break(self) -> None:
        """Fail every waiting call with ``ChildDied`` and stop the set (the pool starts another)."""
        if self.broken:
            return
        self.broken = True
        self._fail_waiting()
        self.stop(kill=True)

    def _fail_waiting(self) -> None:
        exitcode = next((p.exitcode for p in self._processes if p.exitcode is not None), None)
        waiting = list(self._pending.values()) + self._ready_waiters
        self._pending.clear()
        self._ready_waiters.clear()
        for future in waiting:
            if not future.done():
                with contextlib.suppress(RuntimeError):  # a future of a loop that is closed
                    future.set_exception(ChildDied(exitcode))

    # -- from any thread ---------------------------------------------------------------------

    def stop(self, kill: bool = False) -> None:
        """End the children: ``kill`` at once, else each once it has finished its call (within
        ``STOP_SECONDS``) and read the end of the calls pipe. A loop in another thread that
        watches the pipes lets go of them itself first."""
        self.broken = True
        if kill:
            for process in self._processes:
                process.kill()
        loop = self._loop
        if loop is not None and not loop.is_closed() and not _runs_here(loop):
            with contextlib.suppress(RuntimeError):  # closed meanwhile: then nobody watches
                loop.call_soon_threadsafe(self.stop, kill)
                return
        self._unwatch()
        self._fail_waiting()  # nobody reads their answers any more
        with contextlib.suppress(OSError):
            self._calls.close()
        for process in self._processes:
            process.join(timeout=STOP_SECONDS)
            if process.exitcode is None:
                process.kill()
                process.join(timeout=STOP_SECONDS)
        with contextlib.suppress(OSError):
            self._answers.close()


def _runs_here(loop: asyncio.AbstractEventLoop) -> bool:
    try:
        return asyncio.get_running_loop() is loop
    except RuntimeError:
        return False


def _serve_calls_from_pipe(calls: multiprocessing.connection.Connection,
                           answers: multiprocessing.connection.Connection, take: Any, give: Any,
                           initializer: Callable[..., None], initargs: tuple) -> None:
    """A ``ChildPool`` child's main: set up, say so, then take one call after another from the
    shared pipe until the serving process closes it."""
    initializer(*initargs)
    calls_fd, answers_fd = calls.fileno(), answers.fileno()
    _answer(answers_fd, give, 0, pickle.dumps(os.getpid()))
    while True:
        with take:
            header = _read_exactly(calls_fd, FRAME_HEADER.size)
            if header is None:
                return
            call_id, size = FRAME_HEADER.unpack(header)
            message = _read_exactly(calls_fd, size)
        if message is None:
            return
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
        _answer(answers_fd, give, call_id, answer)


def _answer(fd: int, give: Any, call_id: int, answer: bytes) -> None:
    with give:
        _write_all(fd, FRAME_HEADER.pack(call_id, len(answer)) + answer)


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
