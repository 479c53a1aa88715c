"""The envelope and the event catalogue: what consumers can rely on."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import ClassVar

import pytest
from pydantic import ValidationError

from booking_contracts import (
    Envelope,
    Event,
    EventCatalogue,
    MalformedEvent,
    Money,
    UnknownEventType,
)
from booking_contracts import decode as decode_event
from booking_contracts.bounds import MAX_NOTE_CHARACTERS
from booking_contracts.catalogue import (
    BookingCreated,
    Contact,
    PaymentFailed,
    PaymentSucceeded,
    SlotSnapshot,
)
from booking_contracts.topics import ALL_TOPICS, BOOKING_EVENTS, dead_letter_topic


def booking_created() -> BookingCreated:
    start = datetime(2026, 12, 1, 9, tzinfo=UTC)
    return BookingCreated(
        booking_id=uuid.uuid4(),
        user_id="user-1",
        slot_id=uuid.uuid4(),
        room_id=uuid.uuid4(),
        starts_at=start,
        ends_at=start + timedelta(minutes=30),
        price=Money.of("45.00", "EUR"),
        hold_expires_at=start - timedelta(days=1),
    )


def test_an_event_round_trips_through_its_envelope() -> None:
    event = booking_created()
    envelope = Envelope.wrap(event, source="/booking", correlation_id="corr-1", causation_id="c")

    decoded_envelope, decoded = decode_event(envelope.to_json_bytes())

    assert decoded == event
    assert decoded_envelope.id == envelope.id
    assert decoded_envelope.type == "BookingCreated.v1"
    assert decoded_envelope.subject == str(event.booking_id)
    assert decoded_envelope.correlationid == "corr-1"
    assert decoded_envelope.causationid == "c"


def test_the_wire_format_is_cloudevents_structured_json() -> None:
    envelope = Envelope.wrap(booking_created(), source="/booking")
    document = json.loads(envelope.to_json_bytes())
    assert document["specversion"] == "1.0"
    assert document["datacontenttype"] == "application/json"
    assert document["data"]["price"] == {"amount": "45.00", "currency": "EUR"}
    assert document["data"]["starts_at"] == "2026-12-01T09:00:00Z"
    assert envelope.headers() == {
        "ce_id": str(envelope.id),
        "ce_type": "BookingCreated.v1",
        "ce_source": "/booking",
    }
    with_correlation = Envelope.wrap(booking_created(), source="/b", correlation_id="x")
    assert with_correlation.headers()["ce_correlationid"] == "x"


def test_a_given_event_id_is_kept() -> None:
    event_id = uuid.uuid4()
    assert Envelope.wrap(booking_created(), source="/b", event_id=event_id).id == event_id


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (None, "empty"),
        (b"", "empty"),
        (b"\xff\xfe", "not JSON"),
        (b"{not json", "not JSON"),
        (b'{"type": "BookingCreated.v1"}', "invalid envelope"),
        (b"[1, 2]", "invalid envelope"),
    ],
)
def test_malformed_records_are_refused_with_a_reason(raw: bytes | None, reason: str) -> None:
    with pytest.raises(MalformedEvent, match=reason):
        decode_event(raw)


def test_data_that_does_not_fit_its_model_names_the_field() -> None:
    document = json.loads(Envelope.wrap(booking_created(), source="/b").to_json_bytes())
    document["data"]["price"]["amount"] = 12.5
    with pytest.raises(MalformedEvent, match=r"price\.amount"):
        decode_event(json.dumps(document).encode())


def test_an_unknown_type_or_version_is_refused() -> None:
    envelope = Envelope(source="/b", type="BookingCreated.v7", data={})
    with pytest.raises(UnknownEventType, match=r"BookingCreated\.v7"):
        decode_event(envelope.to_json_bytes())


def test_unknown_fields_in_data_are_refused() -> None:
    document = json.loads(Envelope.wrap(booking_created(), source="/b").to_json_bytes())
    document["data"]["surprise"] = True
    with pytest.raises(MalformedEvent, match="surprise"):
        decode_event(json.dumps(document).encode())


def test_events_are_immutable() -> None:
    event = booking_created()
    with pytest.raises(ValueError, match="frozen"):
        event.user_id = "someone-else"  # type: ignore[misc]


def test_a_type_cannot_be_defined_twice() -> None:
    class Impostor(Event):
        name: ClassVar[str] = "BookingCreated"
        topic: ClassVar[str] = BOOKING_EVENTS

    with pytest.raises(ValueError, match="defined twice"):
        EventCatalogue.register(Impostor)
    assert EventCatalogue.register(BookingCreated) is BookingCreated


def test_every_event_has_a_topic_of_the_platform() -> None:
    assert {
        m.topic for m in EventCatalogue.all() if m.__module__ == "booking_contracts.catalogue"
    } <= set(ALL_TOPICS)
    assert dead_letter_topic(BOOKING_EVENTS) == "booking.events.dlq"


def test_payment_amounts_are_exact() -> None:
    event = PaymentSucceeded(
        booking_id=uuid.uuid4(), payment_id="p-1", amount=Money.of("10.10", "EUR")
    )
    assert event.amount.amount == Decimal("10.10")


def test_contacts_validate_email_and_international_phone() -> None:
    assert Contact(email="a@example.com", phone="+4915112345678").phone == "+4915112345678"
    with pytest.raises(ValueError, match="email"):
        Contact(email="not-an-email")
    with pytest.raises(ValueError, match="phone"):
        Contact(email="a@example.com", phone="0151 123")


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b'{"n": ' + b"9" * 5000 + b"}", "cannot be decoded: ValueError"),  # over 4,300 digits
        (b"[" * 100_000 + b"]" * 100_000, "cannot be decoded: RecursionError"),
    ],
)
def test_whatever_breaks_decoding_is_a_malformed_event(raw: bytes, reason: str) -> None:
    with pytest.raises(MalformedEvent, match=reason) as refused:
        decode_event(raw)

    assert len(str(refused.value)) < 1000


def _payment(**envelope: object) -> bytes:
    data = {
        "booking_id": str(uuid.uuid4()),
        "payment_id": "pay-1",
        "amount": {"amount": "10.00", "currency": "EUR"},
    }
    document = {"source": "/payments", "type": "PaymentSucceeded.v1", "data": data} | envelope
    return json.dumps(document).encode()


def test_an_insane_correlation_id_is_dropped_and_a_sane_one_kept() -> None:
    huge, _ = decode_event(_payment(correlationid="c" * 600_000, causationid="a\nb"))
    sane, _ = decode_event(_payment(correlationid="order-42:step.1"))

    assert huge.correlationid is None
    assert huge.causationid is None
    assert sane.correlationid == "order-42:step.1"


def test_envelope_strings_are_bounded() -> None:
    with pytest.raises(MalformedEvent, match="source"):
        decode_event(_payment(source="s" * 256))
    with pytest.raises(MalformedEvent, match="subject"):
        decode_event(_payment(subject="s" * 256))


def test_free_text_from_outside_is_cut_and_ids_and_counts_are_bounded() -> None:
    booking = str(uuid.uuid4())
    failed = Envelope(
        source="/payments",
        type="PaymentFailed.v1",
        data={"booking_id": booking, "payment_id": "p", "reason": "r" * 600_000},
    ).to_json_bytes()
    long_id = Envelope(
        source="/payments",
        type="PaymentFailed.v1",
        data={"booking_id": booking, "payment_id": "p" * 256, "reason": "declined"},
    ).to_json_bytes()

    _, event = decode_event(failed)

    assert isinstance(event, PaymentFailed)
    assert len(event.reason) == MAX_NOTE_CHARACTERS
    assert event.reason.endswith("…")
    with pytest.raises(MalformedEvent, match="payment_id"):
        decode_event(long_id)
    with pytest.raises(ValidationError, match="less than or equal"):
        SlotSnapshot.model_validate(
            {
                "slot_id": str(uuid.uuid4()),
                "room_id": str(uuid.uuid4()),
                "starts_at": "2027-01-01T09:00:00Z",
                "ends_at": "2027-01-01T10:00:00Z",
                "price": {"amount": "1.00", "currency": "EUR"},
                "max_bookings": 2**31,
                "status": "open",
                "revision": 1,
            }
        )


def test_a_lower_case_currency_from_a_payment_provider_is_read() -> None:
    raw = json.loads(_payment())
    raw["data"]["amount"]["currency"] = "eur"

    _, event = decode_event(json.dumps(raw).encode())

    assert isinstance(event, PaymentSucceeded)
    assert event.amount == Money.of("10.00", "EUR")
