"""HTTP request and response bodies of the timeslots service (never the table rows)."""

from __future__ import annotations

import re
from datetime import date, datetime
from importlib import resources
from typing import Annotated, Any
from uuid import UUID

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, WithJsonSchema

from booking_contracts.bounds import MAX_INT32
from booking_contracts.catalogue import (
    MAX_RULE_MINUTES,
    QuotaPeriod,
    QuotaScope,
    RoomRules,
    RoomType,
    SlotStatus,
)
from booking_contracts.money import AMOUNT_FRACTION_DIGITS, Money, Price
from platform_runtime.http.inputs import (
    CalendarDate,
    FreeFormObject,
    Instant,
    LocalTime,
    PatchModel,
    RequestModel,
    WholeNumber,
)
from platform_runtime.text import LINE_BREAKS, refuse_control_characters, text_pattern
from timeslots import domain, handlers

TIME_ZONES = frozenset(resources.files("tzdata").joinpath("zones").read_text().split())
"""The IANA time zone names of the tzdata package the platform ships with."""


def _known_time_zone(name: str) -> str:
    if name not in TIME_ZONES:
        raise ValueError(f"unknown time zone {name[:64]!r}; use an IANA name such as Europe/Berlin")
    return name


TimeZoneName = Annotated[
    str,
    AfterValidator(_known_time_zone),
    WithJsonSchema(
        {
            "type": "string",
            "enum": sorted(TIME_ZONES),
            "description": "An IANA time zone name",
            "examples": ["Europe/Berlin"],
        }
    ),
]
Capacity = Annotated[WholeNumber, Field(ge=1, le=10_000, description="People the room holds")]
IsoWeekday = Annotated[
    WholeNumber, Field(ge=1, le=7, description="ISO weekday: 1 Monday ... 7 Sunday")
]
WEEKDAY_KEY_PATTERN = "^[1-7]$"


def _weekday_key(value: Any) -> Any:
    if isinstance(value, str) and not re.fullmatch(WEEKDAY_KEY_PATTERN, value):
        raise ValueError(f"{value[:20]!r} is not an ISO weekday '1' (Monday) ... '7' (Sunday)")
    return value


WeekdayKey = Annotated[int, BeforeValidator(_weekday_key)]
"""An ISO weekday as an object member name: '1' (Monday) ... '7' (Sunday)."""
RoomName = Annotated[
    str,
    Field(
        min_length=1,
        max_length=200,
        description="One line, no control characters: it is shown in the subject line of "
        "the reminder emails",
    ),
    AfterValidator(refuse_control_characters),
    Field(json_schema_extra={"pattern": text_pattern()}),
]


DESCRIPTION_ALLOWED = "\t" + LINE_BREAKS


def _lines_of_text(value: str) -> str:
    return refuse_control_characters(value, allowed=DESCRIPTION_ALLOWED)


RoomDescription = Annotated[
    str,
    Field(
        max_length=2000,
        description="Line breaks and tabs allowed, no other control characters",
        json_schema_extra={"pattern": text_pattern(allowed=DESCRIPTION_ALLOWED)},
    ),
    AfterValidator(_lines_of_text),
]


class _In(RequestModel):
    """A request body: unknown members, NUL characters and NaN/Infinity are refused."""


# --- rooms -----------------------------------------------------------------------------


class RoomIn(_In):
    name: RoomName
    description: RoomDescription = ""
    capacity: Capacity
    room_type: RoomType
    hourly_rate: Price
    time_zone: TimeZoneName
    attributes: FreeFormObject = Field(default_factory=dict)

    def command(self) -> domain.NewRoom:
        return domain.NewRoom(**{name: getattr(self, name) for name in type(self).model_fields})


class RoomPatch(PatchModel):
    """Only the fields present change (none may be null); the time zone applies to slots
    generated afterwards."""

    name: RoomName | None = None
    description: RoomDescription | None = None
    capacity: Capacity | None = None
    room_type: RoomType | None = None
    hourly_rate: Price | None = None
    time_zone: TimeZoneName | None = None
    attributes: FreeFormObject | None = None

    def command(self) -> domain.RoomChanges:
        return domain.RoomChanges(**{name: getattr(self, name) for name in self.model_fields_set})


class RoomOut(BaseModel):
    id: UUID
    name: str
    description: str
    capacity: int
    room_type: RoomType
    hourly_rate: Money
    time_zone: str
    active: bool
    attributes: dict[str, Any]
    created_at: datetime
    updated_at: datetime


class RoomPage(BaseModel):
    items: list[RoomOut]
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page")


# --- booking rules ---------------------------------------------------------------------

RuleMinutes = Annotated[WholeNumber, Field(ge=0, le=MAX_RULE_MINUTES)]
WEEK_MINUTES = 7 * 24 * 60
_FRACTION = rf"(\.[0-9]{{1,{AMOUNT_FRACTION_DIGITS}}})?"
PERCENT_PATTERN = rf"^(100(\.0{{1,{AMOUNT_FRACTION_DIGITS}}})?|[0-9]{{1,2}}{_FRACTION})$"
"""A decimal string from 0 to 100 (as ``Percent`` of the contract reads it)."""


def _rule(name: str) -> str | None:
    """What the event contract says of the rule ``name``."""
    return RoomRules.model_fields[name].description


class QuotaIn(_In):
    """One user holds at most ``most`` live bookings whose slots start in one ``per`` window
    of the room's time zone, counted over ``scope``."""

    most: WholeNumber = Field(ge=1, le=MAX_INT32)
    per: QuotaPeriod
    scope: QuotaScope = QuotaScope.ROOM


class RefundTierIn(_In):
    """A user's cancellation at least ``notice_minutes`` before the start refunds ``percent``
    of the price."""

    notice_minutes: RuleMinutes
    percent: str = Field(
        pattern=PERCENT_PATTERN,
        description="A percentage from 0 to 100, as a decimal string",
        examples=["50"],
    )


def _overrides_schema(schema: dict[str, Any]) -> None:
    """No member has a default in the document: a member left out is inherited."""
    for member in schema.get("properties", {}).values():
        member.pop("default", None)


class RoomRulesIn(_In):
    """The booking rules the room sets itself, any of them: a rule left out is inherited from
    the room type's defaults or else the platform's; ``null`` is a value where a rule allows
    it (``"horizon_minutes": null``: no horizon, whatever the defaults say)."""

    model_config = ConfigDict(extra="forbid", json_schema_extra=_overrides_schema)

    book_notice_minutes: RuleMinutes = Field(default=0, description=_rule("book_notice_minutes"))
    cancel_notice_minutes: RuleMinutes = Field(
        default=0, description=_rule("cancel_notice_minutes")
    )
    reschedule_notice_minutes: RuleMinutes = Field(
        default=0, description=_rule("reschedule_notice_minutes")
    )
    horizon_minutes: Annotated[WholeNumber, Field(ge=1, le=MAX_RULE_MINUTES)] | None = Field(
        default=None, description=_rule("horizon_minutes")
    )
    quotas: list[QuotaIn] = Field(default_factory=list, max_length=6, description=_rule("quotas"))
    max_reschedules: Annotated[WholeNumber, Field(ge=0, le=1000)] | None = Field(
        default=None, description=_rule("max_reschedules")
    )
    hold_minutes: Annotated[WholeNumber, Field(ge=1, le=WEEK_MINUTES)] | None = Field(
        default=None, description=_rule("hold_minutes")
    )
    refund_tiers: list[RefundTierIn] | None = Field(
        default=None, max_length=10, description=_rule("refund_tiers")
    )
    offer_minutes: Annotated[WholeNumber, Field(ge=1, le=WEEK_MINUTES)] = Field(
        default=15, description=_rule("offer_minutes")
    )

    def command(self) -> domain.PartialRules:
        given = self.model_dump(mode="json", include=self.model_fields_set)
        return domain.PartialRules.checked(given, whose="the room's own rules")


class RoomRulesOut(BaseModel):
    room_id: UUID
    rules: RoomRules = Field(description="The rules in force for the room")
    own: dict[str, Any] = Field(
        description="The rules the room sets itself (members of `rules`); it inherits the others"
    )
    room_version: int = Field(description="The room's version, as in its events")


# --- schedules -------------------------------------------------------------------------


class Interval(_In):
    start: LocalTime
    end: LocalTime


class Blackout(_In):
    starts_at: Instant
    ends_at: Instant


class ScheduleIn(_In):
    """Working hours in the room's local time; ``hours`` applies to every open weekday that
    has no entry in ``weekday_hours``."""

    open_weekdays: list[IsoWeekday] = Field(default=[1, 2, 3, 4, 5], max_length=7)
    hours: list[Interval] = Field(default_factory=list, max_length=48)
    weekday_hours: dict[WeekdayKey, list[Interval]] = Field(
        default_factory=dict,
        description="Hours of particular weekdays, by ISO weekday ('1' Monday ... '7' Sunday)",
        json_schema_extra={"propertyNames": {"pattern": WEEKDAY_KEY_PATTERN}},
    )
    slot_minutes: WholeNumber = Field(default=30, ge=1, le=domain.MAX_SLOT_MINUTES)
    buffer_minutes: WholeNumber = Field(default=0, ge=0, le=domain.MAX_SLOT_MINUTES)
    max_bookings: WholeNumber = Field(default=1, ge=1, le=10_000, description="Bookings per slot")
    excluded_dates: list[CalendarDate] = Field(default_factory=list, max_length=1000)
    blackouts: list[Blackout] = Field(default_factory=list, max_length=1000)

    def hours_of(self, weekday: int) -> list[Interval]:
        return self.weekday_hours.get(weekday, self.hours)

    def command(self) -> handlers.NewSchedule:
        return handlers.NewSchedule(
            open_weekdays=self.open_weekdays,
            weekday_hours={
                weekday: [(i.start, i.end) for i in self.hours_of(weekday)]
                for weekday in set(self.open_weekdays)
            },
            slot_minutes=self.slot_minutes,
            buffer_minutes=self.buffer_minutes,
            max_bookings=self.max_bookings,
            excluded_dates=self.excluded_dates,
            blackouts=[(b.starts_at, b.ends_at) for b in self.blackouts],
        )


class ScheduleOut(BaseModel):
    room_id: UUID
    time_zone: str
    open_weekdays: list[int]
    weekday_hours: dict[int, list[Interval]]
    slot_minutes: int
    buffer_minutes: int
    max_bookings: int
    excluded_dates: list[date]
    blackouts: list[Blackout]
    updated_at: datetime


# --- slots -----------------------------------------------------------------------------


class GenerateIn(_In):
    date_from: CalendarDate = Field(description="First local date (room time zone), inclusive")
    date_to: CalendarDate = Field(description="Last local date (room time zone), inclusive")
    price_override: Price | None = Field(default=None, description="Price of every new slot")


class GenerationOut(BaseModel):
    room_id: UUID
    date_from: date
    date_to: date
    created: int = Field(description="Slots created by this request")
    skipped: int = Field(description="Slots of the schedule that existed or overlapped one")
    first_starts_at: datetime | None
    last_starts_at: datetime | None


class CustomSlot(_In):
    starts_at: Instant
    ends_at: Instant
    price: Price | None = Field(default=None, description="Default: hourly rate x length")
    max_bookings: WholeNumber = Field(default=1, ge=1, le=10_000)

    def command(self) -> handlers.NewSlot:
        return handlers.NewSlot(
            starts_at=self.starts_at,
            ends_at=self.ends_at,
            price=self.price,
            max_bookings=self.max_bookings,
        )


class CustomSlotsIn(_In):
    slots: list[CustomSlot] = Field(min_length=1)


class SlotOut(BaseModel):
    id: UUID
    room_id: UUID
    starts_at: datetime
    ends_at: datetime
    price: Money
    max_bookings: int
    booked_count: int
    status: SlotStatus
    revision: int
    created_at: datetime


class SlotPage(BaseModel):
    items: list[SlotOut]
    next_cursor: str | None


# --- availability ----------------------------------------------------------------------


class AvailableSlot(BaseModel):
    slot_id: UUID
    room_id: UUID
    room_name: str
    time_zone: str
    starts_at: datetime
    ends_at: datetime
    local_starts_at: datetime = Field(description="Start in the room's time zone")
    local_ends_at: datetime
    price: Money
    places_left: int
    free_minutes: int | None = Field(
        default=None,
        description="Consecutive free minutes from this start (when `min_duration` is given)",
    )


class AvailabilityPage(BaseModel):
    items: list[AvailableSlot]
    next_cursor: str | None
