"""Structured logs: one JSON object a line, each stamped with the request and user id.

`configure_logging` is called by whatever starts the server (the CLI, gunicorn's
config), never at import; `logging_config` is the same set-up as a dictConfig, which
gunicorn takes as `logconfig_dict`.
"""

from __future__ import annotations

import json
import logging
import logging.config
import traceback
from datetime import UTC, datetime
from typing import Any

from townsquare.platform.context import get_user_id
from townsquare.platform.middleware.request_id import get_request_id

# Attributes every LogRecord has; anything else was passed with `extra=` and is a field.
_STANDARD_ATTRS = frozenset(
    vars(logging.LogRecord("", 0, "", 0, "", None, None)).keys()
    | {"message", "asctime", "request_id", "user_id", "taskName", "color_message"}
)


class ContextFilter(logging.Filter):
    """Stamp each record with the current request id and user id (None outside a request)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "request_id", None) is None:
            record.request_id = get_request_id()
        if getattr(record, "user_id", None) is None:
            record.user_id = get_user_id()
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object a line: time, level, logger, message, ids, extras, exception."""

    def __init__(self) -> None:
        super().__init__()
        # Made once: `json.dumps` with options builds a new encoder on every call.
        self._encoder = json.JSONEncoder(default=str, ensure_ascii=False)
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
        for key, value in vars(record).items():
            if key not in _STANDARD_ATTRS and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["exception"] = "".join(traceback.format_exception(*record.exc_info))
        return self._encoder.encode(entry)


def logging_config(level: str) -> dict[str, Any]:
    """A dictConfig that sends every logger, uvicorn's and gunicorn's included, to JSON."""
    # No line shows the thread or process name, so records need not look them up: a
    # measurable share of the cost of the access log's line on every request.
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    handler = {
        "class": "logging.StreamHandler",
        "formatter": "json",
        "filters": ["context"],
        "stream": "ext://sys.stderr",
    }
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"context": {"()": ContextFilter}},
        "formatters": {"json": {"()": JsonFormatter}},
        "handlers": {"default": handler},
        "root": {"handlers": ["default"], "level": level},
        "loggers": {
            # Our own access log replaces uvicorn's and gunicorn's (it knows the route
            # template, the user and the duration, and never logs a query string).
            "uvicorn.access": {"handlers": [], "propagate": False, "level": "CRITICAL"},
            "gunicorn.access": {"handlers": [], "propagate": False, "level": "CRITICAL"},
            "uvicorn": {"handlers": [], "propagate": True, "level": level},
            "uvicorn.error": {"handlers": [], "propagate": True, "level": level},
            # The uvicorn worker copies gunicorn.error's handlers onto uvicorn.error, so
            # this one holds the handler itself.
            "gunicorn.error": {"handlers": ["default"], "propagate": False, "level": level},
        },
    }


def configure_logging(level: str) -> None:
    logging.config.dictConfig(logging_config(level))
