"""The event contract: envelope, payload models, topics, exact money and time types."""

from shared.events import catalogue, topics
from shared.events.envelope import (
    Envelope,
    Event,
    EventCatalogue,
    EventDecodeError,
    MalformedEvent,
    UnknownEventType,
    decode,
)
from shared.events.money import CurrencyCode, ExactDecimal, Money, UtcDatetime, utc_now

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
