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

from booking_contracts.bounds import CorrelationId, Traceparent
from booking_contracts.money import UtcDatetime, utc_now

SPEC_VERSION = "1.0"


_UNSET_EXTENSIONS: set[str] = {"traceparent"}
"""Extension attributes left out of the JSON when unset (events stay as they were before)."""


class Event(BaseModel):
    """Base of every event payload: frozen, strict about unknown fields, versioned.

    A subclass declares ``name`` (past tense: ``BookingConfirmed``), ``version`` and
    ``topic``, and says which aggregate it belongs to through :meth:`aggregate_id`,
    which becomes the Kafka key (order per aggregate) and the CloudEvents ``subject``.
    """

    model_config = ConfigDict(frozen=True, extra="forbid", use_attribute_docstrings=True)

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
    """CloudEvents 1.0 attributes around one event payload (structured mode: the whole Kafka
    record value is this JSON object)."""

    model_config = ConfigDict(frozen=True, extra="forbid", use_attribute_docstrings=True)

    specversion: Literal["1.0"] = "1.0"
    """The CloudEvents version: always ``1.0``."""
    id: uuid.UUID = Field(default_factory=uuid.uuid4)
    """The event's id (a UUID): unique per event, the same when the event is delivered again;
    a consumer applies each id once."""
    source: str = Field(min_length=1, max_length=255)
    """Who published the event, as a URI reference: ``/timeslots``, ``/booking`` or
    ``/reminders`` for the services of the platform, the payment service names itself."""
    type: str = Field(min_length=1, max_length=100)
    """The payload model and its version, ``<Name>.v<N>`` (``BookingCreated.v1``): ``data`` is
    valid against the schema of that name."""
    time: UtcDatetime = Field(default_factory=utc_now)
    """When the producer recorded the event, with the change it reports: an ISO 8601 instant
    in UTC."""
    subject: str | None = Field(default=None, max_length=255)
    """The id of the aggregate the event is about (a room, booking or reminder id), also the
    Kafka record key: the events of one aggregate stay in order. Null when the producer names
    none."""
    datacontenttype: Literal["application/json"] = "application/json"
    """The media type of ``data``: always ``application/json``."""
    correlationid: CorrelationId = Field(
        default=None,
        description="The conversation the event belongs to: the X-Correlation-ID of the HTTP "
        "request that started it, or the id of the event that did, passed on to every event "
        "caused since; null when none. At most 128 characters of [A-Za-z0-9._:-]; any other "
        "value is dropped (read as null)",
    )
    causationid: CorrelationId = Field(
        default=None,
        description="The id of the event whose handling wrote this one; null when a request or "
        "the service itself (a timer) did. At most 128 characters of [A-Za-z0-9._:-]; any "
        "other value is dropped (read as null)",
    )
    traceparent: Traceparent = None
    """The W3C trace context (``00-<trace id>-<span id>-<flags>``) of the span that wrote the
    event: the CloudEvents distributed-tracing extension. A consumer's span for the event is
    its child, so one booking is one trace across the services. Absent when the writer traced
    nothing; any other form is dropped (read as absent), not refused."""
    data: dict[str, Any]
    """The event payload: a JSON object valid against the schema named by ``type``."""

    @classmethod
    def wrap(
        cls,
        event: Event,
        *,
        source: str,
        correlation_id: str | None = None,
        causation_id: str | None = None,
        event_id: uuid.UUID | None = None,
        traceparent: str | None = None,
    ) -> Self:
        """Put ``event`` in a new envelope; the event id is new unless given."""
        return cls(
            id=event_id or uuid.uuid4(),
            source=source,
            type=event.type_name(),
            subject=event.aggregate_id(),
            correlationid=correlation_id,
            causationid=causation_id,
            traceparent=traceparent,
            data=event.model_dump(mode="json"),
        )

    def to_json_bytes(self) -> bytes:
        unset = _UNSET_EXTENSIONS if not self.traceparent else None
        return self.model_dump_json(exclude=unset).encode()

    def as_json(self) -> dict[str, Any]:
        """The envelope as JSON values; ``traceparent`` only when set (an envelope without one
        is written as before the extension existed)."""
        return self.model_dump(
            mode="json", exclude=_UNSET_EXTENSIONS if not self.traceparent else None
        )

    def headers(self) -> dict[str, str]:
        """Record headers mirroring the routing attributes (CloudEvents binary-mode names)."""
        headers = {"ce_id": str(self.id), "ce_type": self.type, "ce_source": self.source}
        if self.correlationid:
            headers["ce_correlationid"] = self.correlationid
        if self.traceparent:
            headers["ce_traceparent"] = self.traceparent
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
