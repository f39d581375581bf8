"""OpenTelemetry traces: HTTP requests, SQL statements, Redis commands and WebSocket
frames, exported by OTLP (HTTP/protobuf) when OTEL_EXPORTER_OTLP_ENDPOINT is set.

Off by default, and then nothing is instrumented at all: no middleware, no engine
events, no patched Redis client. The frame span is the one piece on a hot path that
stays in place either way (a decorator on the connection's frame dispatch); off, it
costs one plain function call per frame.

Traces are process-wide, as OpenTelemetry's instrumentations are (the Redis client
classes are patched once per process): the app factory turns them on for the process
it runs in. Each WebSocket frame handled starts a trace of its own, linked to the
connection's span (which lasts as long as the socket): a chat message's trace holds
its SQL insert and its Redis publish.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import Protocol, TypeVar

from fastapi import FastAPI
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor
from opentelemetry.instrumentation.redis import RedisInstrumentor
from opentelemetry.instrumentation.sqlalchemy.engine import EngineTracer
from opentelemetry.metrics import NoOpMeterProvider
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.trace import Link, SpanKind, Tracer
from sqlalchemy.ext.asyncio import AsyncEngine

from townsquare import __version__

# The tracer of WebSocket frames, while tracing is on in this process.
_frame_tracer: Tracer | None = None


def create_provider(endpoint: str | None, service_name: str) -> TracerProvider | None:
    """A provider exporting to `endpoint` by OTLP over HTTP, or None without one.

    The exporter reads its other settings (OTEL_EXPORTER_OTLP_HEADERS, ..._TIMEOUT,
    ..._COMPRESSION) from the environment itself, and the provider its sampler
    (OTEL_TRACES_SAMPLER, OTEL_TRACES_SAMPLER_ARG).
    """
    if not endpoint:
        return None
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    resource = Resource.create({"service.name": service_name, "service.version": __version__})
    provider = TracerProvider(resource=resource)
    exporter = OTLPSpanExporter(endpoint=f"{endpoint.rstrip('/')}/v1/traces")
    provider.add_span_processor(BatchSpanProcessor(exporter))
    return provider


def instrument_app(app: FastAPI, provider: TracerProvider | None) -> None:
    """Trace this process's HTTP requests, Redis commands and WebSocket frames with
    `provider`; with None, trace nothing (frames included)."""
    global _frame_tracer
    if provider is None:
        _frame_tracer = None
        return
    # A span per request (per socket for /ws), without one per ASGI message.
    FastAPIInstrumentor.instrument_app(
        app, tracer_provider=provider, exclude_spans=["receive", "send"]
    )
    instrumentor = RedisInstrumentor()
    if not instrumentor.is_instrumented_by_opentelemetry:
        instrumentor.instrument(tracer_provider=provider)
    _frame_tracer = provider.get_tracer("townsquare.rooms", __version__)


def instrument_engine(engine: AsyncEngine, provider: TracerProvider | None) -> None:
    """A span per SQL statement run on `engine` (event listeners on this engine only)."""
    if provider is None:
        return
    tracer = provider.get_tracer("opentelemetry.instrumentation.sqlalchemy", __version__)
    meter = NoOpMeterProvider().get_meter("opentelemetry.instrumentation.sqlalchemy")
    connections = meter.create_up_down_counter("db.client.connections.usage")
    EngineTracer(tracer, engine.sync_engine, connections)  # type: ignore[no-untyped-call]


class _Frame(Protocol):
    @property
    def type(self) -> str: ...


Receiver = TypeVar("Receiver")
FrameT = TypeVar("FrameT", bound=_Frame)


def traced_frame(
    handle: Callable[[Receiver, FrameT], Awaitable[None]],
) -> Callable[[Receiver, FrameT], Awaitable[None]]:
    """Decorate a frame handler: each frame handled in a span `ws <type>`, the root of
    its own trace, linked to the span current when it arrived (the connection's).

    With tracing off the wrapper hands back the handler's own coroutine: one plain
    call per frame, no extra coroutine (`python -m bench.frame_span` measures it)."""

    async def traced(tracer: Tracer, receiver: Receiver, frame: FrameT) -> None:
        connection = trace.get_current_span().get_span_context()
        links = [Link(connection)] if connection.is_valid else None
        with tracer.start_as_current_span(
            f"ws {frame.type}",
            context=Context(),
            kind=SpanKind.SERVER,
            links=links,
            attributes={"websocket.frame.type": frame.type},
        ):
            await handle(receiver, frame)

    @functools.wraps(handle)
    def dispatch(receiver: Receiver, frame: FrameT) -> Awaitable[None]:
        tracer = _frame_tracer
        if tracer is None:
            return handle(receiver, frame)
        return traced(tracer, receiver, frame)

    return dispatch


def is_on() -> bool:
    """Whether this process traces (`instrument_app` was given a provider)."""
    return _frame_tracer is not None


def current_ids() -> tuple[str, str] | None:
    """The current trace and span id (hex), for log lines; None outside a span."""
    context = trace.get_current_span().get_span_context()
    if not context.is_valid:
        return None
    return f"{context.trace_id:032x}", f"{context.span_id:016x}"
