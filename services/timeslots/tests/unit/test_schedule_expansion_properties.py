"""Properties of ``expand`` over random schedules, time zones and dates around clock changes."""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, date, datetime, time, timedelta
from functools import cache
from itertools import pairwise
from zoneinfo import ZoneInfo

from hypothesis import given, settings
from hypothesis import strategies as st

from booking_contracts.money import Money
from timeslots.domain import Blackout, Schedule, SlotSpec, WorkingInterval, expand

ZONES = [
    "Europe/Berlin",
    "America/New_York",
    "Australia/Lord_Howe",  # clocks move by 30 minutes
    "Asia/Kolkata",  # +05:30, no clock changes
    "Pacific/Chatham",  # +12:45/+13:45, changes at 02:45 local
    "America/Santiago",  # changes at midnight: 00:00 does not exist on one day a year
    "UTC",
]
RATE = Money.of("60.00", "EUR")
MINUTES_A_DAY = 24 * 60


@cache
def clock_change_days(time_zone: str) -> tuple[date, ...]:
    """Days of 2025-2027 on which the UTC offset at noon differs from the day before."""
    zone = ZoneInfo(time_zone)
    days = [date(2025, 1, 1) + timedelta(days=n) for n in range(3 * 365)]
    offsets = [datetime.combine(day, time(12), tzinfo=zone).utcoffset() for day in days]
    return tuple(
        day
        for day, (before, after) in zip(days[1:], pairwise(offsets), strict=True)
        if before != after
    )


def local_minutes(moment: datetime | time) -> int:
    return moment.hour * 60 + moment.minute


@st.composite
def intervals(draw: st.DrawFn) -> tuple[WorkingInterval, ...]:
    """Up to three non-overlapping intervals of one day, or the whole day."""
    whole_day = [0, MINUTES_A_DAY - 1]
    bounds = draw(
        st.one_of(
            st.just(whole_day),
            st.lists(st.integers(0, MINUTES_A_DAY - 1), min_size=2, max_size=6, unique=True),
        )
    )
    bounds = sorted(bounds)[: len(bounds) // 2 * 2]
    return tuple(
        WorkingInterval(time(start // 60, start % 60), time(end // 60, end % 60))
        for start, end in zip(bounds[::2], bounds[1::2], strict=True)
    )


@st.composite
def schedules(draw: st.DrawFn) -> Schedule:
    return Schedule(
        time_zone=draw(st.sampled_from(ZONES)),
        working_hours=draw(st.dictionaries(st.integers(1, 7), intervals(), min_size=1)),
        open_weekdays=draw(st.frozensets(st.integers(1, 7), min_size=1)),
        slot_minutes=draw(st.integers(5, 240)),
        buffer_minutes=draw(st.sampled_from([0, 0, 5, 10, 15, 30, 60])),
    )


@st.composite
def date_ranges(draw: st.DrawFn, time_zone: str) -> tuple[date, date]:
    """Mostly ranges around a day the clocks change in ``time_zone``."""
    anchors = clock_change_days(time_zone)
    anchor = draw(
        st.sampled_from(anchors) if anchors else st.dates(date(2025, 1, 1), date(2027, 12, 31))
    )
    date_from = anchor - timedelta(days=draw(st.integers(0, 3)))
    return date_from, date_from + timedelta(days=draw(st.integers(0, 7)))


def planned_local_slots(schedule: Schedule, day: date) -> list[tuple[int, int]]:
    """The slots of ``day`` as (start, end) minutes after local midnight, worked out by hand."""
    if day.isoweekday() not in schedule.open_weekdays or day in schedule.excluded_dates:
        return []
    planned = []
    for interval in sorted(schedule.working_hours.get(day.isoweekday(), ())):
        start, end = local_minutes(interval.start), local_minutes(interval.end)
        while start + schedule.slot_minutes <= end:
            planned.append((start, start + schedule.slot_minutes))
            start += schedule.slot_minutes + schedule.buffer_minutes
    return planned


def steady_offset(zone: ZoneInfo, day: date) -> timedelta | None:
    """The day's UTC offset if it holds from two hours before to two hours after, else None."""
    offset = datetime.combine(day, time(12), tzinfo=zone).utcoffset()
    assert offset is not None
    first = datetime.combine(day, time(0), tzinfo=UTC) - offset - timedelta(hours=2)
    samples = (first + timedelta(minutes=15 * n) for n in range(28 * 4 + 1))
    return offset if all(s.astimezone(zone).utcoffset() == offset for s in samples) else None


def first_occurrence(local: datetime, zone: ZoneInfo) -> datetime:
    return local.replace(tzinfo=zone, fold=0).astimezone(UTC)


def by_local_date(slots: list[SlotSpec], zone: ZoneInfo) -> dict[date, list[SlotSpec]]:
    days: dict[date, list[SlotSpec]] = defaultdict(list)
    for slot in slots:
        days[slot.starts_at.astimezone(zone).date()].append(slot)
    return days


@settings(max_examples=200, deadline=None)
@given(data=st.data(), schedule=schedules())
def test_expanded_slots_are_ordered_disjoint_utc_and_inside_the_working_hours(
    data: st.DataObject, schedule: Schedule
) -> None:
    date_from, date_to = data.draw(date_ranges(schedule.time_zone))
    zone = schedule.zone

    slots = expand(schedule, date_from=date_from, date_to=date_to, hourly_rate=RATE)

    assert all(slot.starts_at.tzinfo is UTC and slot.ends_at.tzinfo is UTC for slot in slots)
    assert all(slot.starts_at < slot.ends_at for slot in slots)
    assert all(before.ends_at <= after.starts_at for before, after in pairwise(slots))
    for day, day_slots in by_local_date(slots, zone).items():
        assert date_from <= day <= date_to
        planned = planned_local_slots(schedule, day)
        for slot in day_slots:
            local_start, local_end = slot.starts_at.astimezone(zone), slot.ends_at.astimezone(zone)
            assert local_end.date() == day
            assert (local_minutes(local_start), local_minutes(local_end)) in planned
            # Both ends are the first occurrence of their wall-clock time.
            assert slot.starts_at == first_occurrence(local_start, zone)
            assert slot.ends_at == first_occurrence(local_end, zone)


@settings(max_examples=200, deadline=None)
@given(data=st.data(), schedule=schedules())
def test_on_days_without_a_clock_change_every_planned_slot_is_generated(
    data: st.DataObject, schedule: Schedule
) -> None:
    date_from, date_to = data.draw(date_ranges(schedule.time_zone))
    zone = schedule.zone

    generated = by_local_date(
        expand(schedule, date_from=date_from, date_to=date_to, hourly_rate=RATE), zone
    )

    day = date_from
    while day <= date_to:
        offset = steady_offset(zone, day)
        if offset is not None:
            midnight = datetime.combine(day, time(0), tzinfo=UTC) - offset
            expected = [
                (midnight + timedelta(minutes=start), midnight + timedelta(minutes=end))
                for start, end in planned_local_slots(schedule, day)
            ]
            actual = [(slot.starts_at, slot.ends_at) for slot in generated.get(day, [])]
            assert actual == expected
        day += timedelta(days=1)


@settings(max_examples=100, deadline=None)
@given(
    data=st.data(),
    schedule=schedules(),
    blackout_hours=st.lists(st.tuples(st.integers(0, 24 * 10), st.integers(1, 48)), max_size=4),
)
def test_blackouts_drop_exactly_the_slots_they_overlap(
    data: st.DataObject, schedule: Schedule, blackout_hours: list[tuple[int, int]]
) -> None:
    date_from, date_to = data.draw(date_ranges(schedule.time_zone))
    origin = datetime.combine(date_from, time(0), tzinfo=UTC) - timedelta(days=1)
    blackouts = tuple(
        Blackout(origin + timedelta(hours=start), origin + timedelta(hours=start + length))
        for start, length in blackout_hours
    )
    blacked_out = Schedule(
        time_zone=schedule.time_zone,
        working_hours=schedule.working_hours,
        open_weekdays=schedule.open_weekdays,
        slot_minutes=schedule.slot_minutes,
        buffer_minutes=schedule.buffer_minutes,
        blackouts=blackouts,
    )

    def expansion(of: Schedule) -> list[SlotSpec]:
        return expand(of, date_from=date_from, date_to=date_to, hourly_rate=RATE)

    assert expansion(blacked_out) == [
        slot
        for slot in expansion(schedule)
        if not any(b.start < slot.ends_at and slot.starts_at < b.end for b in blackouts)
    ]
