"""Traces across the services (OpenTelemetry), off by default.

With ``<SERVICE>_TRACING_ENABLED=true`` a process records spans for its HTTP requests
(:class:`TracingMiddleware`), its database statements (SQLAlchemy), the events it consumes
(one span per event, in the consumer runtime) and the batches its outbox relay publishes, and
exports them over OTLP/HTTP (``<SERVICE>_TRACING_OTLP_ENDPOINT``, e.g.
``http://collector:4318/v1/traces``) and/or as JSON lines to a file
(``<SERVICE>_TRACING_FILE``, for a development machine and the tests).

The trace context travels in the events: every envelope carries the W3C ``traceparent`` of
the span that wrote it (the CloudEvents distributed-tracing extension, also copied to the
``ce_traceparent`` record header), and a consumer's span for an event is a child of it. So
one booking is one trace from ``POST /bookings`` through the payment service (which passes
the ``traceparent`` of ``BookingCreated`` on to its answer) to the reminders it schedules.
An HTTP request that arrives with a ``traceparent`` header continues that trace.
"""

from __future__ import annotations

import contextlib
import json
import re
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextvars import ContextVar
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    SimpleSpanProcessor,
    SpanExporter,
    SpanExportResult,
)
from opentelemetry.trace import Span, SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from booking_contracts.bounds import TRACEPARENT_PATTERN

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncEngine

    from booking_contracts.envelope import Envelope
    from platform_runtime.settings import ServiceSettings

TRACEPARENT: Final = "traceparent"
_VALID = re.compile(TRACEPARENT_PATTERN)
_PROPAGATOR = TraceContextTextMapPropagator()
tracer = trace.get_tracer("booking-platform")

_enabled = False
_consumed: ContextVar[Mapping[str, Span] | None] = ContextVar("consumed_spans", default=None)
"""The spans of the events a consumer transaction applies, by event id (for their replies)."""


def enabled() -> bool:
    return _enabled


def configure(settings: ServiceSettings) -> None:
    """Record and export spans in this process as ``settings`` say (nothing when off)."""
    global _enabled
    if not settings.tracing_enabled or _enabled:
        return
    provider = TracerProvider(
        resource=Resource.create(
            {"service.name": settings.service_name, "service.role": settings.role.value}
        )
    )
    if settings.tracing_otlp_endpoint:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        provider.add_span_processor(
            BatchSpanProcessor(OTLPSpanExporter(endpoint=settings.tracing_otlp_endpoint))
        )
    if settings.tracing_file:
        provider.add_span_processor(SimpleSpanProcessor(JsonLinesExporter(settings.tracing_file)))
    trace.set_tracer_provider(provider)
    _enabled = True


def instrument(engine: AsyncEngine) -> None:
    """A span for every statement ``engine`` runs (when tracing is on)."""
    if _enabled:
        from opentelemetry.instrumentation.sqlalchemy import SQLAlchemyInstrumentor

        # The instrumentation declares SQLAlchemy < 2.1; it works with 2.1 (the e2e trace test
        # finds the statements' spans), so its version check is skipped.
        SQLAlchemyInstrumentor().instrument(engine=engine.sync_engine, skip_dep_check=True)


def traceparent(span: Span | None = None) -> str | None:
    """The W3C ``traceparent`` of ``span`` (default: the current one), None without one."""
    carrier: dict[str, str] = {}
    context = trace.set_span_in_context(span) if span is not None else None
    _PROPAGATOR.inject(carrier, context=context)
    return carrier.get(TRACEPARENT)


def context_of(value: str | None) -> Context | None:
    """The remote parent that ``value`` (a ``traceparent``) names; None if it names none."""
    if not value or not _VALID.match(value):
        return None
    return _PROPAGATOR.extract({TRACEPARENT: value})


inherited: ContextVar[str | None] = ContextVar("inherited_traceparent", default=None)
"""The ``traceparent`` of the event being handled (set with its correlation id): passed on
to the events its handler writes even where this process records no span."""


def current_traceparent() -> str | None:
    """The ``traceparent`` an event written now carries: the current span's (tracing on),
    else the event being handled's, else none."""
    return (traceparent() if _enabled else None) or inherited.get()


def reply_traceparent(cause: Envelope) -> str | None:
    """The ``traceparent`` of an event written while applying ``cause``: the consumer's span
    of ``cause`` when there is one, else ``cause``'s own (passed on untouched)."""
    spans = _consumed.get()
    span = spans.get(str(cause.id)) if spans else None
    if span is not None:
        return traceparent(span)
    return cause.traceparent


@contextlib.contextmanager
def consuming(
    envelopes: Sequence[Envelope], *, consumer: str, topic_of: Mapping[str, str]
) -> Iterator[Mapping[str, Span]]:
    """A consumer span per event (a child of the span that wrote it), ended when the block
    ends (with an error status if it raised); replies written meanwhile are their children."""
    if not _enabled:
        yield {}
        return
    spans = {
        str(envelope.id): tracer.start_span(
            f"{consumer} process {envelope.type}",
            context=context_of(envelope.traceparent),
            kind=SpanKind.CONSUMER,
            attributes={
                "messaging.system": "kafka",
                "messaging.consumer.group.name": consumer,
                "messaging.destination.name": topic_of.get(str(envelope.id), ""),
                "messaging.message.id": str(envelope.id),
                "cloudevents.event_type": envelope.type,
            },
        )
        for envelope in envelopes
    }
    token = _consumed.set(spans)
    # The transaction's own work (inbox, statements) is the child of the one event it applies,
    # or of a span of the batch that links to each event's.
    around = (
        trace.use_span(next(iter(spans.values())), end_on_exit=False)
        if len(spans) == 1
        else tracer.start_as_current_span(
            f"{consumer} apply {len(spans)} events",
            links=[trace.Link(span.get_span_context()) for span in spans.values()],
        )
    )
    try:
        with around:
            yield spans
    except BaseException as exc:
        for span in spans.values():
            span.set_status(Status(StatusCode.ERROR, type(exc).__name__))
        raise
    finally:
        _consumed.reset(token)
        for span in spans.values():
            span.end()


@contextlib.contextmanager
def handling(envelope: Envelope) -> Iterator[None]:
    """Make the consumer's span of ``envelope`` the current one while its handler runs."""
    spans = _consumed.get()
    span = spans.get(str(envelope.id)) if spans else None
    if span is None:
        yield
        return
    with trace.use_span(span, end_on_exit=False):
        yield


@contextlib.contextmanager
def publishing(count: int, traceparents: Sequence[str | None]) -> Iterator[None]:
    """The relay's span for one batch, linked to the span that wrote each event."""
    if not _enabled:
        yield
        return
    links = [
        trace.Link(trace.get_current_span(context).get_span_context())
        for value in traceparents
        if (context := context_of(value)) is not None
    ]
    with tracer.start_as_current_span(
        "outbox publish", kind=SpanKind.PRODUCER, links=links, attributes={"events": count}
    ):
        yield


class TracingMiddleware:
    """A server span for every HTTP request (continuing the caller's ``traceparent``),
    named by its method and route template once the route is known."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        method = scope["method"]
        status: list[int] = []

        async def send_status(message: Message) -> None:
            if message["type"] == "http.response.start":
                status.append(message["status"])
            await send(message)

        with tracer.start_as_current_span(
            f"{method} {scope['path']}",
            context=context_of(headers.get(TRACEPARENT)),
            kind=SpanKind.SERVER,
            attributes={"http.request.method": method, "url.path": scope["path"]},
        ) as span:
            try:
                await self.app(scope, receive, send_status)
            finally:
                route = getattr(scope.get("route"), "path", None)
                if route:
                    span.update_name(f"{method} {route}")
                    span.set_attribute("http.route", route)
                if status:
                    span.set_attribute("http.response.status_code", status[0])
                    if status[0] >= 500:
                        span.set_status(Status(StatusCode.ERROR))


class JsonLinesExporter(SpanExporter):
    """Spans as JSON lines appended to a file (one ``write`` per span, so that the processes
    of a service can share the file)."""

    def __init__(self, path: str) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        lines = "".join(json.dumps(_as_dict(span)) + "\n" for span in spans)
        with self._lock, self.path.open("a", encoding="utf-8") as out:
            out.write(lines)
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        return None


def _as_dict(span: ReadableSpan) -> dict[str, Any]:
    context = span.get_span_context()
    parent = span.parent
    resource = span.resource.attributes if span.resource else {}
    return {
        "trace_id": f"{context.trace_id:032x}" if context else None,
        "span_id": f"{context.span_id:016x}" if context else None,
        "parent_id": f"{parent.span_id:016x}" if parent else None,
        "name": span.name,
        "kind": span.kind.name,
        "service": resource.get("service.name"),
        "role": resource.get("service.role"),
        "start": span.start_time,
        "end": span.end_time,
        "attributes": dict(span.attributes or {}),
        "links": [f"{link.context.trace_id:032x}" for link in span.links],
    }
