"""The timeslot domain: schedules, their expansion into slots, prices and custom slots."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta, timezone
from itertools import pairwise
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from booking_contracts.money import Money
from timeslots.domain import (
    Blackout,
    InvalidRange,
    InvalidSchedule,
    InvalidSlot,
    Schedule,
    SlotOverlap,
    SlotSpec,
    TimeslotError,
    WorkingInterval,
    expand,
    slot_price,
    validate_custom_slots,
)

EVERY_DAY = frozenset(range(1, 8))
RATE = Money.of("25.00", "EUR")
HALF_HOUR_PRICE = Money.of("12.50", "EUR")


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


def hours(start: str, end: str) -> WorkingInterval:
    return WorkingInterval(time.fromisoformat(start), time.fromisoformat(end))


def nine_to_five(time_zone: str = "Europe/Berlin", **options: Any) -> Schedule:
    return Schedule.weekly(time_zone, [hours("09:00", "17:00")], **options)


def slots_on(schedule: Schedule, day: date, **options: Any) -> list[SlotSpec]:
    return expand(schedule, date_from=day, date_to=day, hourly_rate=RATE, **options)


def local_starts(slots: list[SlotSpec], time_zone: str) -> list[str]:
    zone = ZoneInfo(time_zone)
    return [slot.starts_at.astimezone(zone).strftime("%H:%M") for slot in slots]


def spans(slots: list[SlotSpec]) -> list[tuple[datetime, datetime]]:
    return [(slot.starts_at, slot.ends_at) for slot in slots]


# --- errors ----------------------------------------------------------------------------


@pytest.mark.parametrize("error", [InvalidSchedule, InvalidRange, InvalidSlot, SlotOverlap])
def test_every_domain_error_is_a_timeslot_error(error: type[Exception]) -> None:
    assert issubclass(error, TimeslotError)


# --- working intervals and schedules ---------------------------------------------------


@pytest.mark.parametrize(
    ("start", "end"), [("09:00", "09:00"), ("17:00", "09:00"), ("22:00", "02:00")]
)
def test_a_working_interval_must_start_before_it_ends_and_not_run_overnight(
    start: str, end: str
) -> None:
    with pytest.raises(InvalidSchedule, match="must start before it ends"):
        hours(start, end)


def test_a_working_interval_uses_naive_local_times() -> None:
    with pytest.raises(InvalidSchedule, match="naive local times"):
        WorkingInterval(time(9, tzinfo=UTC), time(17))


@pytest.mark.parametrize(
    "time_zone", ["Mars/Olympus_Mons", "europe/berlin", "", "../etc", "Europe"]
)
def test_an_unknown_time_zone_is_refused(time_zone: str) -> None:
    with pytest.raises(InvalidSchedule, match="unknown time zone"):
        nine_to_five(time_zone)


def test_the_weekly_schedule_opens_the_same_hours_monday_to_friday_by_default() -> None:
    schedule = Schedule.weekly("Europe/Berlin", [hours("13:00", "17:00"), hours("09:00", "12:00")])

    assert schedule.open_weekdays == frozenset({1, 2, 3, 4, 5})
    assert schedule.working_hours == {
        weekday: (hours("09:00", "12:00"), hours("13:00", "17:00")) for weekday in range(1, 6)
    }
    assert schedule.zone == ZoneInfo("Europe/Berlin")


def test_schedules_compare_and_hash_by_value() -> None:
    assert nine_to_five() == nine_to_five()
    assert hash(nine_to_five()) == hash(nine_to_five())
    assert nine_to_five() != nine_to_five(slot_minutes=60)


def test_intervals_of_one_day_must_not_overlap() -> None:
    with pytest.raises(InvalidSchedule, match=r"09:00:00-12:00:00 and 11:00:00-13:00:00 .* 3"):
        Schedule(
            time_zone="UTC",
            working_hours={3: (hours("11:00", "13:00"), hours("09:00", "12:00"))},
            slot_minutes=30,
        )


def test_intervals_may_touch() -> None:
    schedule = Schedule.weekly("UTC", [hours("09:00", "12:00"), hours("12:00", "13:00")])

    assert len(slots_on(schedule, date(2026, 5, 4))) == 8


@pytest.mark.parametrize("weekday", [0, 8])
def test_working_hours_are_keyed_by_iso_weekday(weekday: int) -> None:
    with pytest.raises(InvalidSchedule, match=f"weekday {weekday} is not an ISO weekday"):
        Schedule(
            time_zone="UTC", working_hours={weekday: (hours("09:00", "17:00"),)}, slot_minutes=30
        )


def test_open_weekdays_are_iso_weekdays() -> None:
    with pytest.raises(InvalidSchedule, match="open weekday 0 is not an ISO weekday"):
        Schedule(
            time_zone="UTC",
            working_hours={1: (hours("09:00", "17:00"),)},
            open_weekdays=frozenset({0, 1}),
            slot_minutes=30,
        )


@pytest.mark.parametrize("slot_minutes", [0, -30, 24 * 60 + 1])
def test_a_slot_lasts_between_one_minute_and_one_day(slot_minutes: int) -> None:
    with pytest.raises(InvalidSchedule, match="slot length"):
        nine_to_five(slot_minutes=slot_minutes)


def test_a_whole_day_slot_length_is_accepted_though_no_interval_can_hold_it() -> None:
    schedule = Schedule.weekly("UTC", [hours("00:00", "23:59")], slot_minutes=24 * 60)

    assert slots_on(schedule, date(2026, 5, 4)) == []


def test_the_buffer_between_slots_is_not_negative() -> None:
    with pytest.raises(InvalidSchedule, match="buffer"):
        nine_to_five(buffer_minutes=-1)


def test_a_blackout_is_timezone_aware() -> None:
    with pytest.raises(InvalidSchedule, match="timezone-aware"):
        Blackout(datetime(2026, 5, 4, 9), utc(2026, 5, 4, 10))


def test_a_blackout_starts_before_it_ends() -> None:
    with pytest.raises(InvalidSchedule, match="start before it ends"):
        Blackout(utc(2026, 5, 4, 10), utc(2026, 5, 4, 10))


# --- expansion -------------------------------------------------------------------------


def test_nine_to_five_is_sixteen_half_hour_slots_at_the_local_times() -> None:
    slots = slots_on(nine_to_five(), date(2026, 5, 4))

    assert len(slots) == 16
    assert slots[0] == SlotSpec(utc(2026, 5, 4, 7), utc(2026, 5, 4, 7, 30), HALF_HOUR_PRICE)
    assert slots[-1] == SlotSpec(utc(2026, 5, 4, 14, 30), utc(2026, 5, 4, 15), HALF_HOUR_PRICE)


def test_slots_are_utc_aware_and_follow_each_other() -> None:
    slots = slots_on(nine_to_five("America/New_York"), date(2026, 5, 4))

    assert all(slot.starts_at.tzinfo is UTC and slot.ends_at.tzinfo is UTC for slot in slots)
    assert all(a.ends_at == b.starts_at for a, b in pairwise(slots))


def test_a_week_of_a_monday_to_friday_schedule_has_five_days_of_slots() -> None:
    slots = expand(
        nine_to_five(), date_from=date(2026, 5, 4), date_to=date(2026, 5, 10), hourly_rate=RATE
    )

    assert len(slots) == 5 * 16
    assert {slot.starts_at.date() for slot in slots} == {date(2026, 5, d) for d in range(4, 9)}


def test_a_weekday_with_hours_but_not_open_is_closed() -> None:
    schedule = Schedule(
        time_zone="UTC",
        working_hours={1: (hours("09:00", "10:00"),), 2: (hours("09:00", "10:00"),)},
        open_weekdays=frozenset({2, 6}),
        slot_minutes=30,
    )

    slots = expand(
        schedule, date_from=date(2026, 5, 4), date_to=date(2026, 5, 10), hourly_rate=RATE
    )

    assert spans(slots) == [
        (utc(2026, 5, 5, 9), utc(2026, 5, 5, 9, 30)),
        (utc(2026, 5, 5, 9, 30), utc(2026, 5, 5, 10)),
    ]


def test_several_intervals_a_day_each_get_their_own_slots() -> None:
    schedule = Schedule.weekly("Europe/Berlin", [hours("13:00", "17:00"), hours("09:00", "12:00")])

    slots = slots_on(schedule, date(2026, 5, 4))

    assert len(slots) == 14
    assert local_starts(slots, "Europe/Berlin")[5:7] == ["11:30", "13:00"]


def test_a_buffer_separates_consecutive_slots_and_only_whole_slots_fit() -> None:
    schedule = nine_to_five(slot_minutes=60, buffer_minutes=15)

    slots = slots_on(schedule, date(2026, 5, 4))

    assert local_starts(slots, "Europe/Berlin") == [
        "09:00",
        "10:15",
        "11:30",
        "12:45",
        "14:00",
        "15:15",
    ]
    assert slots[-1].ends_at == utc(2026, 5, 4, 14, 15)  # 16:15 in Berlin


def test_the_buffer_restarts_at_every_interval() -> None:
    schedule = Schedule.weekly(
        "UTC",
        [hours("09:00", "10:30"), hours("10:30", "12:00")],
        slot_minutes=40,
        buffer_minutes=10,
    )

    assert local_starts(slots_on(schedule, date(2026, 5, 4)), "UTC") == [
        "09:00",
        "09:50",
        "10:30",
        "11:20",
    ]


def test_an_interval_not_a_multiple_of_the_slot_length_leaves_its_remainder_unused() -> None:
    schedule = Schedule.weekly("UTC", [hours("09:00", "10:45")], slot_minutes=30)

    assert local_starts(slots_on(schedule, date(2026, 5, 4)), "UTC") == ["09:00", "09:30", "10:00"]


def test_an_interval_shorter_than_a_slot_yields_nothing() -> None:
    schedule = Schedule.weekly("UTC", [hours("09:00", "09:20")], slot_minutes=30)

    assert slots_on(schedule, date(2026, 5, 4)) == []


def test_an_excluded_date_yields_no_slots() -> None:
    schedule = nine_to_five(excluded_dates=frozenset({date(2026, 5, 5)}))

    slots = expand(schedule, date_from=date(2026, 5, 4), date_to=date(2026, 5, 6), hourly_rate=RATE)

    assert len(slots) == 32
    assert date(2026, 5, 5) not in {slot.starts_at.date() for slot in slots}


def test_excluded_dates_are_local_dates() -> None:
    # 00:00-01:00 on 5 May in Auckland is still 4 May in UTC.
    schedule = Schedule.weekly(
        "Pacific/Auckland", [hours("00:00", "01:00")], excluded_dates=frozenset({date(2026, 5, 5)})
    )

    assert slots_on(schedule, date(2026, 5, 5)) == []
    assert len(slots_on(schedule, date(2026, 5, 4))) == 2


def test_a_slot_overlapping_a_blackout_is_dropped() -> None:
    blackout = Blackout(utc(2026, 5, 4, 8, 10), utc(2026, 5, 4, 9, 0))  # 10:10-11:00 in Berlin
    schedule = nine_to_five(blackouts=(blackout,))

    starts = local_starts(slots_on(schedule, date(2026, 5, 4)), "Europe/Berlin")

    assert "10:00" not in starts
    assert "10:30" not in starts
    assert "09:30" in starts  # ends where the blackout starts: no overlap
    assert "11:00" in starts  # starts where the blackout ends
    assert len(starts) == 14


def test_blackouts_may_be_given_in_any_time_zone() -> None:
    berlin_summer = timezone(timedelta(hours=2))
    blackout = Blackout(
        datetime(2026, 5, 4, 9, tzinfo=berlin_summer),
        datetime(2026, 5, 4, 12, tzinfo=berlin_summer),
    )

    slots = slots_on(nine_to_five(blackouts=(blackout,)), date(2026, 5, 4))

    assert local_starts(slots, "Europe/Berlin")[0] == "12:00"


def test_overlapping_blackouts_act_as_one() -> None:
    blackouts = (
        Blackout(utc(2026, 5, 4, 7), utc(2026, 5, 4, 9)),
        Blackout(utc(2026, 5, 4, 13), utc(2026, 5, 4, 14)),
        Blackout(utc(2026, 5, 4, 8), utc(2026, 5, 4, 10)),
        Blackout(utc(2026, 5, 4, 7, 30), utc(2026, 5, 4, 8, 30)),
    )
    schedule = nine_to_five(blackouts=blackouts)

    starts = local_starts(slots_on(schedule, date(2026, 5, 4)), "Europe/Berlin")

    assert starts == ["12:00", "12:30", "13:00", "13:30", "14:00", "14:30", "16:00", "16:30"]


def test_a_span_overlaps_a_blackout_only_if_they_share_time() -> None:
    schedule = nine_to_five(blackouts=(Blackout(utc(2026, 5, 4, 9), utc(2026, 5, 4, 10)),))

    assert schedule.overlaps_blackout(utc(2026, 5, 4, 9, 59), utc(2026, 5, 4, 11))
    assert not schedule.overlaps_blackout(utc(2026, 5, 4, 10), utc(2026, 5, 4, 11))
    assert not schedule.overlaps_blackout(utc(2026, 5, 4, 8), utc(2026, 5, 4, 9))
    assert not nine_to_five().overlaps_blackout(utc(2026, 5, 4, 8), utc(2026, 5, 4, 9))


def test_a_year_of_weekdays_less_holidays() -> None:
    holidays = frozenset(
        {date(2026, 1, 1), date(2026, 12, 25), date(2026, 12, 26)}
    )  # Thu, Fri, Sat
    schedule = nine_to_five(excluded_dates=holidays)

    slots = expand(
        schedule, date_from=date(2026, 1, 1), date_to=date(2026, 12, 31), hourly_rate=RATE
    )

    assert len(slots) == (261 - 2) * 16
    assert all(a.ends_at <= b.starts_at for a, b in pairwise(slots))


# --- date ranges -----------------------------------------------------------------------


def test_a_range_that_ends_before_it_starts_is_refused() -> None:
    with pytest.raises(InvalidRange, match="ends before it starts"):
        expand(
            nine_to_five(), date_from=date(2026, 5, 4), date_to=date(2026, 5, 3), hourly_rate=RATE
        )


def test_a_range_may_cover_a_leap_year_but_no_more_by_default() -> None:
    schedule = nine_to_five()

    expand(schedule, date_from=date(2028, 1, 1), date_to=date(2028, 12, 31), hourly_rate=RATE)
    with pytest.raises(InvalidRange, match="367 days, more than 366"):
        expand(schedule, date_from=date(2028, 1, 1), date_to=date(2029, 1, 1), hourly_rate=RATE)


def test_the_longest_range_can_be_chosen() -> None:
    with pytest.raises(InvalidRange, match="8 days, more than 7"):
        expand(
            nine_to_five(),
            date_from=date(2026, 5, 4),
            date_to=date(2026, 5, 11),
            hourly_rate=RATE,
            max_days=7,
        )


# --- days the clocks change ------------------------------------------------------------

# (zone, change day, UTC start of the first and end of the last 09:00-17:00 slot on the day
# before, and the same on the change day)
CLOCK_CHANGES = [
    ("Europe/Berlin", date(2026, 3, 29), (8, 16), (7, 15)),
    ("Europe/Berlin", date(2026, 10, 25), (7, 15), (8, 16)),
    ("America/New_York", date(2026, 3, 8), (14, 22), (13, 21)),
    ("America/New_York", date(2026, 11, 1), (13, 21), (14, 22)),
]


@pytest.mark.parametrize(("time_zone", "day", "day_before_utc", "change_day_utc"), CLOCK_CHANGES)
def test_nine_to_five_keeps_its_sixteen_slots_on_the_day_clocks_change(
    time_zone: str, day: date, day_before_utc: tuple[int, int], change_day_utc: tuple[int, int]
) -> None:
    schedule = nine_to_five(time_zone, weekdays=EVERY_DAY)
    before = day - timedelta(days=1)

    on_day_before = slots_on(schedule, before)
    on_change_day = slots_on(schedule, day)

    assert len(on_day_before) == len(on_change_day) == 16
    first_start, last_end = day_before_utc
    assert on_day_before[0].starts_at == utc(before.year, before.month, before.day, first_start)
    assert on_day_before[-1].ends_at == utc(before.year, before.month, before.day, last_end)
    first_start, last_end = change_day_utc
    assert on_change_day[0].starts_at == utc(day.year, day.month, day.day, first_start)
    assert on_change_day[-1].ends_at == utc(day.year, day.month, day.day, last_end)
    assert local_starts(on_change_day, time_zone) == local_starts(on_day_before, time_zone)
    assert all(slot.ends_at - slot.starts_at == timedelta(minutes=30) for slot in on_change_day)


def night_schedule(time_zone: str, slot_minutes: int = 30) -> Schedule:
    return Schedule.weekly(
        time_zone, [hours("00:00", "04:00")], weekdays=EVERY_DAY, slot_minutes=slot_minutes
    )


def test_slots_starting_or_ending_in_the_spring_forward_gap_are_skipped_in_berlin() -> None:
    # 02:00-03:00 does not exist on 2026-03-29: 01:59:59 CET is followed by 03:00:00 CEST.
    slots = slots_on(night_schedule("Europe/Berlin"), date(2026, 3, 29))

    assert spans(slots) == [
        (utc(2026, 3, 28, 23), utc(2026, 3, 28, 23, 30)),  # 00:00-00:30 CET
        (utc(2026, 3, 28, 23, 30), utc(2026, 3, 29, 0)),  # 00:30-01:00
        (utc(2026, 3, 29, 0), utc(2026, 3, 29, 0, 30)),  # 01:00-01:30
        # 01:30-02:00, 02:00-02:30 and 02:30-03:00 are skipped
        (utc(2026, 3, 29, 1), utc(2026, 3, 29, 1, 30)),  # 03:00-03:30 CEST
        (utc(2026, 3, 29, 1, 30), utc(2026, 3, 29, 2)),  # 03:30-04:00
    ]


def test_slots_starting_or_ending_in_the_spring_forward_gap_are_skipped_in_new_york() -> None:
    # 02:00-03:00 does not exist on 2026-03-08: 01:59:59 EST is followed by 03:00:00 EDT.
    slots = slots_on(night_schedule("America/New_York"), date(2026, 3, 8))

    assert local_starts(slots, "America/New_York") == ["00:00", "00:30", "01:00", "03:00", "03:30"]
    assert slots[2].starts_at == utc(2026, 3, 8, 6)  # 01:00 EST
    assert slots[3].starts_at == utc(2026, 3, 8, 7)  # 03:00 EDT


def test_a_slot_spanning_the_gap_keeps_its_wall_clock_span() -> None:
    slots = slots_on(night_schedule("Europe/Berlin", slot_minutes=120), date(2026, 3, 29))

    # 00:00-02:00 ends in the gap; 02:00-04:00 starts in it.
    assert slots == []
    schedule = Schedule.weekly(
        "Europe/Berlin", [hours("01:00", "03:00")], weekdays=EVERY_DAY, slot_minutes=120
    )
    slots = slots_on(schedule, date(2026, 3, 29))
    # 01:00 CET to 03:00 CEST: one hour of elapsed time.
    assert spans(slots) == [(utc(2026, 3, 29, 0), utc(2026, 3, 29, 1))]


def test_the_repeated_hour_is_taken_at_its_first_occurrence_in_berlin() -> None:
    # 02:00-03:00 happens twice on 2026-10-25: first in CEST (00:00Z-01:00Z), then in CET.
    slots = slots_on(night_schedule("Europe/Berlin"), date(2026, 10, 25))

    assert spans(slots) == [
        (utc(2026, 10, 24, 22), utc(2026, 10, 24, 22, 30)),  # 00:00-00:30 CEST
        (utc(2026, 10, 24, 22, 30), utc(2026, 10, 24, 23)),
        (utc(2026, 10, 24, 23), utc(2026, 10, 24, 23, 30)),
        (utc(2026, 10, 24, 23, 30), utc(2026, 10, 25, 0)),
        (utc(2026, 10, 25, 0), utc(2026, 10, 25, 0, 30)),  # 02:00-02:30, first occurrence
        (utc(2026, 10, 25, 0, 30), utc(2026, 10, 25, 2)),  # 02:30 CEST-03:00 CET: 90 minutes
        (utc(2026, 10, 25, 2), utc(2026, 10, 25, 2, 30)),  # 03:00-03:30 CET
        (utc(2026, 10, 25, 2, 30), utc(2026, 10, 25, 3)),
    ]
    assert {slot.price for slot in slots} == {HALF_HOUR_PRICE}


def test_the_repeated_hour_is_taken_at_its_first_occurrence_in_new_york() -> None:
    # 01:00-02:00 happens twice on 2026-11-01: first in EDT (05:00Z-06:00Z), then in EST.
    slots = slots_on(night_schedule("America/New_York"), date(2026, 11, 1))

    assert local_starts(slots, "America/New_York") == [
        "00:00", "00:30", "01:00", "01:30", "02:00", "02:30", "03:00", "03:30"
    ]  # fmt: skip
    assert spans(slots)[2:5] == [
        (utc(2026, 11, 1, 5), utc(2026, 11, 1, 5, 30)),  # 01:00-01:30 EDT
        (utc(2026, 11, 1, 5, 30), utc(2026, 11, 1, 7)),  # 01:30 EDT-02:00 EST
        (utc(2026, 11, 1, 7), utc(2026, 11, 1, 7, 30)),  # 02:00-02:30 EST
    ]


@pytest.mark.parametrize(
    ("time_zone", "day"),
    [(time_zone, day) for time_zone, day, _, _ in CLOCK_CHANGES],
)
def test_night_slots_never_overlap_on_the_days_clocks_change(time_zone: str, day: date) -> None:
    for slot_minutes in (15, 20, 30, 45, 60, 90):
        slots = slots_on(night_schedule(time_zone, slot_minutes), day)

        assert all(slot.starts_at < slot.ends_at for slot in slots)
        assert all(a.ends_at <= b.starts_at for a, b in pairwise(slots))


# --- prices ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("rate", "minutes", "price"),
    [
        (Money.of("25.00", "EUR"), 50, Money.of("20.83", "EUR")),
        (Money.of("33.33", "EUR"), 45, Money.of("25.00", "EUR")),  # 24.9975 rounds up
        (Money.of("25.00", "EUR"), 30, Money.of("12.50", "EUR")),
        (Money.of("0.03", "EUR"), 30, Money.of("0.02", "EUR")),  # 0.015 rounds half up
        (Money.of("1000", "JPY"), 25, Money.of("417", "JPY")),
        (Money.of("1.234", "KWD"), 30, Money.of("0.617", "KWD")),
        (Money.of("40.00", "USD"), 24 * 60, Money.of("960.00", "USD")),
    ],
)
def test_the_slot_price_is_the_hourly_rate_pro_rata_rounded_half_up(
    rate: Money, minutes: int, price: Money
) -> None:
    assert slot_price(rate, minutes) == price


def test_a_price_needs_a_positive_length() -> None:
    with pytest.raises(InvalidSlot, match="at least one minute"):
        slot_price(RATE, 0)


def test_every_generated_slot_carries_the_pro_rata_price() -> None:
    slots = slots_on(nine_to_five(slot_minutes=50), date(2026, 5, 4))

    assert {slot.price for slot in slots} == {Money.of("20.83", "EUR")}


def test_an_override_price_replaces_the_pro_rata_price() -> None:
    override = Money.of("9.99", "EUR")

    slots = slots_on(nine_to_five(), date(2026, 5, 4), price_override=override)

    assert {slot.price for slot in slots} == {override}


# --- custom slots ----------------------------------------------------------------------

EXISTING = [(utc(2026, 5, 4, 9), utc(2026, 5, 4, 10)), (utc(2026, 5, 4, 12), utc(2026, 5, 4, 13))]


def test_custom_slots_between_and_beside_existing_ones_are_accepted() -> None:
    validate_custom_slots(
        EXISTING,
        [
            (utc(2026, 5, 4, 11), utc(2026, 5, 4, 12)),
            (utc(2026, 5, 4, 10), utc(2026, 5, 4, 11)),
            (utc(2026, 5, 4, 13), utc(2026, 5, 5, 13)),
            (utc(2026, 5, 4, 8), utc(2026, 5, 4, 9)),
        ],
    )


def test_no_custom_slots_is_fine() -> None:
    validate_custom_slots(EXISTING, [])


@pytest.mark.parametrize(
    ("start", "end", "problem"),
    [
        (datetime(2026, 5, 4, 9), utc(2026, 5, 4, 10), "timezone-aware in UTC"),
        (utc(2026, 5, 4, 9), datetime(2026, 5, 4, 10), "timezone-aware in UTC"),
        (
            datetime(2026, 5, 4, 11, tzinfo=ZoneInfo("Europe/Berlin")),
            utc(2026, 5, 4, 10),
            "timezone-aware in UTC",
        ),
        (utc(2026, 5, 4, 10), utc(2026, 5, 4, 10), "must end after it starts"),
        (utc(2026, 5, 4, 10), utc(2026, 5, 4, 9), "must end after it starts"),
        (utc(2026, 5, 4, 10), utc(2026, 5, 5, 10, 1), "longer than 1440 minutes"),
    ],
)
def test_an_invalid_custom_slot_is_refused_by_name(
    start: datetime, end: datetime, problem: str
) -> None:
    with pytest.raises(InvalidSlot, match=problem) as error:
        validate_custom_slots([], [(utc(2026, 5, 1, 9), utc(2026, 5, 1, 10)), (start, end)])

    assert start.isoformat() in str(error.value)


def test_the_longest_custom_slot_can_be_chosen() -> None:
    validate_custom_slots([], [(utc(2026, 5, 4, 9), utc(2026, 5, 4, 11))], max_minutes=120)
    with pytest.raises(InvalidSlot, match="longer than 90 minutes"):
        validate_custom_slots([], [(utc(2026, 5, 4, 9), utc(2026, 5, 4, 11))], max_minutes=90)


@pytest.mark.parametrize(
    ("new", "message"),
    [
        (
            (utc(2026, 5, 4, 9, 30), utc(2026, 5, 4, 11)),
            "slot 2026-05-04T09:30:00+00:00-2026-05-04T11:00:00+00:00 overlaps existing slot "
            "2026-05-04T09:00:00+00:00-2026-05-04T10:00:00+00:00",
        ),
        (
            (utc(2026, 5, 4, 11), utc(2026, 5, 4, 12, 1)),
            "slot 2026-05-04T11:00:00+00:00-2026-05-04T12:01:00+00:00 overlaps existing slot "
            "2026-05-04T12:00:00+00:00-2026-05-04T13:00:00+00:00",
        ),
        (
            (utc(2026, 5, 4, 8), utc(2026, 5, 4, 14)),
            "slot 2026-05-04T08:00:00+00:00-2026-05-04T14:00:00+00:00 overlaps existing slot "
            "2026-05-04T09:00:00+00:00-2026-05-04T10:00:00+00:00",
        ),
        (
            (utc(2026, 5, 4, 9), utc(2026, 5, 4, 10)),
            "slot 2026-05-04T09:00:00+00:00-2026-05-04T10:00:00+00:00 overlaps existing slot "
            "2026-05-04T09:00:00+00:00-2026-05-04T10:00:00+00:00",
        ),
    ],
)
def test_a_custom_slot_overlapping_an_existing_one_is_refused_by_name(
    new: tuple[datetime, datetime], message: str
) -> None:
    with pytest.raises(SlotOverlap) as error:
        validate_custom_slots(EXISTING, [new])

    assert str(error.value) == message


def test_custom_slots_must_not_overlap_each_other() -> None:
    with pytest.raises(SlotOverlap, match=r"T14:30:00.* overlaps new slot .*T14:00:00"):
        validate_custom_slots(
            EXISTING,
            [
                (utc(2026, 5, 4, 14), utc(2026, 5, 4, 15)),
                (utc(2026, 5, 4, 14, 30), utc(2026, 5, 4, 14, 45)),
            ],
        )


def test_existing_slots_overlapping_each_other_neither_matter_nor_hide_a_conflict() -> None:
    existing = [
        (utc(2026, 5, 4, 9), utc(2026, 5, 4, 12)),
        (utc(2026, 5, 4, 10), utc(2026, 5, 4, 11)),
    ]

    validate_custom_slots(existing, [(utc(2026, 5, 4, 12), utc(2026, 5, 4, 13))])
    with pytest.raises(SlotOverlap, match=r"T11:30:00.* overlaps existing slot .*T09:00:00"):
        validate_custom_slots(existing, [(utc(2026, 5, 4, 11, 30), utc(2026, 5, 4, 13))])
