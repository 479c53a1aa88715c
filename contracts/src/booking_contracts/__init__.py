"""The event contract: envelope, payload models, topics, exact money and time types."""

from booking_contracts import catalogue, topics
from booking_contracts.envelope import (
    Envelope,
    Event,
    EventCatalogue,
    EventDecodeError,
    MalformedEvent,
    UnknownEventType,
    decode,
)
from booking_contracts.money import CurrencyCode, ExactDecimal, Money, UtcDatetime, utc_now

__all__ = [
    "CurrencyCode",
    "Envelope",
    "Event",
    "EventCatalogue",
    "EventDecodeError",
    "ExactDecimal",
    "MalformedEvent",
    "Money",
    "UnknownEventType",
    "UtcDatetime",
    "catalogue",
    "decode",
    "topics",
    "utc_now",
]
