"""Slot generation: from a room's weekly schedule to the concrete slots it can sell.

Pure domain code: no database, no HTTP, no Kafka. A ``Schedule`` says when a room is open in
its own local time; ``expand`` turns it into ``SlotSpec`` values with UTC instants and a
price; ``validate_custom_slots`` checks slots an operator adds by hand. ``rules_in_force``
merges a room's booking rules: its own over its room type's defaults over the platform's.

Errors form one small tree::

    TimeslotError              anything this module refuses
     +-- InvalidSchedule       a schedule, working interval or blackout that makes no sense
     +-- InvalidRange          a date range that is reversed or longer than allowed
     +-- InvalidSlot           a custom slot that is naive, not in UTC, empty or too long;
                               a slot length that cannot be priced
     +-- SlotOverlap           a custom slot that overlaps another new or an existing slot
     +-- RoomNotFound          no room with that id
     +-- SlotNotFound          no slot with that id
     +-- RoomUnavailable       a room that cannot take the request now (inactive, no schedule)
     +-- InvalidRules          booking rules that are not rules, or that contradict each other
                               once a room's own are merged over the defaults

Time semantics, decided once for the whole module:

* Working hours and slots are **local wall-clock times** of the schedule's IANA time zone. A
  slot "09:00-09:30" is 09:00-09:30 on the clocks in the room, whatever the UTC offset of the
  day. On the days clocks change, 09:00-17:00 is therefore still sixteen half-hour slots, each
  at its proper UTC instant.
* Each local start and end is converted to UTC with the first occurrence (``fold=0``).
* A slot whose local start or end does not exist (it falls into a spring-forward gap, such as
  02:00-03:00 in Berlin on 2026-03-29) is skipped. The end is checked like the start, so a
  slot ending exactly where the gap begins (01:30-02:00 that night) is skipped too: 02:00
  never shows on a clock there.
* An ambiguous local time (the hour that is repeated when clocks fall back) is taken at its
  first occurrence. The second occurrence of the repeated hour never starts a slot: a slot
  that starts in the first occurrence and ends after the repeated hour keeps its wall-clock
  span and lasts longer in elapsed time (02:30-03:00 in Berlin on 2026-10-25 is
  00:30Z-02:00Z). Its price is the price of its wall-clock length, like every other slot.
* With ``fold=0`` and non-existent times skipped, the local-to-UTC mapping is strictly
  increasing, so slots that do not overlap in local time do not overlap in UTC. ``expand``
  still drops any slot that would end before it starts or overlap the previous one in UTC,
  so the result is sorted and free of overlaps by construction, whatever the zone data.
"""

from __future__ import annotations

import json
from bisect import bisect_right
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from itertools import islice, pairwise
from types import MappingProxyType
from typing import Any, cast
from uuid import UUID
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import ValidationError

from booking_contracts.catalogue import (
    RoomRules,
    RoomSnapshot,
    RoomType,
    SlotsGenerated,
    SlotSnapshot,
    SlotStatus,
)
from booking_contracts.money import Money

WEEKDAYS = frozenset(range(1, 8))
"""ISO weekdays: 1 is Monday, 7 is Sunday."""

MONDAY_TO_FRIDAY = frozenset(range(1, 6))
MAX_SLOT_MINUTES = 24 * 60
DEFAULT_MAX_DAYS = 366

Span = tuple[datetime, datetime]
"""A half-open span of time ``[start, end)``."""

_ZERO = timedelta(0)
_MIDNIGHT_UTC = time(0, tzinfo=UTC)
_DAY = timedelta(days=1)


class TimeslotError(Exception):
    """Base of every error of the timeslot domain."""


class InvalidSchedule(TimeslotError):
    """A schedule, working interval or blackout that cannot produce sensible slots."""


class InvalidRange(TimeslotError):
    """A date range to expand that is reversed or longer than allowed."""


class InvalidSlot(TimeslotError):
    """A custom slot that is naive, not in UTC, ends before it starts, or is too long.

    Also raised for a slot length of zero or less given to ``slot_price``.
    """


class SlotOverlap(TimeslotError):
    """A custom slot that overlaps another new slot or an existing one."""


class RoomNotFound(TimeslotError):
    """No room has the given id."""


class SlotNotFound(TimeslotError):
    """No slot has the given id."""


class RoomUnavailable(TimeslotError):
    """The room exists but cannot take this request now: inactive, or without a schedule."""


class InvalidRules(TimeslotError):
    """Booking rules that ``RoomRules`` refuses: an unknown rule or value, or rules that
    contradict each other once merged (a horizon not longer than the notice to book)."""


@dataclass(frozen=True, slots=True, order=True)
class WorkingInterval:
    """Opening hours within one local day, ``start`` inclusive, ``end`` exclusive.

    Both are naive local wall-clock times and ``start < end``: an interval never crosses
    midnight (no overnight intervals in v1; split them into two days' intervals instead).
    """

    start: time
    end: time

    def __post_init__(self) -> None:
        if self.start.tzinfo is not None or self.end.tzinfo is not None:
            raise InvalidSchedule(f"working interval {self} must use naive local times")
        if self.start >= self.end:
            raise InvalidSchedule(
                f"working interval {self} must start before it ends (no overnight intervals)"
            )

    def __str__(self) -> str:
        return f"{self.start.isoformat()}-{self.end.isoformat()}"


@dataclass(frozen=True, slots=True)
class Blackout:
    """A period, in absolute time, during which no slot is generated (half-open)."""

    start: datetime
    end: datetime

    def __post_init__(self) -> None:
        if _is_naive(self.start) or _is_naive(self.end):
            raise InvalidSchedule(f"blackout {self.start}-{self.end} must be timezone-aware")
        if self.start >= self.end:
            raise InvalidSchedule(f"blackout {self.start}-{self.end} must start before it ends")


@dataclass(frozen=True, slots=True, kw_only=True)
class Schedule:
    """When a room is open, in the local time of ``time_zone``, and how it is cut into slots.

    ``working_hours`` maps ISO weekdays (1 = Monday ... 7 = Sunday) to non-overlapping
    intervals; a weekday is open only if it is also in ``open_weekdays``. Consecutive slots of
    one interval are ``buffer_minutes`` apart; each interval starts afresh. ``excluded_dates``
    are local dates without slots (holidays); no slot overlapping a blackout is generated.
    """

    time_zone: str
    working_hours: Mapping[int, tuple[WorkingInterval, ...]] = field(hash=False)
    open_weekdays: frozenset[int] = MONDAY_TO_FRIDAY
    slot_minutes: int
    buffer_minutes: int = 0
    excluded_dates: frozenset[date] = frozenset()
    blackouts: tuple[Blackout, ...] = ()
    _zone: ZoneInfo = field(init=False, repr=False, compare=False)
    _blackout_starts: tuple[datetime, ...] = field(init=False, repr=False, compare=False)
    _blackout_ends: tuple[datetime, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_zone", _zone(self.time_zone))
        object.__setattr__(self, "working_hours", _normalised_hours(self.working_hours))
        _check_weekdays(self.open_weekdays, "open weekday")
        if not 0 < self.slot_minutes <= MAX_SLOT_MINUTES:
            raise InvalidSchedule(
                f"slot length must be 1 to {MAX_SLOT_MINUTES} minutes, not {self.slot_minutes}"
            )
        if self.buffer_minutes < 0:
            raise InvalidSchedule(f"buffer must not be negative, not {self.buffer_minutes}")
        starts, ends = _merged_utc(self.blackouts)
        object.__setattr__(self, "_blackout_starts", starts)
        object.__setattr__(self, "_blackout_ends", ends)

    @classmethod
    def weekly(
        cls,
        time_zone: str,
        intervals: Sequence[WorkingInterval],
        *,
        weekdays: frozenset[int] = MONDAY_TO_FRIDAY,
        slot_minutes: int = 30,
        buffer_minutes: int = 0,
        excluded_dates: frozenset[date] = frozenset(),
        blackouts: tuple[Blackout, ...] = (),
    ) -> Schedule:
        """The same ``intervals`` on every one of ``weekdays``, which are the open days."""
        return cls(
            time_zone=time_zone,
            working_hours={weekday: tuple(intervals) for weekday in weekdays},
            open_weekdays=weekdays,
            slot_minutes=slot_minutes,
            buffer_minutes=buffer_minutes,
            excluded_dates=excluded_dates,
            blackouts=blackouts,
        )

    @property
    def zone(self) -> ZoneInfo:
        return self._zone

    def overlaps_blackout(self, start: datetime, end: datetime) -> bool:
        """Whether the half-open span ``[start, end)`` overlaps any blackout."""
        index = bisect_right(self._blackout_ends, start)
        return index < len(self._blackout_starts) and self._blackout_starts[index] < end


@dataclass(frozen=True, slots=True)
class SlotSpec:
    """A slot to create: UTC-aware ``starts_at`` before ``ends_at``, and its price.

    A plain dataclass (no validation) because ``expand`` makes hundreds of thousands of them
    and guarantees the invariants itself.
    """

    starts_at: datetime
    ends_at: datetime
    price: Money


def slot_price(hourly_rate: Money, minutes: int) -> Money:
    """``hourly_rate`` x ``minutes`` / 60, rounded half-up to the currency's minor unit."""
    if minutes <= 0:
        raise InvalidSlot(f"a slot must last at least one minute, not {minutes}")
    return Money.of(hourly_rate.amount * minutes / Decimal(60), hourly_rate.currency)


def expand(
    schedule: Schedule,
    *,
    date_from: date,
    date_to: date,
    hourly_rate: Money,
    price_override: Money | None = None,
    max_days: int = DEFAULT_MAX_DAYS,
) -> list[SlotSpec]:
    """The slots of ``schedule`` on the local dates ``date_from`` to ``date_to`` inclusive.

    Every open, non-excluded date yields, for each working interval, slots of
    ``slot_minutes`` starting at the interval start and every ``slot_minutes +
    buffer_minutes`` after it, as long as the whole slot fits in the interval (local
    wall-clock time). Each slot is priced ``slot_price(hourly_rate, slot_minutes)`` unless
    ``price_override`` is given. Slots overlapping a blackout are dropped; see the module
    docstring for the days clocks change. The result is ordered by start and never overlaps.

    Raises ``InvalidRange`` if ``date_to`` is before ``date_from`` or the range has more than
    ``max_days`` days.
    """
    days = _day_count(date_from, date_to, max_days)
    price = (
        price_override
        if price_override is not None
        else slot_price(hourly_rate, schedule.slot_minutes)
    )
    spans_by_weekday = _spans_by_weekday(schedule)
    excluded = schedule.excluded_dates
    has_blackouts = bool(schedule.blackouts)
    # A ZoneInfo gives an offset for every datetime, never None.
    utcoffset = cast(_UtcOffset, schedule.zone.utcoffset)
    slots: list[SlotSpec] = []
    previous_end = datetime.min.replace(tzinfo=UTC)
    day = date_from
    for _ in range(days):
        spans = spans_by_weekday[day.isoweekday()]
        if spans and day not in excluded:
            midnight_utc = datetime.combine(day, _MIDNIGHT_UTC)
            for start_boundary, end_boundary in spans:
                start = _utc(day, midnight_utc, start_boundary, utcoffset)
                end = _utc(day, midnight_utc, end_boundary, utcoffset)
                if start is None or end is None or end <= start or start < previous_end:
                    continue
                if has_blackouts and schedule.overlaps_blackout(start, end):
                    continue
                slots.append(SlotSpec(start, end, price))
                previous_end = end
        day += _DAY
    return slots


def validate_custom_slots(
    existing: Sequence[Span],
    new: Sequence[Span],
    *,
    max_minutes: int = MAX_SLOT_MINUTES,
) -> None:
    """Check slots added by hand before they are stored.

    Each new slot must be timezone-aware in UTC, end after it starts and last at most
    ``max_minutes`` (``InvalidSlot``); it must not overlap another new slot nor any
    ``existing`` one (``SlotOverlap``). Spans are half-open: back-to-back slots are fine.
    Existing slots are trusted and not checked against each other.
    """
    longest = timedelta(minutes=max_minutes)
    for start, end in new:
        _check_custom_slot(start, end, longest)
    _check_no_overlap(existing, new)


# --- helpers ---------------------------------------------------------------------------


def _is_naive(moment: datetime) -> bool:
    return moment.utcoffset() is None


def _zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError) as exc:
        raise InvalidSchedule(f"unknown time zone {name!r}") from exc


def _check_weekdays(weekdays: Iterable[int], what: str) -> None:
    unknown = sorted(set(weekdays) - WEEKDAYS)
    if unknown:
        raise InvalidSchedule(f"{what} {unknown[0]} is not an ISO weekday (1-7)")


def _normalised_hours(
    hours: Mapping[int, Sequence[WorkingInterval]],
) -> Mapping[int, tuple[WorkingInterval, ...]]:
    _check_weekdays(hours, "working-hours weekday")
    normalised = {weekday: tuple(sorted(intervals)) for weekday, intervals in hours.items()}
    for weekday, intervals in normalised.items():
        for before, after in pairwise(intervals):
            if after.start < before.end:
                raise InvalidSchedule(
                    f"working intervals {before} and {after} of weekday {weekday} overlap"
                )
    return MappingProxyType(normalised)


def _merged_utc(blackouts: Sequence[Blackout]) -> tuple[tuple[datetime, ...], tuple[datetime, ...]]:
    """Blackouts as sorted, disjoint UTC spans, split into starts and ends for bisection."""
    merged: list[list[datetime]] = []
    for blackout in sorted(blackouts, key=lambda b: b.start):
        start, end = blackout.start.astimezone(UTC), blackout.end.astimezone(UTC)
        if merged and start <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, end])
    return tuple(span[0] for span in merged), tuple(span[1] for span in merged)


_Boundary = tuple[time, time, timedelta]
"""A local time of day as ``fold=0`` and ``fold=1`` variants, and its distance from 00:00."""

_UtcOffset = Callable[[datetime], timedelta]
_WeekPlan = tuple[tuple[tuple[_Boundary, _Boundary], ...], ...]


def _spans_by_weekday(schedule: Schedule) -> _WeekPlan:
    """Per ISO weekday (index 1-7), the local start and end of each slot of the day.

    Closed weekdays (and index 0) have no spans. Computed once per ``expand`` so that the
    loop over the days does no more than look the spans up.
    """
    step = timedelta(minutes=schedule.slot_minutes + schedule.buffer_minutes)
    length = timedelta(minutes=schedule.slot_minutes)
    spans: list[tuple[tuple[_Boundary, _Boundary], ...]] = [()] * 8
    for weekday in schedule.open_weekdays:
        spans[weekday] = tuple(
            (_boundary(start), _boundary(start + length))
            for interval in schedule.working_hours.get(weekday, ())
            for start in _slot_starts(interval, length, step)
        )
    return tuple(spans)


def _slot_starts(interval: WorkingInterval, length: timedelta, step: timedelta) -> list[timedelta]:
    """Starts (after midnight) of the slots that fit wholly in ``interval``, in local time."""
    start = _after_midnight(interval.start)
    last_start = _after_midnight(interval.end) - length
    starts = []
    while start <= last_start:
        starts.append(start)
        start += step
    return starts


def _after_midnight(moment: time) -> timedelta:
    return timedelta(
        hours=moment.hour,
        minutes=moment.minute,
        seconds=moment.second,
        microseconds=moment.microsecond,
    )


def _boundary(after_midnight: timedelta) -> _Boundary:
    local = (datetime.combine(date.min, _MIDNIGHT_UTC) + after_midnight).time()  # naive
    return local, local.replace(fold=1), after_midnight


def _utc(
    day: date,
    midnight_utc: datetime,
    boundary: _Boundary,
    utcoffset: _UtcOffset,
) -> datetime | None:
    """The UTC instant of a local time of ``day`` (first occurrence), None if it does not exist.

    A local time lies in a gap exactly when its offset after the transition (``fold=1``) is
    larger than the one before it (``fold=0``), see PEP 495. Written for speed: no
    ``datetime.replace`` and no ``astimezone`` per slot.
    """
    local, local_fold1, after_midnight = boundary
    offset = utcoffset(datetime.combine(day, local))
    if utcoffset(datetime.combine(day, local_fold1)) > offset:
        return None
    return midnight_utc + (after_midnight - offset)


def _day_count(date_from: date, date_to: date, max_days: int) -> int:
    if date_to < date_from:
        raise InvalidRange(f"date range {date_from}..{date_to} ends before it starts")
    days = (date_to - date_from).days + 1
    if days > max_days:
        raise InvalidRange(
            f"date range {date_from}..{date_to} has {days} days, more than {max_days}"
        )
    return days


def _check_custom_slot(start: datetime, end: datetime, longest: timedelta) -> None:
    slot = f"{start.isoformat()}-{end.isoformat()}"
    if start.utcoffset() != _ZERO or end.utcoffset() != _ZERO:
        raise InvalidSlot(f"slot {slot} must be timezone-aware in UTC")
    if end <= start:
        raise InvalidSlot(f"slot {slot} must end after it starts")
    if end - start > longest:
        raise InvalidSlot(f"slot {slot} is longer than {longest.total_seconds() / 60:g} minutes")


def _check_no_overlap(existing: Sequence[Span], new: Sequence[Span]) -> None:
    """One sweep by start: a slot overlaps an earlier-starting one iff it starts before its end.

    The latest-ending slot seen so far is tracked apart for existing and for new slots, so
    that overlaps among existing slots (not ours to judge) never hide a conflict.
    """
    tagged = sorted(
        [(start, end, False) for start, end in existing]
        + [(start, end, True) for start, end in new]
    )
    latest_existing: Span | None = None
    latest_new: Span | None = None
    for start, end, is_new in tagged:
        slot = (start, end)
        if not is_new:
            if latest_new is not None and start < latest_new[1]:
                raise SlotOverlap(f"slot {_span(latest_new)} overlaps existing slot {_span(slot)}")
            latest_existing = _later_ending(latest_existing, slot)
            continue
        if latest_existing is not None and start < latest_existing[1]:
            raise SlotOverlap(f"slot {_span(slot)} overlaps existing slot {_span(latest_existing)}")
        if latest_new is not None and start < latest_new[1]:
            raise SlotOverlap(f"slot {_span(slot)} overlaps new slot {_span(latest_new)}")
        latest_new = _later_ending(latest_new, slot)


def _later_ending(latest: Span | None, slot: Span) -> Span:
    return slot if latest is None or slot[1] > latest[1] else latest


def _span(slot: Span) -> str:
    return f"{slot[0].isoformat()}-{slot[1].isoformat()}"


# --- booking rules: the platform's defaults, a room type's, a room's own -----------------

RULE_NAMES = tuple(RoomRules.model_fields)
"""The booking rules one layer may set, by their ``RoomRules`` names."""


@dataclass(frozen=True, slots=True)
class PartialRules:
    """Some of the booking rules, each by its ``RoomRules`` name in its JSON form: what one
    layer sets (the platform's defaults, a room type's, a room's own). A rule a layer leaves
    out is inherited from the layer below; ``null`` is a value (``"horizon_minutes": null`` is
    "no horizon" and replaces a default horizon)."""

    values: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def checked(cls, values: Mapping[str, Any], *, whose: str) -> PartialRules:
        """``values`` checked rule by rule (known names, valid values, no contradiction among
        themselves) and put in their JSON form; ``InvalidRules`` says whose they are and what
        is wrong."""
        unknown = sorted(set(values) - set(RULE_NAMES))
        if unknown:
            raise InvalidRules(
                f"{whose}: {unknown[0][:64]!r} is not a booking rule; "
                f"the rules are {', '.join(RULE_NAMES)}"
            )
        try:
            rules = RoomRules.model_validate(dict(values))
        except ValidationError as exc:
            raise InvalidRules(f"{whose}: {_reasons(exc)}") from exc
        return cls(rules.model_dump(mode="json", include=set(values)))


@dataclass(frozen=True, slots=True)
class RuleDefaults:
    """The layers under a room's own rules: the platform's defaults and, over them, each room
    type's (the service's settings). Every room type's merge must make valid rules, so a room
    without rules of its own always has rules in force."""

    platform: PartialRules = field(default_factory=PartialRules)
    by_room_type: Mapping[RoomType, PartialRules] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for room_type in RoomType:
            rules_in_force(self, room_type, PartialRules())

    def of(self, room_type: RoomType) -> PartialRules:
        return self.by_room_type.get(room_type, PartialRules())


def rules_in_force(defaults: RuleDefaults, room_type: RoomType, own: PartialRules) -> RoomRules:
    """A room's booking rules: its own over its room type's defaults over the platform's,
    rule by rule, then checked as a whole. ``InvalidRules`` names the contradiction and the
    layer each rule in force came from."""
    layers = (
        ("the platform's defaults", defaults.platform),
        (f"the defaults of {room_type} rooms", defaults.of(room_type)),
        ("the room's own rules", own),
    )
    merged: dict[str, Any] = {}
    origin: dict[str, str] = {}
    for whose, layer in layers:
        merged.update(layer.values)
        origin.update(dict.fromkeys(layer.values, whose))
    try:
        return RoomRules.model_validate(merged)
    except ValidationError as exc:
        reasons = _reasons(exc)
        named = [name for name in origin if name in reasons] or list(origin)
        sources = "; ".join(
            f"{', '.join(f'{name}={json.dumps(merged[name])}' for name in names)} from {whose}"
            for whose, names in _grouped({name: origin[name] for name in named}).items()
        )
        raise InvalidRules(f"the rules in force would be invalid: {reasons} ({sources})") from exc


def _grouped(origin: Mapping[str, str]) -> dict[str, list[str]]:
    """Rule names by the layer they come from, in the order of ``origin``."""
    names: dict[str, list[str]] = {}
    for name, whose in origin.items():
        names.setdefault(whose, []).append(name)
    return names


def _reasons(error: ValidationError) -> str:
    reasons = []
    for issue in error.errors(include_url=False):
        message = issue["msg"].removeprefix("Value error, ")
        where = ".".join(str(part) for part in issue["loc"])
        reasons.append(f"{where}: {message}" if where else message)
    return "; ".join(reasons)


# --- the aggregates, as the store hands them over ---------------------------------------


@dataclass(frozen=True, slots=True)
class Room:
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
    version: int
    """1 when created, one more after every update (counted by the database: migration 0004)."""
    own_rules: PartialRules = field(default_factory=PartialRules)
    """The booking rules the room sets itself; the others it inherits."""
    published_rules: RoomRules | None = None
    """The rules in force last published for the room (``RoomRulesSet``); None before."""

    def snapshot(self) -> RoomSnapshot:
        return RoomSnapshot(
            room_id=self.id,
            name=self.name,
            room_type=self.room_type,
            capacity=self.capacity,
            time_zone=self.time_zone,
            hourly_rate=self.hourly_rate,
            active=self.active,
        )


@dataclass(frozen=True, slots=True)
class StoredSchedule:
    """A schedule as stored: per open weekday its intervals, plus the cutting rules."""

    room_id: UUID
    open_weekdays: tuple[int, ...]
    weekday_hours: dict[int, list[tuple[time, time]]]
    slot_minutes: int
    buffer_minutes: int
    max_bookings: int
    excluded_dates: tuple[date, ...]
    blackouts: tuple[tuple[datetime, datetime], ...]
    updated_at: datetime

    def to_domain(self, time_zone: str) -> Schedule:
        return Schedule(
            time_zone=time_zone,
            working_hours={
                weekday: tuple(WorkingInterval(start, end) for start, end in intervals)
                for weekday, intervals in self.weekday_hours.items()
            },
            open_weekdays=frozenset(self.open_weekdays),
            slot_minutes=self.slot_minutes,
            buffer_minutes=self.buffer_minutes,
            excluded_dates=frozenset(self.excluded_dates),
            blackouts=tuple(Blackout(start, end) for start, end in self.blackouts),
        )


@dataclass(frozen=True, slots=True)
class Slot:
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

    def snapshot(self) -> SlotSnapshot:
        return SlotSnapshot(
            slot_id=self.id,
            room_id=self.room_id,
            starts_at=self.starts_at,
            ends_at=self.ends_at,
            price=self.price,
            max_bookings=self.max_bookings,
            status=self.status,
            revision=self.revision,
        )


# --- commands the store writes as they are -------------------------------------------


@dataclass(frozen=True, slots=True)
class NewRoom:
    """A room to create."""

    name: str
    capacity: int
    room_type: RoomType
    hourly_rate: Money
    time_zone: str
    description: str = ""
    attributes: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class RoomChanges:
    """The fields of a room to change; a field left ``None`` is kept."""

    name: str | None = None
    description: str | None = None
    capacity: int | None = None
    room_type: RoomType | None = None
    hourly_rate: Money | None = None
    time_zone: str | None = None
    attributes: Mapping[str, Any] | None = None
    active: bool | None = None

    def given(self) -> dict[str, Any]:
        """The fields to change, by name."""
        values = {name: getattr(self, name) for name in self.__dataclass_fields__}
        return {name: value for name, value in values.items() if value is not None}


# --- what the store is given and gives back -----------------------------------------


@dataclass(frozen=True, slots=True)
class Inserted:
    created: int
    first_starts_at: datetime | None
    last_starts_at: datetime | None
    events: int


def without_overlaps(
    existing: Sequence[tuple[datetime, datetime]],
    starts: Sequence[datetime],
    ends: Sequence[datetime],
) -> tuple[list[datetime], list[datetime]]:
    """The new spans (sorted, non-overlapping) that overlap none of ``existing``.

    One merge of the two sorted lists: linear in their lengths.
    """
    taken = sorted(existing)
    kept_starts: list[datetime] = []
    kept_ends: list[datetime] = []
    index = 0
    for start, end in zip(starts, ends, strict=True):
        while index < len(taken) and taken[index][1] <= start:
            index += 1
        if index < len(taken) and taken[index][0] < end:
            continue
        kept_starts.append(start)
        kept_ends.append(end)
    return kept_starts, kept_ends


@dataclass(frozen=True, slots=True)
class Hold:
    """The holder holds a place in the slot (unless it is known already), as one change of
    a batch (``Store.apply_hold_changes``)."""

    holder_id: UUID
    slot_id: UUID

    @property
    def slots(self) -> tuple[UUID, ...]:
        return (self.slot_id,)


@dataclass(frozen=True, slots=True)
class Release:
    """The holder gives its place back (remembered even before its hold is seen), as one
    change of a batch."""

    holder_id: UUID
    slot_id: UUID

    @property
    def slots(self) -> tuple[UUID, ...]:
        return (self.slot_id,)


@dataclass(frozen=True, slots=True)
class Move:
    """The holder's place moves from the old slot to the new one (if it still holds one),
    as one change of a batch."""

    holder_id: UUID
    old_slot_id: UUID
    new_slot_id: UUID

    @property
    def slots(self) -> tuple[UUID, ...]:
        return (self.old_slot_id, self.new_slot_id)


HoldChange = Hold | Release | Move


@dataclass(frozen=True, slots=True)
class Available:
    slot_id: UUID
    room_id: UUID
    room_name: str
    time_zone: str
    starts_at: datetime
    ends_at: datetime
    price: Money
    places_left: int
    free_minutes: int | None


def slots_generated(
    room_id: UUID, snapshots: Sequence[SlotSnapshot], per_event: int
) -> list[SlotsGenerated]:
    """The ``SlotsGenerated`` events announcing ``snapshots`` (in their order), at most
    ``per_event`` slots each."""
    iterator = iter(snapshots)
    return [
        SlotsGenerated.model_construct(room_id=room_id, slots=list(chunk))
        for chunk in iter(lambda: tuple(islice(iterator, per_event)), ())
    ]


def local_days(time_zone: str, first: date, last: date) -> tuple[datetime, datetime]:
    """The UTC instants of local midnight starting ``first`` and ending ``last`` in
    ``time_zone`` (PostgreSQL's ``day::timestamp AT TIME ZONE zone``)."""
    zone = ZoneInfo(time_zone)
    start = datetime.combine(first, time(0), tzinfo=zone)
    end = datetime.combine(last + timedelta(days=1), time(0), tzinfo=zone)
    return start.astimezone(UTC), end.astimezone(UTC)
