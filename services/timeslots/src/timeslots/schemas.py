"""HTTP request and response bodies of the timeslots service (never the table rows)."""

from __future__ import annotations

from datetime import date, datetime, time
from typing import Annotated, Any
from uuid import UUID
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import AfterValidator, BaseModel, Field, model_validator

from shared.events.catalogue import RoomType, SlotStatus
from shared.events.money import Money, Price, UtcDatetime
from shared.http.inputs import FreeFormObject, RequestModel
from shared.text import LINE_BREAKS, refuse_control_characters
from timeslots import domain


def _known_time_zone(name: str) -> str:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise ValueError(
            f"unknown time zone {name!r}; use an IANA name such as Europe/Berlin"
        ) from None
    return name


TimeZoneName = Annotated[
    str,
    Field(min_length=1, max_length=64, examples=["Europe/Berlin"]),
    AfterValidator(_known_time_zone),
]
EARLIEST_DATE = date(2000, 1, 1)
LATEST_DATE = date(2199, 12, 31)
CalendarDate = Annotated[date, Field(ge=EARLIEST_DATE, le=LATEST_DATE)]
"""A local date in requests: bounded so that date arithmetic never overflows."""
IsoWeekday = Annotated[int, Field(ge=1, le=7, description="ISO weekday: 1 Monday ... 7 Sunday")]
RoomName = Annotated[
    str,
    Field(
        min_length=1,
        max_length=200,
        description="One line, no control characters: it is shown in the subject line of "
        "the reminder emails",
    ),
    AfterValidator(refuse_control_characters),
]


def _lines_of_text(value: str) -> str:
    return refuse_control_characters(value, allowed="\t" + LINE_BREAKS)


RoomDescription = Annotated[
    str,
    Field(max_length=2000, description="Line breaks and tabs allowed, no other control characters"),
    AfterValidator(_lines_of_text),
]


class _In(RequestModel):
    """A request body: unknown members, NUL characters and NaN/Infinity are refused."""


# --- rooms -----------------------------------------------------------------------------


class RoomIn(_In):
    name: RoomName
    description: RoomDescription = ""
    capacity: int = Field(ge=1, le=10_000, description="People the room holds")
    room_type: RoomType
    hourly_rate: Price
    time_zone: TimeZoneName
    attributes: FreeFormObject = Field(default_factory=dict)


class RoomPatch(_In):
    """Only the fields present change; the time zone applies to slots generated afterwards."""

    name: RoomName | None = None
    description: RoomDescription | None = None
    capacity: int | None = Field(default=None, ge=1, le=10_000)
    room_type: RoomType | None = None
    hourly_rate: Price | None = None
    time_zone: TimeZoneName | None = None
    attributes: FreeFormObject | None = None

    @model_validator(mode="before")
    @classmethod
    def _no_nulls(cls, data: Any) -> Any:
        if isinstance(data, dict):
            nulls = sorted(name for name, value in data.items() if value is None)
            if nulls:
                raise ValueError(f"{nulls[0]} cannot be null; leave it out to keep it")
        return data


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


# --- schedules -------------------------------------------------------------------------


class Interval(_In):
    start: time = Field(examples=["09:00"])
    end: time = Field(examples=["17:00"])


class Blackout(_In):
    starts_at: UtcDatetime
    ends_at: UtcDatetime


class ScheduleIn(_In):
    """Working hours in the room's local time; ``hours`` applies to every open weekday that
    has no entry in ``weekday_hours``."""

    open_weekdays: list[IsoWeekday] = Field(default=[1, 2, 3, 4, 5], max_length=7)
    hours: list[Interval] = Field(default_factory=list, max_length=48)
    weekday_hours: dict[IsoWeekday, list[Interval]] = Field(default_factory=dict)
    slot_minutes: int = Field(default=30, ge=1, le=domain.MAX_SLOT_MINUTES)
    buffer_minutes: int = Field(default=0, ge=0, le=domain.MAX_SLOT_MINUTES)
    max_bookings: int = Field(default=1, ge=1, le=10_000, description="Bookings per slot")
    excluded_dates: list[CalendarDate] = Field(default_factory=list, max_length=1000)
    blackouts: list[Blackout] = Field(default_factory=list, max_length=1000)

    @model_validator(mode="after")
    def _every_open_day_has_hours(self) -> ScheduleIn:
        missing = [d for d in sorted(set(self.open_weekdays)) if not self.hours_of(d)]
        if missing:
            raise ValueError(
                f"open weekday {missing[0]} has no working hours; give `hours` or `weekday_hours`"
            )
        return self

    def hours_of(self, weekday: int) -> list[Interval]:
        return self.weekday_hours.get(weekday, self.hours)


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
    starts_at: UtcDatetime
    ends_at: UtcDatetime
    price: Price | None = Field(default=None, description="Default: hourly rate x length")
    max_bookings: int = Field(default=1, ge=1, le=10_000)


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
