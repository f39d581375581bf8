"""uvicorn, as `townsquare serve` runs it and as gunicorn's workers run it.

Both add one step to uvicorn's shutdown: after the listening sockets close and before
uvicorn closes connections, the app's `Drain` callbacks run (see `shutdown.py`).
"""

from __future__ import annotations

import gc
import socket
from typing import Any

from starlette.types import ASGIApp
from uvicorn import Config, Server
from uvicorn_worker import UvicornWorker

from townsquare.config import Settings
from townsquare.platform.http_protocol import HttpProtocol
from townsquare.platform.shutdown import Drain, ShutdownBudget

# How long a closing connection may go on sending before it is cut (http_protocol.py).
LINGER_SECONDS = 5.0


class DrainingServer(Server):
    """A uvicorn server that drains the app before closing its connections.

    This overrides `Server.shutdown`, and relies on uvicorn closing connections there
    (after its listening servers, `self.servers`) and running the lifespan shutdown
    after: uvicorn has no public hook before it closes WebSockets. The uvicorn versions
    are bounded in pyproject.toml, and `tests/platform/test_shutdown.py` fails when an
    upgrade moves what this relies on.
    """

    def __init__(self, config: Config, *, drain: Drain | None, graceful_timeout: float) -> None:
        super().__init__(config)
        self.drain = drain
        self.budget = ShutdownBudget.of(graceful_timeout)
        config.timeout_graceful_shutdown = self.budget.requests
        # The collector's thresholds before the start, put back at shutdown.
        self._thresholds = gc.get_threshold()

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        tune_garbage_collector()

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        # Stop accepting first (uvicorn does it again below; closing twice is harmless).
        # The sockets themselves are left to uvicorn and gunicorn to close.
        for server in self.servers:
            server.close()
        if self.drain is not None:
            await self.drain.run(within=self.budget.drain)
        await super().shutdown(sockets)
        gc.unfreeze()
        gc.set_threshold(*self._thresholds)


# Young collections every 5,000 new containers, a middle one every 10 of those, a full
# one every 100 middle ones (CPython's defaults: 700, 10, 10).
GC_THRESHOLDS = (5_000, 10, 100)


def tune_garbage_collector() -> None:
    """Keep the cyclic garbage collector's pauses short, once the app has started.

    - What exists then (the code of every imported library, the app, its routes, pools
      and caches) lives as long as the process, yet each full collection walked all
      of it: under load one every few seconds, each a pause of the event loop of about
      100 ms, the p99 of every request and every delivery on the sockets. It is frozen
      (`gc.freeze`), after the start's own garbage is collected: never walked again.
    - What sockets and rooms hold (tasks, frames, buffers) still made each full
      collection a 30-70 ms pause with 500 sockets open, and CPython's thresholds
      start one after every 70,000 new containers or so: a few seconds at 25,000
      deliveries a second. With `GC_THRESHOLDS` a young collection (a few ms) takes
      more at a time and a full one comes after 5 million new containers, about 70
      times less often (minutes apart under that load); cyclic garbage that outlives
      the young generations waits that much longer to be freed.

    A server run inside another process (a test) restores both at shutdown.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


def app_drain(app: object) -> Drain | None:
    """The app's `Drain` (`app.state.drain`), if it has one."""
    drain = getattr(getattr(app, "state", None), "drain", None)
    return drain if isinstance(drain, Drain) else None


def connection_options(settings: Settings) -> dict[str, Any]:
    """uvicorn's connection limits, the same under `townsquare serve` and gunicorn."""
    return {
        # uvicorn accepts 16 MiB WebSocket frames by default; nothing in this protocol
        # comes close, so a large frame is refused before it is buffered. The limit
        # sits a little above the app's own (WS_MAX_FRAME_BYTES), so the app answers
        # most oversized frames itself (error, 1009) and uvicorn's 1009 only stops
        # frames far too large to be worth reading.
        "ws_max_size": settings.ws_max_frame_bytes + 16 * 1024,
        # Compression would cost hundreds of KiB of zlib state per connection.
        "ws_per_message_deflate": False,
        # The heartbeat at the protocol level: uvicorn pings, and drops a peer that
        # does not pong in time (a dead TCP connection).
        "ws_ping_interval": settings.ws_heartbeat_interval_seconds,
        "ws_ping_timeout": settings.ws_heartbeat_timeout_seconds,
        # No connection count: uvicorn's counts every connection, sockets and idle ones
        # included, and then answers even the probes with 503. HTTP requests and
        # WebSockets have separate budgets in the app (WORKER_CAPACITY,
        # WS_MAX_CONNECTIONS); silent connections are bounded in time by the protocol.
        "limit_concurrency": None,
        "http": HttpProtocol.configured(
            header_timeout=settings.http_header_timeout_seconds, linger=LINGER_SECONDS
        ),
    }


class Worker(UvicornWorker):  # type: ignore[misc]  # the package ships no types
    """gunicorn worker class: the uvicorn worker with the drain step and our limits."""

    CONFIG_KWARGS: dict[str, Any] = {  # noqa: RUF012 (the base class declares it so)
        "loop": "auto",
        "proxy_headers": True,
    }

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # The master validated these settings before forking (gunicorn.conf.py).
        for name, value in connection_options(Settings()).items():
            setattr(self.config, name, value)

    # uvicorn-worker's own `_serve`, with `DrainingServer` for uvicorn's `Server`
    # (pinned: tests/platform/test_shutdown.py compares it with the installed one).
    async def _serve(self) -> None:
        app: ASGIApp = self.wsgi
        self.config.app = app
        server = DrainingServer(
            config=self.config, drain=app_drain(app), graceful_timeout=self.cfg.graceful_timeout
        )
        self._install_sigquit_handler()
        await server.serve(sockets=self.sockets)
        if not server.started:
            raise SystemExit(self.arbiter.WORKER_BOOT_ERROR)
