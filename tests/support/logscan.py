"""A pytest plugin: the run fails when a password, token or message body of the suite
appears in any log, in this process or in a server process the suite started.

What counts as secret is learned from the suite's own traffic: every password,
token and message body its HTTP and WebSocket clients send or receive. The logs are
every record of the test process (at INFO and above, as production logs them) and
every `*.log` file the suite wrote under its temporary directory (the servers' output).
Any JWT in a log is a leak, whether or not the suite saw it.

Cheap by design: each secret is reduced to its longest word, the logs to a set of
words; only a secret whose word is in that set is searched for in full.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
from collections.abc import Callable, Iterable, Iterator
from functools import wraps
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import httpx
import pytest
from websockets.asyncio.client import ClientConnection

from townsquare.platform.logging import JsonFormatter

SECRET_FIELDS = frozenset(
    {
        "password",
        "new_password",
        "current_password",
        "token",
        "access_token",
        "refresh_token",
        "body",
    }
)
# Shorter strings ("hi", "ok") are too common to mean anything when found.
MIN_SECRET_LENGTH = 8
MAX_OBSERVED_BYTES = 1 << 20
JWT = re.compile(r"eyJ[\w-]{8,}\.eyJ[\w-]{8,}\.[\w-]{16,}")
WORD = re.compile(r"\w{6,}")
# Client-side loggers name the test's own requests, query strings included.
CLIENT_LOGGERS = ("httpx", "httpcore", "websockets.client", "hypothesis", "schemathesis")


class LogScan:
    def __init__(self) -> None:
        self.secrets: set[str] = set()
        self.records: list[str] = []
        self.handler = _Collector(self.records)

    # -- what is secret ----------------------------------------------------------------

    def add_secret(self, value: str) -> None:
        if len(value) >= MIN_SECRET_LENGTH:
            self.secrets.add(value)

    def observe_json(self, value: Any) -> None:
        if isinstance(value, dict):
            for key, item in value.items():
                if key in SECRET_FIELDS and isinstance(item, str):
                    self.add_secret(item)
                else:
                    self.observe_json(item)
        elif isinstance(value, list):
            for item in value:
                self.observe_json(item)

    def observe_payload(self, content: bytes | str, content_type: str) -> None:
        if not content or len(content) > MAX_OBSERVED_BYTES:
            return
        text = content.decode("utf-8", "replace") if isinstance(content, bytes) else content
        if "x-www-form-urlencoded" in content_type:
            for key, values in parse_qs(text).items():
                if key in SECRET_FIELDS:
                    for value in values:
                        self.add_secret(value)
            return
        try:
            self.observe_json(json.loads(text))
        except ValueError:
            return

    # -- where to look -------------------------------------------------------------------

    def leaks(self, texts: Iterable[str]) -> list[str]:
        """One line per leak found in `texts`: what leaked, and the start of the line."""
        found: list[str] = []
        words: set[str] = set()
        lines: list[str] = []
        for text in texts:
            for line in text.splitlines():
                for match in JWT.finditer(line):
                    found.append(f"a JWT ({match.group()[:16]}...) in: {line[:200]}")
                words.update(WORD.findall(line))
                lines.append(line)
        for secret in self.secrets:
            probes = WORD.findall(secret)
            if not probes or max(probes, key=len) not in words:
                continue
            for line in lines:
                if secret in line:
                    found.append(f"{secret[:12]!r}... in: {line[:200]}")
                    break
        return found


class _Collector(logging.Handler):
    def __init__(self, records: list[str]) -> None:
        super().__init__(logging.INFO)
        self.records = records
        self.setFormatter(JsonFormatter())

    def emit(self, record: logging.LogRecord) -> None:
        if record.name.startswith(CLIENT_LOGGERS):
            return
        try:
            self.records.append(self.format(record))
        except Exception:
            self.handleError(record)


def _log_files(root: Path) -> Iterator[str]:
    for path in sorted(root.rglob("*.log")):
        if path.is_file():
            yield path.read_text(errors="replace")


# -- observing the suite's clients ---------------------------------------------------------


def _observe_exchange(scan: LogScan, request: httpx.Request, response: httpx.Response) -> None:
    with contextlib.suppress(httpx.RequestNotRead):
        scan.observe_payload(request.content, request.headers.get("content-type", ""))
    with contextlib.suppress(httpx.ResponseNotRead):
        scan.observe_payload(response.content, response.headers.get("content-type", ""))


def _patch(scan: LogScan) -> Callable[[], None]:
    async_send = httpx.AsyncClient.send
    sync_send = httpx.Client.send
    ws_send = ClientConnection.send

    @wraps(async_send)
    async def observed_async_send(
        self: httpx.AsyncClient, request: httpx.Request, **kwargs: Any
    ) -> httpx.Response:
        response = await async_send(self, request, **kwargs)
        _observe_exchange(scan, request, response)
        return response

    @wraps(sync_send)
    def observed_sync_send(
        self: httpx.Client, request: httpx.Request, **kwargs: Any
    ) -> httpx.Response:
        response = sync_send(self, request, **kwargs)
        _observe_exchange(scan, request, response)
        return response

    async def observed_ws_send(self: ClientConnection, message: Any, **kwargs: Any) -> None:
        if isinstance(message, str):
            scan.observe_payload(message, "application/json")
        await ws_send(self, message, **kwargs)

    httpx.AsyncClient.send = observed_async_send  # type: ignore[method-assign]
    httpx.Client.send = observed_sync_send  # type: ignore[method-assign]
    ClientConnection.send = observed_ws_send  # type: ignore[method-assign,assignment]

    def restore() -> None:
        httpx.AsyncClient.send = async_send  # type: ignore[method-assign]
        httpx.Client.send = sync_send  # type: ignore[method-assign]
        ClientConnection.send = ws_send  # type: ignore[method-assign]

    return restore


# -- the plugin ----------------------------------------------------------------------------

_scan_key = pytest.StashKey[LogScan]()
_restore_key = pytest.StashKey[Callable[[], None]]()


def pytest_configure(config: pytest.Config) -> None:
    scan = config.stash[_scan_key] = LogScan()
    config.stash[_restore_key] = _patch(scan)
    root = logging.getLogger()
    root.addHandler(scan.handler)
    # Records below the root's level are never made; production logs at INFO.
    if root.level > logging.INFO or root.level == logging.NOTSET:
        root.setLevel(logging.INFO)


def pytest_unconfigure(config: pytest.Config) -> None:
    logging.getLogger().removeHandler(config.stash[_scan_key].handler)
    config.stash[_restore_key]()


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    from tests.conftest import TEST_SECRET

    config = session.config
    scan = config.stash[_scan_key]
    scan.add_secret(TEST_SECRET)
    factory = getattr(config, "_tmp_path_factory", None)
    files = _log_files(factory.getbasetemp()) if factory is not None else iter(())
    leaks = scan.leaks([*scan.records, *files])
    if not leaks:
        return
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    lines = [f"{len(leaks)} secret(s) of the suite found in the logs:", *leaks[:20]]
    if reporter is not None:
        reporter.write_sep("=", "log scan failed", red=True)
        for line in lines:
            reporter.write_line(line)
    session.exitstatus = pytest.ExitCode.TESTS_FAILED
