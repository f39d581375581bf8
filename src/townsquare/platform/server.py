"""uvicorn, as `townsquare serve` runs it and as gunicorn's workers run it.

Both add one step to uvicorn's shutdown: after the listening sockets close and before
uvicorn closes connections, the app's `Drain` callbacks run (see `shutdown.py`).
"""

from __future__ import annotations

import socket
from typing import Any

from starlette.types import ASGIApp
from uvicorn import Config, Server
from uvicorn_worker import UvicornWorker

from townsquare.config import Settings
from townsquare.platform.http_protocol import HttpProtocol
from townsquare.platform.shutdown import Drain

# Of the graceful timeout, the share the drain callbacks may use; the rest is for
# in-flight requests, the lifespan shutdown and the exit.
DRAIN_SHARE = 0.3
# uvicorn must be done before gunicorn's graceful timeout kills the worker.
EXIT_MARGIN_SECONDS = 2.0
# How long a closing connection may go on sending before it is cut (http_protocol.py).
LINGER_SECONDS = 5.0


def _find_drain(app: Any) -> Drain | None:
    """The `Drain` of the app, looked up through the middleware uvicorn wraps it in."""
    seen = 0
    while app is not None and seen < 20:
        state = getattr(app, "state", None)
        drain = getattr(state, "drain", None)
        if isinstance(drain, Drain):
            return drain
        app = getattr(app, "app", None)
        seen += 1
    return None


class DrainingServer(Server):
    """A uvicorn server that drains the app before closing its connections."""

    def __init__(self, config: Config, *, graceful_timeout: float) -> None:
        super().__init__(config)
        self.graceful_timeout = graceful_timeout

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        # Stop accepting first (uvicorn does it again below; closing twice is harmless).
        # The sockets themselves are left to uvicorn and gunicorn to close.
        for server in self.servers:
            server.close()
        drain = _find_drain(self.config.loaded_app)
        if drain is not None:
            await drain.run(within=self.graceful_timeout * DRAIN_SHARE)
        await super().shutdown(sockets)


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
        "timeout_graceful_shutdown": uvicorn_timeout(settings.graceful_timeout),
    }


def uvicorn_timeout(graceful_timeout: float) -> int:
    """How long uvicorn waits for in-flight work, leaving room to exit in time."""
    return max(1, int(graceful_timeout - EXIT_MARGIN_SECONDS))


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
        self.config.timeout_graceful_shutdown = uvicorn_timeout(self.cfg.graceful_timeout)

    async def _serve(self) -> None:
        app: ASGIApp = self.wsgi
        self.config.app = app
        server = DrainingServer(config=self.config, graceful_timeout=self.cfg.graceful_timeout)
        self._install_sigquit_handler()
        await server.serve(sockets=self.sockets)
        if not server.started:
            raise SystemExit(self.arbiter.WORKER_BOOT_ERROR)
