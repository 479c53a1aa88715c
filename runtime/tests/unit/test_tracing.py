"""Traces: spans for requests, consumed events and relay batches, with the trace context
carried in the events (``platform_runtime.tracing``)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from booking_contracts.catalogue import BookingExpired
from booking_contracts.envelope import Envelope
from platform_runtime import tracing
from platform_runtime.messaging import caused_by
from platform_runtime.settings import ServiceSettings

PARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
EVENT = BookingExpired(
    booking_id=uuid.UUID(int=1), user_id="u", slot_id=uuid.UUID(int=2), room_id=uuid.UUID(int=3)
)


@pytest.fixture(scope="module")
def span_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("spans") / "svc.jsonl"


@pytest.fixture(scope="module")
def spans(span_file: Path) -> Iterator[InMemorySpanExporter]:
    """Tracing on for this module's tests (a file and an in-memory exporter), off after."""
    path = span_file
    tracing.configure(
        ServiceSettings(service_name="svc", tracing_enabled=True, tracing_file=str(path))
    )
    provider = trace.get_tracer_provider()
    assert isinstance(provider, TracerProvider)
    exporter = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield exporter
    tracing._enabled = False


@pytest.fixture
def on(spans: InMemorySpanExporter, monkeypatch: pytest.MonkeyPatch) -> InMemorySpanExporter:
    monkeypatch.setattr(tracing, "_enabled", True)
    spans.clear()
    return spans


def _ids(value: str) -> tuple[str, str]:
    _, trace_id, span_id, _ = value.split("-")
    return trace_id, span_id


def test_a_consumed_event_is_a_child_of_its_writer_and_its_replies_of_it(
    on: InMemorySpanExporter,
) -> None:
    cause = Envelope.wrap(EVENT, source="/booking", traceparent=PARENT)

    with tracing.consuming([cause], consumer="group", topic_of={str(cause.id): "t"}):
        with caused_by(cause), tracing.handling(cause):
            written = tracing.current_traceparent()
        reply = tracing.reply_traceparent(cause)

    (span,) = on.get_finished_spans()
    assert span.name == "group process BookingExpired.v1"
    assert f"{span.context.trace_id:032x}" == _ids(PARENT)[0]
    assert span.parent is not None
    assert f"{span.parent.span_id:016x}" == _ids(PARENT)[1]
    assert span.attributes is not None
    assert span.attributes["messaging.destination.name"] == "t"
    assert written == reply
    assert written is not None
    assert _ids(written) == (_ids(PARENT)[0], f"{span.context.span_id:016x}")


def test_a_batch_gets_a_span_linked_to_each_event_and_failures_are_marked(
    on: InMemorySpanExporter,
) -> None:
    first = Envelope.wrap(EVENT, source="/b", traceparent=PARENT)
    second = Envelope.wrap(EVENT, source="/b")

    with pytest.raises(RuntimeError), tracing.consuming([first, second], consumer="g", topic_of={}):
        raise RuntimeError("deadlock")

    finished = {span.name: span for span in on.get_finished_spans()}
    batch = finished["g apply 2 events"]
    assert len(batch.links) == 2
    events = [s for s in on.get_finished_spans() if s.name.startswith("g process")]
    assert [s.status.status_code for s in events] == [trace.StatusCode.ERROR] * 2


def test_the_relay_links_its_batch_to_the_spans_that_wrote_the_events(
    on: InMemorySpanExporter,
) -> None:
    with tracing.publishing(2, [PARENT, None, "not-a-traceparent"]):
        pass

    (span,) = on.get_finished_spans()
    assert span.name == "outbox publish"
    assert [f"{link.context.trace_id:032x}" for link in span.links] == [_ids(PARENT)[0]]


async def test_a_request_is_a_server_span_continuing_the_callers_trace_named_by_route(
    on: InMemorySpanExporter,
) -> None:
    app = FastAPI()

    @app.get("/rooms/{room_id}")
    async def room(room_id: int) -> dict[str, Any]:
        return {"traceparent": tracing.current_traceparent()}

    @app.get("/boom")
    async def boom() -> None:
        raise RuntimeError("unlucky")

    traced = tracing.TracingMiddleware(app)
    transport = httpx.ASGITransport(app=traced, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://svc") as http:
        answer = await http.get("/rooms/7", headers={"traceparent": PARENT})
        failed = await http.get("/boom")

    spans = {span.name: span for span in on.get_finished_spans() if span.kind.name == "SERVER"}
    server = spans["GET /rooms/{room_id}"]
    assert f"{server.context.trace_id:032x}" == _ids(PARENT)[0]
    assert _ids(answer.json()["traceparent"])[0] == _ids(PARENT)[0]  # the handler is in it
    assert server.parent is not None
    assert f"{server.parent.span_id:016x}" == _ids(PARENT)[1]
    assert server.attributes is not None
    assert server.attributes["http.response.status_code"] == 200
    assert failed.status_code == 500
    assert spans["GET /boom"].status.status_code == trace.StatusCode.ERROR


async def test_lifespan_messages_pass_through_untraced(on: InMemorySpanExporter) -> None:
    seen: list[str] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        seen.append(scope["type"])

    # receive and send are never touched for a lifespan message
    await tracing.TracingMiddleware(app)({"type": "lifespan"}, None, None)  # type: ignore[arg-type]

    assert seen == ["lifespan"]
    assert on.get_finished_spans() == ()


def test_spans_are_written_to_the_file_as_json_lines(
    span_file: Path, on: InMemorySpanExporter
) -> None:
    with tracing.tracer.start_as_current_span("written"):
        pass

    path = span_file
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert lines[-1]["name"] == "written"
    assert lines[-1]["service"] == "svc"
    assert len(lines[-1]["trace_id"]) == 32


def test_without_tracing_events_pass_the_trace_context_on_untouched(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(tracing, "_enabled", False)
    cause = Envelope.wrap(EVENT, source="/b", traceparent=PARENT)

    with caused_by(cause):
        inherited = tracing.current_traceparent()
    with tracing.consuming([cause], consumer="g", topic_of={}), tracing.handling(cause):
        reply = tracing.reply_traceparent(cause)

    assert not tracing.enabled()
    assert inherited == reply == PARENT
    assert tracing.current_traceparent() is None


def test_an_envelope_drops_a_malformed_traceparent_and_omits_an_absent_one() -> None:
    odd = Envelope.model_validate(
        Envelope.wrap(EVENT, source="/b").as_json() | {"traceparent": "00-xyz"}
    )
    plain = Envelope.wrap(EVENT, source="/b")
    traced = Envelope.wrap(EVENT, source="/b", traceparent=PARENT)

    assert odd.traceparent is None
    assert "traceparent" not in json.loads(plain.to_json_bytes())
    assert "traceparent" not in plain.as_json()
    assert "ce_traceparent" not in plain.headers()
    assert json.loads(traced.to_json_bytes())["traceparent"] == PARENT
    assert traced.headers()["ce_traceparent"] == PARENT
    assert tracing.context_of("00-xyz") is None
    assert tracing.context_of(None) is None
