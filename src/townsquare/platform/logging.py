"""Structured logs: one JSON object a line, each stamped with the request and user id.

`configure_logging` is called by whatever starts the server (the CLI, gunicorn's
config), never at import; `logging_config` is the same set-up as a dictConfig, which
gunicorn takes as `logconfig_dict`.
"""

from __future__ import annotations

import asyncio
import logging
import logging.config
import time
import traceback
from datetime import UTC, datetime
from typing import Any, cast

import pydantic_core

from townsquare.platform import tracing
from townsquare.platform.context import get_user_id
from townsquare.platform.middleware.request_id import get_request_id

# Attributes every LogRecord has; anything else was passed with `extra=` and is a field.
_STANDARD_ATTRS = frozenset(
    vars(logging.LogRecord("", 0, "", 0, "", None, None)).keys()
    | {
        "message",
        "asctime",
        "request_id",
        "user_id",
        "trace_id",
        "span_id",
        "taskName",
        "color_message",
    }
)


class ContextFilter(logging.Filter):
    """Stamp each record with the current request id and user id (None outside a
    request), and the current trace and span ids while tracing."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "request_id", None) is None:
            record.request_id = get_request_id()
        if getattr(record, "user_id", None) is None:
            record.user_id = get_user_id()
        if getattr(record, "trace_id", None) is None and tracing.is_on():
            ids = tracing.current_ids()
            record.trace_id, record.span_id = ids if ids is not None else (None, None)
        return True


class RedactQueryStrings(logging.Filter):
    """Cut the query string off every request target a server logs.

    uvicorn logs each WebSocket handshake as `"WebSocket /ws?token=..." [accepted]`
    (and its own access log, when enabled, every path with its query): a token put in
    the URL would land in the log. Any string argument that is a path with a `?` is
    logged up to the `?`.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple) and any(_is_target(arg) for arg in record.args):
            record.args = tuple(
                str(arg).partition("?")[0] if _is_target(arg) else arg for arg in record.args
            )
        return True


def _is_target(value: object) -> bool:
    return isinstance(value, str) and value.startswith("/") and "?" in value


# Set on an exception once its trace is in the log (see `mark_logged`).
_LOGGED_MARK = "_townsquare_logged"


def mark_logged(exc: BaseException) -> None:
    """Note that `exc` is in the log with its trace. The error handler logs an unhandled
    error with the request's method and path, then Starlette raises it on to the server,
    which logs it again: `LoggedOnceFilter` drops that second copy."""
    setattr(exc, _LOGGED_MARK, True)


class LoggedOnceFilter(logging.Filter):
    """Drop a record whose exception was already logged (`mark_logged`)."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        return exc is None or not getattr(exc, _LOGGED_MARK, False)


class JsonFormatter(logging.Formatter):
    """One JSON object a line: time, level, logger, message, ids, extras, exception."""

    def __init__(self) -> None:
        super().__init__()
        # The time up to the second, reused by every record of that second.
        self._second = -1
        self._second_text = ""

    def _time(self, created: float) -> str:
        second = int(created)
        if second != self._second:
            self._second = second
            self._second_text = datetime.fromtimestamp(second, UTC).strftime("%Y-%m-%dT%H:%M:%S")
        return f"{self._second_text}.{int((created - second) * 1000):03d}+00:00"

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": self._time(record.created),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "request_id": getattr(record, "request_id", None),
            "user_id": getattr(record, "user_id", None),
        }
        trace_id = getattr(record, "trace_id", None)
        if trace_id is not None:
            # Only while tracing: the ids of the span the line was logged in.
            entry["trace_id"] = trace_id
            entry["span_id"] = getattr(record, "span_id", None)
        for key, value in vars(record).items():
            if key not in _STANDARD_ATTRS and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["exception"] = "".join(traceback.format_exception(*record.exc_info))
        # pydantic-core's encoder: a few microseconds a line, where the standard
        # library's took several times that, on every request (the access log).
        return pydantic_core.to_json(entry, fallback=str).decode()


class LoopTurnStreamHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """A stream handler that writes the lines of one event-loop turn in one write.

    Under load a worker finishes many requests in one turn of its loop, and the access
    log's line for each was a write to the stream of its own, a system call per
    request. Here a line logged in the loop's thread waits for the end of the turn,
    when every pending line leaves in one write. Lines from other threads, and a
    WARNING or worse, are written at once (after what is pending, so the order holds).
    What waits is one turn's lines, written also by `flush()` (logging's shutdown
    calls it at exit); only a process killed mid-turn loses them.
    """

    def __init__(self, stream: Any = None) -> None:
        super().__init__(stream)
        self._pending: list[str] = []
        # The loop whose turn's end will write what is pending (None: nothing asked).
        self._writing_on: asyncio.AbstractEventLoop | None = None

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self._queue(
                self.format(record) + self.terminator, at_once=record.levelno >= logging.WARNING
            )
        except RecursionError:
            raise
        except Exception:
            self.handleError(record)

    def emit_line(self, line: str) -> None:
        """Queue `line`, already formatted, as `emit` queues an INFO record's."""
        with self.lock:  # type: ignore[union-attr]
            self._queue(line + self.terminator, at_once=False)

    def _queue(self, line: str, *, at_once: bool) -> None:
        loop = _running_loop()
        if loop is None or at_once:
            self._pending.append(line)
            self._write_pending()
            return
        if self._writing_on is not loop:
            # Also when the loop that was to write it closed first (a test's).
            loop.call_soon(self._end_of_turn)
            self._writing_on = loop
        self._pending.append(line)

    def _end_of_turn(self) -> None:
        with self.lock:  # type: ignore[union-attr]  # created by Handler.__init__
            self._write_pending()

    def _write_pending(self) -> None:
        self._writing_on = None
        if self._pending:
            text = "".join(self._pending)
            self._pending.clear()
            self.stream.write(text)
            self.stream.flush()

    def flush(self) -> None:
        with self.lock:  # type: ignore[union-attr]
            self._write_pending()
        super().flush()


# The filters `logging_config` installs; for the access log's lines none changes
# anything (no query string, no exception; the ids are set from the request).
_OUR_FILTERS: frozenset[type[logging.Filter]] = frozenset(
    {ContextFilter, RedactQueryStrings, LoggedOnceFilter}
)


class AccessLog:
    """The access log: one line per request, on `logger_name` at INFO.

    With logging as `configure_logging` sets it up (this logger's records reach the one
    `LoopTurnStreamHandler` on the root logger, through our filters only, tracing off),
    the line is built straight from the request's values and queued on that handler:
    the same JSON object, byte for byte, without a `LogRecord`, the filters and the
    generic formatter in between (measured in process: ~28 us of a 220 us
    authenticated read, ~13 us this way). Any other set-up (a handler of a test, of an
    embedding app, another formatter or filter) gets a `LogRecord` through `logging`,
    as every other line does.
    """

    def __init__(self, logger_name: str = "townsquare.access") -> None:
        self.logger = logging.getLogger(logger_name)

    def log(
        self,
        *,
        method: str,
        route: str,
        status: int,
        seconds: float,
        client_ip: str | None,
        user_id: int | None,
    ) -> None:
        logger = self.logger
        if not logger.isEnabledFor(logging.INFO):
            return
        duration_ms = round(seconds * 1000, 2)
        handler = self._direct_handler()
        if handler is None:
            record = logging.LogRecord(
                logger.name, logging.INFO, __file__, 0, "%s %s %d", (method, route, status), None
            )
            record.method = method
            record.route = route
            record.status = status
            record.duration_ms = duration_ms
            record.client_ip = client_ip
            record.user_id = user_id
            logger.handle(record)
            return
        formatter = cast(JsonFormatter, handler.formatter)
        entry = {
            "time": formatter._time(time.time()),
            "level": "INFO",
            "logger": logger.name,
            "message": f"{method} {route} {status}",
            "request_id": get_request_id(),
            "user_id": user_id if user_id is not None else get_user_id(),
            "method": method,
            "route": route,
            "status": status,
            "duration_ms": duration_ms,
            "client_ip": client_ip,
        }
        handler.emit_line(pydantic_core.to_json(entry, fallback=str).decode())

    def _direct_handler(self) -> LoopTurnStreamHandler | None:
        """The handler to queue lines on directly, if logging is set up as ours."""
        logger: logging.Logger | None = self.logger
        while logger is not None and logger.parent is not None:
            if logger.handlers or logger.filters or not logger.propagate:
                return None
            logger = logger.parent
        if logger is None or logger.filters or len(logger.handlers) != 1 or tracing.is_on():
            return None
        handler = logger.handlers[0]
        if (
            type(handler) is not LoopTurnStreamHandler
            or type(handler.formatter) is not JsonFormatter
            or handler.level > logging.INFO
            or not all(type(f) in _OUR_FILTERS for f in handler.filters)
        ):
            return None
        return handler


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


def logging_config(level: str) -> dict[str, Any]:
    """A dictConfig that sends every logger, uvicorn's and gunicorn's included, to JSON."""
    # No line shows the thread or process name, so records need not look them up: a
    # measurable share of the cost of the access log's line on every request.
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    handler = {
        "()": LoopTurnStreamHandler,
        "formatter": "json",
        "filters": ["redact", "context", "logged_once"],
        "stream": "ext://sys.stderr",
    }
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {
            "context": {"()": ContextFilter},
            "redact": {"()": RedactQueryStrings},
            "logged_once": {"()": LoggedOnceFilter},
        },
        "formatters": {"json": {"()": JsonFormatter}},
        "handlers": {"default": handler},
        "root": {"handlers": ["default"], "level": level},
        "loggers": {
            # Our own access log replaces uvicorn's and gunicorn's (it knows the route
            # template, the user and the duration, and never logs a query string).
            "uvicorn.access": {"handlers": [], "propagate": False, "level": "CRITICAL"},
            "gunicorn.access": {"handlers": [], "propagate": False, "level": "CRITICAL"},
            # Alembic announces each of its plugins at INFO whenever it first looks at
            # a database (the schema check at start); the migrations themselves are
            # logged by alembic.runtime.migration.
            "alembic.runtime.plugins": {"handlers": [], "propagate": True, "level": "WARNING"},
            "uvicorn": {"handlers": [], "propagate": True, "level": level},
            # The handshake lines are logged here; redacted before any handler sees them.
            "uvicorn.error": {
                "handlers": [],
                "propagate": True,
                "level": level,
                "filters": ["redact"],
            },
            # The uvicorn worker copies gunicorn.error's handlers onto uvicorn.error, so
            # this one holds the handler itself.
            "gunicorn.error": {"handlers": ["default"], "propagate": False, "level": level},
        },
    }


def configure_logging(level: str) -> None:
    logging.config.dictConfig(logging_config(level))
