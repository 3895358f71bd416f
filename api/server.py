"""Serving the app under hypercorn, with a graceful stop on SIGTERM/SIGINT.

On a stop signal hypercorn stops accepting connections, gives in-flight requests
``graceful_timeout`` seconds to finish, then runs the app's shutdown (which closes the database).
"""

from __future__ import annotations

import asyncio
import gc
import inspect
import logging
import signal
import sys

from hypercorn.asyncio import serve
from hypercorn.config import Config
from quart import Quart

from api.app import create_app
from api.components import EXTENSION_KEY
from api.settings import Settings

log = logging.getLogger("ragline.server")
GIL_SWITCH_INTERVAL = 0.001  # seconds; CPython's default is 0.005
# Collect the youngest generation every 50,000 net allocations instead of 700 (CPython's default),
# the older ones after 20 and 10 of those. Under chat_load the default paused the serving process
# ~6 times a second: the 200 streams' objects outlive a young collection and were walked again at
# every middle one (about 11 ms each) and every full one (about 33 ms). Loop-lag p99 33.7 ms
# with the default, 19.8 ms with these, 20.0 ms with the collector off, in back-to-back runs.
GC_THRESHOLDS = (50_000, 20, 10)


def hypercorn_config(settings: Settings) -> Config:
    config = Config()
    config.bind = [f"{settings.host}:{settings.port}"]
    config.graceful_timeout = settings.graceful_timeout
    config.accesslog = None
    config.errorlog = logging.getLogger("hypercorn.error")
    config.keep_alive_timeout = 75
    return config


async def warm_up_and_freeze(app: Quart) -> None:
    """Load the default embedding model now, then exclude everything loaded so far from
    garbage collection.

    Measured under chat load: full collections took 200–460 ms each, every few seconds,
    walking the model's, LiteLLM's and the libraries' objects that live as long as the
    process; every stream stalled meanwhile. ``gc.freeze()`` moves them out of the
    collector's reach. Loading the model first (in its embedding processes, or else in the
    compute pool, so the model's own threads inherit its lower priority) puts it among them
    and spares the first question the wait. A model that cannot load is left to fail, with its
    reason, where it is used. The search processes start here too, so no question waits for
    one to spawn, and load the model's question graph (``Components.warm_up_question_search``).
    Young objects are then collected in larger, rarer batches (``GC_THRESHOLDS``).
    """
    parts = app.extensions[EXTENSION_KEY]
    try:
        model = parts.registry.embedding_model(parts.settings.embedding_model)
        if inspect.iscoroutinefunction(getattr(model, "warm_up", None)):
            await model.warm_up()  # in the embedding processes
        elif hasattr(model, "warm_up"):
            await parts.run_compute(model.warm_up)
    except Exception:  # noqa: BLE001 - a start-up nicety; the model's users report the failure
        log.warning("could not warm up %s", parts.settings.embedding_model, exc_info=True)
    if parts.search_processes is not None:
        await parts.search_processes.warm_up()
        if parts.settings.search_embeds_questions:
            try:
                await parts.warm_up_question_search(parts.settings.embedding_model)
            except Exception:  # noqa: BLE001 - questions then reach the embedding processes first, as before
                log.warning("the search processes cannot embed questions", exc_info=True)
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


async def serve_until(settings: Settings, stop: asyncio.Event) -> None:
    """Serve until ``stop`` is set (tests set it; ``run`` ties it to the signals).

    The serving process hands the GIL over every millisecond instead of five: with searches
    and database calls in threads, the loop otherwise waits up to a whole interval each time
    it needs the GIL back (chat_load: TTFT overhead p50 91 → 67 ms under the same load).
    """
    sys.setswitchinterval(GIL_SWITCH_INTERVAL)
    app = create_app(settings)

    @app.before_serving
    async def _warm_up() -> None:  # after the app's own start-up, registered first
        await warm_up_and_freeze(app)

    announcer = asyncio.create_task(announce_when_listening(settings.host, settings.port, stop))
    try:
        await serve(app, hypercorn_config(settings), shutdown_trigger=stop.wait)
    finally:
        announcer.cancel()


async def announce_when_listening(host: str, port: int, stop: asyncio.Event, poll: float = 0.05) -> None:
    """Say "listening" once a connection to the port succeeds: hypercorn binds only after the
    app's start-up (migrations, model warm-up), and a line printed before that sent newcomers
    to a port that refused them."""
    while not stop.is_set():
        try:
            _, writer = await asyncio.open_connection(host, port)
        except OSError:
            await asyncio.sleep(poll)
            continue
        writer.close()
        print(f"Ragline listening on http://{host}:{port}", flush=True)
        return


async def _serve_with_signals(settings: Settings) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    await serve_until(settings, stop)


def new_event_loop(kind: str) -> asyncio.AbstractEventLoop:
    """The serving process's event loop: uvloop's by default, the standard library's on request.

    Under chat_load the serving process is the bottleneck, and much of its time is the loop's own
    work: socket reads and writes, callbacks, timers (the README's chat load numbers). uvloop
    does that work in C (libuv); the application code is unchanged, and ``RAGLINE_EVENT_LOOP=
    asyncio`` brings the standard loop back (to compare, or where uvloop misbehaves).
    """
    if kind == "uvloop":
        import uvloop

        return uvloop.new_event_loop()
    return asyncio.new_event_loop()


def run(settings: Settings) -> None:
    """Serve in the foreground until a stop signal."""
    with asyncio.Runner(loop_factory=lambda: new_event_loop(settings.event_loop)) as runner:
        runner.run(_serve_with_signals(settings))
