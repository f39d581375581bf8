"""Fixtures for the platform tests: captured JSON logs, apps with custom settings."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from tests.conftest import make_settings
from townsquare.main import create_app
from townsquare.platform.logging import ContextFilter, JsonFormatter


class CapturedLogs:
    def __init__(self, stream: io.StringIO) -> None:
        self.stream = stream

    @property
    def text(self) -> str:
        return self.stream.getvalue()

    def records(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.text.splitlines() if line.strip()]

    def access(self) -> list[dict[str, Any]]:
        return [r for r in self.records() if r["logger"] == "townsquare.access"]


@pytest.fixture
def json_logs() -> Iterator[CapturedLogs]:
    """Everything logged during the test, formatted as production formats it."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(ContextFilter())
    # The test's own HTTP client logs its URLs (query strings included); only the
    # server's records matter here.
    handler.addFilter(lambda record: not record.name.startswith(("httpx", "httpcore")))
    root = logging.getLogger()
    previous = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    try:
        yield CapturedLogs(stream)
    finally:
        root.removeHandler(handler)
        root.setLevel(previous)


AppFactory = Callable[..., Any]


@asynccontextmanager
async def serve_app(
    app: FastAPI, *, raise_app_exceptions: bool = True
) -> AsyncIterator[httpx.AsyncClient]:
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=raise_app_exceptions)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            yield http


@pytest.fixture
def custom_app(database_url: str) -> Callable[..., FastAPI]:
    """`custom_app(**settings)`: the real app on this test's database with other settings."""

    def build(**overrides: Any) -> FastAPI:
        return create_app(make_settings(database_url=database_url, **overrides))

    return build
