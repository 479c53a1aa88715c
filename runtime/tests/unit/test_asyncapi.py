"""AsyncAPI documents built from what a service runtime declares."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import pytest
from fastapi import FastAPI

from booking_contracts import topics
from booking_contracts.catalogue import BookingCreated, ReminderSent, RoomDeactivated
from booking_contracts.envelope import Envelope, EventCatalogue
from booking_contracts.money import utc_now
from platform_runtime import asyncapi
from platform_runtime.cli import service_main
from platform_runtime.db import service_metadata
from platform_runtime.inbox import inbox_table
from platform_runtime.messaging import EventContext
from platform_runtime.outbox import outbox_table
from platform_runtime.service import ServiceRuntime
from platform_runtime.settings import ServiceSettings

metadata = service_metadata()
outbox_table(metadata)
inbox_table(metadata)

TIMESLOT_EVENTS = [
    "RoomDeactivated.v1",
    "RoomRulesSet.v1",
    "RoomUpserted.v1",
    "SlotChanged.v1",
    "SlotsGenerated.v1",
]


def runtime(*, produces: list[str], consumes_bookings: bool = True) -> ServiceRuntime:
    service = ServiceRuntime(
        ServiceSettings(service_name="svc"), metadata=metadata, source="/svc", produces=produces
    )
    if consumes_bookings:

        @service.consumer("svc-bookings").on(BookingCreated)
        async def on_created(event: BookingCreated, ctx: EventContext) -> None:
            raise NotImplementedError

    return service


@pytest.fixture
def document() -> dict[str, Any]:
    return asyncapi.build(
        runtime(produces=[topics.TIMESLOTS_EVENTS]),
        title="Svc",
        version="1.2.3",
        description="A test service.",
    )


def refs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref":
                yield value
            else:
                yield from refs(value)
    elif isinstance(node, list):
        for value in node:
            yield from refs(value)


def resolve(document: dict[str, Any], ref: str) -> Any:
    assert ref.startswith("#/"), ref
    node: Any = document
    for part in ref[2:].split("/"):
        node = node[part]
    return node


def test_the_document_lists_channels_in_and_out_and_the_dead_letter_topic(
    document: dict[str, Any],
) -> None:
    assert document["asyncapi"] == "3.1.0"
    assert document["info"] == {
        "title": "Svc",
        "version": "1.2.3",
        "description": "A test service.",
    }
    channels = document["channels"]
    assert sorted(channels) == ["booking.events", "booking.events.dlq", "timeslots.events"]
    assert sorted(channels["timeslots.events"]["messages"]) == TIMESLOT_EVENTS
    assert list(channels["booking.events"]["messages"]) == ["BookingCreated.v1"]
    assert list(channels["booking.events.dlq"]["messages"]) == ["DeadLetter"]
    assert channels["timeslots.events"]["address"] == "timeslots.events"
    assert channels["booking.events"]["bindings"]["kafka"]["topic"] == "booking.events"


def test_operations_say_what_is_sent_and_which_group_receives_what(
    document: dict[str, Any],
) -> None:
    operations = document["operations"]
    assert sorted(operations) == [
        "receive.svc-bookings.booking.events",
        "send.booking.events.dlq",
        "send.timeslots.events",
    ]
    send = operations["send.timeslots.events"]
    assert send["action"] == "send"
    assert send["channel"] == {"$ref": "#/channels/timeslots.events"}
    assert [m["$ref"] for m in send["messages"]] == [
        f"#/channels/timeslots.events/messages/{name}" for name in TIMESLOT_EVENTS
    ]
    receive = operations["receive.svc-bookings.booking.events"]
    assert receive["action"] == "receive"
    assert receive["messages"] == [{"$ref": "#/channels/booking.events/messages/BookingCreated.v1"}]
    assert receive["bindings"]["kafka"]["groupId"] == {"type": "string", "enum": ["svc-bookings"]}
    assert operations["send.booking.events.dlq"]["action"] == "send"


def test_every_message_is_the_envelope_around_the_event_schema(document: dict[str, Any]) -> None:
    message = document["components"]["messages"]["BookingCreated.v1"]
    assert message["summary"].startswith("A place is held for a user")
    payload = resolve(document, message["payload"]["$ref"])
    assert set(payload["properties"]) == set(Envelope.model_fields)
    assert payload["properties"]["type"]["const"] == "BookingCreated.v1"
    data = resolve(document, payload["properties"]["data"]["$ref"])
    assert data["title"] == "BookingCreated"
    assert set(data["properties"]) == set(BookingCreated.model_fields)
    assert set(data["required"]) == {
        name for name, field in BookingCreated.model_fields.items() if field.is_required()
    }
    money = resolve(document, data["properties"]["price"]["$ref"])
    assert money["properties"]["amount"]["type"] == "string"


def test_the_headers_are_the_ones_the_outbox_relay_sends(document: dict[str, Any]) -> None:
    event = RoomDeactivated(room_id=uuid.uuid4(), deactivated_at=utc_now())
    sent = Envelope.wrap(event, source="/svc", correlation_id="c-1").headers()
    headers = document["components"]["messages"]["RoomDeactivated.v1"]["headers"]

    assert set(headers["properties"]) == set(sent)
    assert set(headers["required"]) <= set(sent)
    assert headers["properties"]["ce_type"]["const"] == sent["ce_type"]


def test_every_reference_resolves_and_no_schema_keeps_local_definitions(
    document: dict[str, Any],
) -> None:
    for ref in set(refs(document)):
        resolve(document, ref)
    assert "$defs" not in json.dumps(document)


def test_a_service_that_only_publishes_has_no_dead_letters() -> None:
    document = asyncapi.build(
        runtime(produces=[topics.REMINDER_EVENTS, "svc.unknown"], consumes_bookings=False),
        title="Svc",
        version="1",
    )

    assert "description" not in document["info"]
    assert sorted(document["channels"]) == ["reminders.events", "svc.unknown"]
    assert document["channels"]["svc.unknown"]["messages"] == {}
    assert "DeadLetter" not in document["components"]["messages"]
    reminder_events = [m.type_name() for m in EventCatalogue.all() if m.topic == "reminders.events"]
    assert sorted(document["components"]["messages"]) == reminder_events
    sent = document["components"]["messages"]["ReminderSent.v1"]
    assert sent["summary"] == " ".join((ReminderSent.__doc__ or "").split())


def test_a_base_class_docstring_is_never_a_message_summary() -> None:
    class Undocumented(ReminderSent):
        name: ClassVar[str] = "Undocumented"

    assert "summary" not in asyncapi._message(Undocumented)


def test_a_service_without_events_has_an_empty_document() -> None:
    document = asyncapi.build(runtime(produces=[], consumes_bookings=False), title="S", version="1")

    assert document["channels"] == {}
    assert document["operations"] == {}
    assert document["components"] == {"messages": {}, "schemas": {}}


def app_factory(settings: ServiceSettings) -> FastAPI:
    service = runtime(produces=[topics.BOOKING_EVENTS])
    return service.create_app(title="Svc", version="2.0", description="Documented.")


@pytest.mark.usefixtures("root_logger")
def test_the_cli_prints_the_document(capsys: pytest.CaptureFixture[str]) -> None:
    code = service_main(
        settings_factory=lambda: ServiceSettings(service_name="svc"),
        app_factory=app_factory,
        alembic_ini=Path("unused.ini"),
        argv=["asyncapi"],
    )

    assert code == 0
    printed = capsys.readouterr().out
    assert printed == asyncapi.render(asyncapi.document_of(app_factory(ServiceSettings())))
    document = json.loads(printed)
    assert document["info"] == {"title": "Svc", "version": "2.0", "description": "Documented."}
    assert "send.booking.events" in document["operations"]
    assert "receive.svc-bookings.booking.events" in document["operations"]
