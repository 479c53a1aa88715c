"""The exported JSON Schemas other teams build against."""

from __future__ import annotations

from booking_contracts.schema import schemas


def test_every_event_and_the_envelope_have_a_schema() -> None:
    exported = schemas()
    assert "Envelope.json" in exported
    assert "BookingConfirmed.v1.json" in exported
    booking = exported["BookingCreated.v1.json"]
    assert booking["x-topic"] == "booking.events"
    money = booking["$defs"]["Money"]["properties"]["amount"]
    assert money["type"] == "string"
