"""Serving the app under hypercorn, with a graceful stop on SIGTERM/SIGINT.

On a stop signal hypercorn stops accepting connections, gives in-flight requests
``graceful_timeout`` seconds to finish, then runs the app's shutdown (which closes the database).
"""

from __future__ import annotations

import asyncio
import logging
import signal

from hypercorn.asyncio import serve
from hypercorn.config import Config

from api.app import create_app
from api.settings import Settings


def hypercorn_config(settings: Settings) -> Config:
    config = Config()
    config.bind = [f"{settings.host}:{settings.port}"]
    config.graceful_timeout = settings.graceful_timeout
    config.accesslog = None
    config.errorlog = logging.getLogger("hypercorn.error")
    config.keep_alive_timeout = 75
    return config


async def serve_until(settings: Settings, stop: asyncio.Event) -> None:
    """Serve until ``stop`` is set (tests set it; ``run`` ties it to the signals)."""
    app = create_app(settings)
    await serve(app, hypercorn_config(settings), shutdown_trigger=stop.wait)


async def _serve_with_signals(settings: Settings) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    await serve_until(settings, stop)


def run(settings: Settings) -> None:
    """Serve in the foreground until a stop signal."""
    print(f"Ragline listening on http://{settings.host}:{settings.port}", flush=True)
    asyncio.run(_serve_with_signals(settings))
