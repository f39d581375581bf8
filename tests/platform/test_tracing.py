"""OpenTelemetry traces, recorded by an in-memory exporter: an HTTP request and a chat
message each make one trace holding their SQL statements and their Redis publish,
and log lines written inside a span carry its trace id."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from tests.conftest import make_settings
from tests.platform.conftest import CapturedLogs
from tests.rooms.wsclient import connect, make_room, signup
from tests.support import databases
from tests.support.brokers import eventually, random_prefix, require_shared_redis
from tests.support.inprocess import serve_in_process
from tests.support.server import ServerProcess
from townsquare.client import Api
from townsquare.main import create_app
from townsquare.platform import tracing
from townsquare.platform.database import Database

pytestmark = pytest.mark.e2e

SQL_SCOPE = "opentelemetry.instrumentation.sqlalchemy"
REDIS_SCOPE = "opentelemetry.instrumentation.redis"


@pytest.fixture(scope="session")
def exporter() -> InMemorySpanExporter:
    return InMemorySpanExporter()


@pytest.fixture(scope="session")
def provider(exporter: InMemorySpanExporter) -> Iterator[TracerProvider]:
    # One for the whole run: the Redis client classes are instrumented once per process.
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield provider
    provider.shutdown()


@pytest.fixture
async def traced(
    database_url: str, provider: TracerProvider, exporter: InMemorySpanExporter
) -> AsyncIterator[tuple[FastAPI, ServerProcess]]:
    settings = make_settings(
        database_url=database_url,
        redis_url=await require_shared_redis(),
        broker_channel_prefix=random_prefix(),
    )
    app = create_app(settings, tracer_provider=provider)
    try:
        async with serve_in_process(app) as server:
            yield app, server
            database: Database = app.state.database
            await databases.empty_tables(database.engine)
    finally:
        tracing.instrument_app(FastAPI(), None)  # frames untraced for the tests after
        exporter.clear()


def _traces(exporter: InMemorySpanExporter) -> dict[int, list[ReadableSpan]]:
    traces: dict[int, list[ReadableSpan]] = {}
    for span in exporter.get_finished_spans():
        assert span.context is not None
        traces.setdefault(span.context.trace_id, []).append(span)
    return traces


def _scopes(spans: list[ReadableSpan]) -> set[str]:
    return {span.instrumentation_scope.name for span in spans if span.instrumentation_scope}


def _stores_the_message(spans: list[ReadableSpan]) -> bool:
    """A SQL span whose statement inserts into messages (PostgreSQL and SQLite word
    it differently: an INSERT, or a WITH ... INSERT)."""
    for span in spans:
        if span.instrumentation_scope and span.instrumentation_scope.name == SQL_SCOPE:
            attributes = _attributes(span)
            statement = str(attributes.get("db.statement") or attributes.get("db.query.text"))
            if "insert into messages" in statement.lower():
                return True
    return False


def _commands(spans: list[ReadableSpan], scope: str) -> list[str]:
    return [
        span.name
        for span in spans
        if span.instrumentation_scope and span.instrumentation_scope.name == scope
    ]


def _trace_rooted_at(exporter: InMemorySpanExporter, name: str) -> list[ReadableSpan] | None:
    """The spans of the trace whose root span is `name`, once it holds a PUBLISH."""
    for spans in _traces(exporter).values():
        roots = [span for span in spans if span.parent is None]
        if roots and roots[0].name == name and "PUBLISH" in _commands(spans, REDIS_SCOPE):
            return spans
    return None


async def test_http_request_makes_one_trace_with_its_sql_and_redis_spans_and_logs_its_id(
    traced: tuple[FastAPI, ServerProcess],
    exporter: InMemorySpanExporter,
    json_logs: CapturedLogs,
) -> None:
    _, server = traced
    async with httpx.AsyncClient(base_url=server.base_url, timeout=10) as http:
        member = await signup(http, "Traced")
        room = await make_room(http, member)
    async with Api(server.base_url, token=member.token) as api:
        exporter.clear()
        await api.post_message(room, "hello")

    name = "POST /rooms/{name}/messages"
    assert await eventually(lambda: _trace_rooted_at(exporter, name) is not None, 10)
    spans = _trace_rooted_at(exporter, name)
    assert spans is not None
    assert _stores_the_message(spans), [(s.name, _attributes(s)) for s in spans]
    assert "PUBLISH" in _commands(spans, REDIS_SCOPE)
    # One trace: every span of the request descends from its root.
    assert len({span.context.trace_id for span in spans if span.context}) == 1

    trace_id = f"{spans[0].context.trace_id:032x}" if spans[0].context else ""
    access = [r for r in json_logs.access() if r["route"] == "/rooms/{name}/messages"]
    assert [r.get("trace_id") for r in access] == [trace_id]


async def test_chat_message_makes_one_trace_with_its_sql_and_redis_spans(
    traced: tuple[FastAPI, ServerProcess], exporter: InMemorySpanExporter
) -> None:
    _, server = traced
    async with httpx.AsyncClient(base_url=server.base_url, timeout=10) as http:
        member = await signup(http, "Chatty")
        room = await make_room(http, member)
    client = await connect(server, member)
    try:
        await client.join(room)
        exporter.clear()
        await client.say(room, "hi there", client_id="c-1")
        [message] = await client.messages(room, 1)
        assert message.body == "hi there"
    finally:
        await client.close()

    assert await eventually(lambda: _trace_rooted_at(exporter, "ws send") is not None, 10)
    spans = _trace_rooted_at(exporter, "ws send")
    assert spans is not None
    root = next(span for span in spans if span.parent is None)
    assert root.attributes is not None
    assert root.attributes["websocket.frame.type"] == "send"
    # Linked to the socket's own span (the handshake's), not inside its long trace.
    assert len(root.links) == 1
    assert _stores_the_message(spans), [(s.name, _attributes(s)) for s in spans]
    assert "PUBLISH" in _commands(spans, REDIS_SCOPE)


def test_without_endpoint_nothing_is_traced() -> None:
    assert tracing.create_provider(None, "townsquare") is None
    app = create_app(make_settings())
    tracing.instrument_app(app, None)
    assert not getattr(app, "_is_instrumented_by_opentelemetry", False)


def _attributes(span: ReadableSpan) -> dict[str, Any]:
    return dict(span.attributes or {})
