"""The one envelope every message of the platform travels in.

Messages are CloudEvents 1.0 in *structured* mode: the Kafka record value is a JSON object
with the CloudEvents attributes (``id``, ``source``, ``type``, ``specversion``, ``time``,
``subject``) plus the extensions ``correlationid`` and ``causationid``, and the payload under
``data``. The ``type`` attribute names the payload model and its version
(``BookingCreated.v1``), so a consumer can tell which model to validate ``data`` with.
The same ``id``, ``type`` and ``correlationid`` are copied into ``ce_*`` record headers so
that tools can route or inspect a record without parsing its value.
"""

from __future__ import annotations

import json
import uuid
from typing import Any, ClassVar, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from shared.events.bounds import CorrelationId
from shared.events.money import UtcDatetime, utc_now

SPEC_VERSION = "1.0"


class Event(BaseModel):
    """Base of every event payload: frozen, strict about unknown fields, versioned.

    A subclass declares ``name`` (past tense: ``BookingConfirmed``), ``version`` and
    ``topic``, and says which aggregate it belongs to through :meth:`aggregate_id`,
    which becomes the Kafka key (order per aggregate) and the CloudEvents ``subject``.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: ClassVar[str]
    version: ClassVar[int] = 1
    topic: ClassVar[str]

    @classmethod
    def type_name(cls) -> str:
        """The CloudEvents ``type`` of this payload model, e.g. ``BookingCreated.v1``."""
        return f"{cls.name}.v{cls.version}"

    def aggregate_id(self) -> str:  # pragma: no cover - every concrete event overrides it
        raise NotImplementedError


class Envelope(BaseModel):
    """CloudEvents 1.0 attributes around one event payload."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    specversion: Literal["1.0"] = "1.0"
    id: uuid.UUID = Field(default_factory=uuid.uuid4)
    source: str = Field(min_length=1, max_length=255)
    type: str = Field(min_length=1, max_length=100)
    time: UtcDatetime = Field(default_factory=utc_now)
    subject: str | None = Field(default=None, max_length=255)
    datacontenttype: Literal["application/json"] = "application/json"
    correlationid: CorrelationId = None
    causationid: CorrelationId = None
    data: dict[str, Any]

    @classmethod
    def wrap(
        cls,
        event: Event,
        *,
        source: str,
        correlation_id: str | None = None,
        causation_id: str | None = None,
        event_id: uuid.UUID | None = None,
    ) -> Self:
        """Put ``event`` in a new envelope; the event id is new unless given."""
        return cls(
            id=event_id or uuid.uuid4(),
            source=source,
            type=event.type_name(),
            subject=event.aggregate_id(),
            correlationid=correlation_id,
            causationid=causation_id,
            data=event.model_dump(mode="json"),
        )

    def to_json_bytes(self) -> bytes:
        return self.model_dump_json().encode()

    def headers(self) -> dict[str, str]:
        """Record headers mirroring the routing attributes (CloudEvents binary-mode names)."""
        headers = {"ce_id": str(self.id), "ce_type": self.type, "ce_source": self.source}
        if self.correlationid:
            headers["ce_correlationid"] = self.correlationid
        return headers


class EventDecodeError(ValueError):
    """A record that cannot become an event: it goes to the dead-letter topic."""


class MalformedEvent(EventDecodeError):
    """The bytes are not a valid envelope, or ``data`` does not fit its model."""


class UnknownEventType(EventDecodeError):
    """The envelope names a type (or version) that this platform does not define."""


class EventCatalogue:
    """Every payload model of the platform, by CloudEvents ``type``."""

    _models: ClassVar[dict[str, type[Event]]] = {}

    @classmethod
    def register(cls, model: type[Event]) -> type[Event]:
        type_name = model.type_name()
        existing = cls._models.get(type_name)
        if existing is not None and existing is not model:
            raise ValueError(f"event type {type_name} is defined twice")
        cls._models[type_name] = model
        return model

    @classmethod
    def get(cls, type_name: str) -> type[Event]:
        try:
            return cls._models[type_name]
        except KeyError:
            raise UnknownEventType(f"unknown event type {type_name!r}") from None

    @classmethod
    def all(cls) -> list[type[Event]]:
        return sorted(cls._models.values(), key=lambda m: m.type_name())


def decode(raw: bytes | None) -> tuple[Envelope, Event]:
    """Parse a record value into its envelope and typed payload.

    Raises :class:`MalformedEvent` or :class:`UnknownEventType` with a reason a person can
    act on; both mean the record can never be processed and belongs in the dead-letter topic.
    Whatever else goes wrong while decoding (a number too long for Python, JSON nested past
    the recursion limit, a bug in a validator) is a :class:`MalformedEvent` too: no record is
    lost or retried forever because of the way it is broken.
    """
    try:
        return _decode(raw)
    except EventDecodeError:
        raise
    except Exception as exc:
        raise MalformedEvent(f"cannot be decoded: {_short(exc)}") from exc


def _decode(raw: bytes | None) -> tuple[Envelope, Event]:
    if not raw:
        raise MalformedEvent("empty record value")
    try:
        document = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise MalformedEvent(f"value is not JSON: {exc}") from exc
    try:
        envelope = Envelope.model_validate(document)
    except ValidationError as exc:
        raise MalformedEvent(f"invalid envelope: {_summary(exc)}") from exc
    model = EventCatalogue.get(envelope.type)
    try:
        event = model.model_validate(envelope.data)
    except ValidationError as exc:
        raise MalformedEvent(f"invalid {envelope.type} data: {_summary(exc)}") from exc
    return envelope, event


def _short(exc: BaseException) -> str:
    text = str(exc)
    text = text if len(text) <= 300 else text[:299] + "…"
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _summary(exc: ValidationError) -> str:
    summary = "; ".join(
        f"{'.'.join(str(p) for p in err['loc'][:8]) or '<root>'}: {err['msg']}"
        for err in exc.errors()[:10]
    )
    return summary if len(summary) <= 2000 else summary[:1999] + "…"
