"""Run the API on Hypercorn in this process until SIGTERM or SIGINT.

The caller (`hoodydb serve`) owns everything around it, the mount included: `serve()` returns once
Hypercorn has stopped and every database is closed, and only then is the mount taken down.
"""

from __future__ import annotations

import asyncio
import logging
import signal

from hypercorn.asyncio import serve as hypercorn_serve
from hypercorn.config import Config

from hoodydb.api.app import create_app
from hoodydb.api.config import ApiConfig

# How long in-flight requests get to finish after a stop signal.
GRACEFUL_TIMEOUT_S = 10.0


def hypercorn_config(host: str, port: int) -> Config:
    config = Config()
    config.bind = [f"[{host}]:{port}" if ":" in host else f"{host}:{port}"]
    config.accesslog = None
    config.errorlog = logging.getLogger("hoodydb.api")
    config.graceful_timeout = GRACEFUL_TIMEOUT_S
    config.keep_alive_timeout = 30
    return config


async def serve(config: ApiConfig, *, host: str, port: int, stop: asyncio.Event | None = None) -> None:
    """Serve until `stop` is set, or until SIGTERM, SIGINT or SIGHUP when no event is given."""
    loop = asyncio.get_running_loop()
    if stop is None:
        stop = asyncio.Event()
        # SIGHUP too: the terminal went away, and the mount (its own session) must go with us.
        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            loop.add_signal_handler(signum, stop.set)
    app = create_app(config)
    await hypercorn_serve(app, hypercorn_config(host, port), shutdown_trigger=stop.wait)  # type: ignore[arg-type]


def run(config: ApiConfig, *, host: str, port: int) -> None:
    asyncio.run(serve(config, host=host, port=port))
