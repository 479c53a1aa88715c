"""The rules a business sets per room, as data: notice, horizon, reschedules, quota windows in
the room's calendar (DST included) and what each refusal says."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from uuid import UUID, uuid4

import pytest

from booking.domain import (
    BookingRules,
    Quota,
    RefundPolicy,
    RefundTier,
    Room,
    RuleBroken,
    Slot,
    Window,
    bookable,
    local_day,
    quota_refusal,
    quota_windows,
    rules_of,
    terms_of,
    window_around,
)
from booking_contracts.catalogue import QuotaScope, RoomRules
from booking_contracts.money import Money

NOW = datetime(2027, 3, 1, 9, 0, tzinfo=UTC)
HOUR = timedelta(hours=1)
CLINIC = BookingRules(
    book_notice=2 * HOUR,
    cancel_notice=24 * HOUR,
    reschedule_notice=12 * HOUR,
    horizon=timedelta(days=60),
    max_reschedules=2,
)


def test_the_defaults_refuse_nothing() -> None:
    rules = BookingRules()
    rules.check_booking(starts_at=NOW + timedelta(minutes=1), now=NOW)
    rules.check_booking(starts_at=NOW + timedelta(days=3650), now=NOW)
    rules.check_cancellation(starts_at=NOW + timedelta(seconds=1), now=NOW)
    rules.check_reschedule(starts_at=NOW + HOUR, to_starts_at=NOW + 2 * HOUR, moved=100, now=NOW)


def test_booking_needs_the_notice_and_exactly_the_notice_is_enough() -> None:
    CLINIC.check_booking(starts_at=NOW + 2 * HOUR, now=NOW)

    with pytest.raises(RuleBroken) as refused:
        CLINIC.check_booking(starts_at=NOW + timedelta(minutes=90), now=NOW)

    assert refused.value.rule == "book_notice"
    assert refused.value.limit == "2 h"
    assert str(refused.value) == (
        "bookings in this room need at least 2 h notice; the slot starts in 90 min"
    )


def test_booking_further_ahead_than_the_horizon_is_refused_and_names_the_last_day() -> None:
    CLINIC.check_booking(starts_at=NOW + timedelta(days=60), now=NOW)

    with pytest.raises(RuleBroken) as refused:
        CLINIC.check_booking(starts_at=NOW + timedelta(days=60, minutes=1), now=NOW)

    assert refused.value.rule == "horizon"
    assert refused.value.limit == "60 days"
    assert "at most 60 days ahead (until 2027-04-30 09:00 UTC)" in str(refused.value)


def test_a_user_cancels_only_with_the_notice() -> None:
    CLINIC.check_cancellation(starts_at=NOW + timedelta(days=1), now=NOW)

    with pytest.raises(RuleBroken, match=r"cancellations in this room need at least 1 day"):
        CLINIC.check_cancellation(starts_at=NOW + 23 * HOUR, now=NOW)
    with pytest.raises(RuleBroken, match=r"the slot starts now or has started"):
        CLINIC.check_cancellation(starts_at=NOW - HOUR, now=NOW)


def test_a_move_counts_its_notice_to_the_start_it_leaves_and_the_target_must_be_bookable() -> None:
    far = NOW + timedelta(days=10)
    CLINIC.check_reschedule(starts_at=NOW + 12 * HOUR, to_starts_at=far, moved=1, now=NOW)

    with pytest.raises(RuleBroken) as late:
        CLINIC.check_reschedule(starts_at=NOW + 11 * HOUR, to_starts_at=far, moved=0, now=NOW)
    with pytest.raises(RuleBroken) as too_soon:
        CLINIC.check_reschedule(
            starts_at=NOW + timedelta(days=2), to_starts_at=NOW + HOUR, moved=0, now=NOW
        )
    with pytest.raises(RuleBroken) as too_far:
        CLINIC.check_reschedule(
            starts_at=far, to_starts_at=NOW + timedelta(days=61), moved=0, now=NOW
        )

    assert (late.value.rule, late.value.limit) == ("reschedule_notice", "12 h")
    assert too_soon.value.rule == "book_notice"
    assert too_far.value.rule == "horizon"


def test_a_booking_is_moved_at_most_as_often_as_the_room_allows() -> None:
    with pytest.raises(RuleBroken) as refused:
        CLINIC.check_reschedule(
            starts_at=NOW + timedelta(days=2),
            to_starts_at=NOW + timedelta(days=3),
            moved=2,
            now=NOW,
        )
    assert refused.value.rule == "max_reschedules"
    assert str(refused.value) == (
        "a booking in this room may be moved 2 times; this one was moved 2 times"
    )
    once = BookingRules(max_reschedules=1)
    with pytest.raises(RuleBroken, match=r"moved 1 time; this one was moved 1 time$"):
        once.check_reschedule(starts_at=NOW + HOUR, to_starts_at=NOW + HOUR, moved=1, now=NOW)


@pytest.mark.parametrize(
    ("rules", "complaint"),
    [
        ({"book_notice": -HOUR}, "book_notice must not be negative"),
        ({"horizon": HOUR, "book_notice": 2 * HOUR}, "horizon must be longer"),
        ({"max_reschedules": -1}, "max_reschedules must not be negative"),
        ({"hold": timedelta(0)}, "a hold must last some time"),
    ],
)
def test_rules_that_cannot_hold_are_refused_when_made(
    rules: dict[str, object], complaint: str
) -> None:
    with pytest.raises(ValueError, match=complaint):
        BookingRules(**rules)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="at least 1 booking"):
        Quota(most=0, per=Window.DAY)


def hours(span: timedelta) -> float:
    return span.total_seconds() / 3600


def test_a_day_a_week_and_a_month_are_the_room_calendars_across_a_dst_change() -> None:
    # Berlin springs forward on Sunday 2027-03-28 (02:00 -> 03:00)
    slot = datetime(2027, 3, 28, 8, 0, tzinfo=UTC)  # 10:00 in Berlin

    day = window_around(slot, "Europe/Berlin", Window.DAY)
    week = window_around(slot, "Europe/Berlin", Window.WEEK)
    month = window_around(slot, "Europe/Berlin", Window.MONTH)

    assert (day.starts_at, day.ends_at) == (
        datetime(2027, 3, 27, 23, 0, tzinfo=UTC),
        datetime(2027, 3, 28, 22, 0, tzinfo=UTC),
    )
    assert hours(day.ends_at - day.starts_at) == 23
    assert week.starts_at == datetime(2027, 3, 21, 23, 0, tzinfo=UTC)  # Monday 22 March
    assert hours(week.ends_at - week.starts_at) == 7 * 24 - 1
    assert week.label == "in the week of 2027-03-22"
    assert month.starts_at == datetime(2027, 2, 28, 23, 0, tzinfo=UTC)
    assert month.ends_at == datetime(2027, 3, 31, 22, 0, tzinfo=UTC)
    assert month.label == "in March 2027"
    assert slot in day
    assert day.ends_at not in day


def test_the_autumn_day_is_25_hours_and_a_late_evening_slot_belongs_to_its_local_day() -> None:
    # New York falls back on Sunday 2027-11-07; 23:30 local on the 6th is 03:30 UTC on the 7th
    slot = datetime(2027, 11, 7, 3, 30, tzinfo=UTC)

    saturday = window_around(slot, "America/New_York", Window.DAY)
    sunday = window_around(saturday.ends_at, "America/New_York", Window.DAY)

    assert saturday.label == "on 2027-11-06"
    assert hours(sunday.ends_at - sunday.starts_at) == 25
    assert sunday.label == "on 2027-11-07"


def test_a_day_whose_midnight_the_clocks_skip_begins_when_they_jump() -> None:
    # Santiago springs forward at local midnight on 2027-09-05: 00:00 -04 -> 01:00 -03
    slot = datetime(2027, 9, 5, 15, 0, tzinfo=UTC)

    day = window_around(slot, "America/Santiago", Window.DAY)

    assert day.starts_at == datetime(2027, 9, 5, 4, 0, tzinfo=UTC)
    assert hours(day.ends_at - day.starts_at) == 23


def test_a_quota_refusal_names_the_room_or_its_type_the_limit_and_the_window() -> None:
    week = window_around(datetime(2027, 3, 10, 9, tzinfo=UTC), "Europe/Berlin", Window.WEEK)
    per_type = Quota(most=3, per=Window.WEEK, scope=QuotaScope.ROOM_TYPE)
    per_room = Quota(most=1, per=Window.DAY)
    day = window_around(datetime(2027, 3, 10, 9, tzinfo=UTC), "Europe/Berlin", Window.DAY)

    assert quota_refusal(per_type, used=2, span=week, room="studio") is None
    full = quota_refusal(per_type, used=3, span=week, room="studio")
    one = quota_refusal(per_room, used=1, span=day, room="Yoga 1")

    assert full is not None
    assert str(full) == (
        "rooms of type 'studio' allow 3 bookings per week; you have 3 in the week of 2027-03-08"
    )
    assert (full.rule, full.limit) == ("quota_per_week", "3 per week")
    assert one is not None
    assert str(one) == "room 'Yoga 1' allows 1 booking per day; you have 1 on 2027-03-10"


def test_the_rules_an_event_carries_read_as_the_checks_need_them() -> None:
    carried = RoomRules.model_validate(
        {
            "book_notice_minutes": 120,
            "cancel_notice_minutes": 1440,
            "reschedule_notice_minutes": 90,
            "horizon_minutes": 60 * 24 * 60,
            "quotas": [{"most": 3, "per": "week", "scope": "room_type"}],
            "max_reschedules": 2,
            "hold_minutes": 5,
            "refund_tiers": [{"notice_minutes": 2880, "percent": "100"}],
        }
    )

    rules = rules_of(carried)

    assert rules == BookingRules(
        book_notice=2 * HOUR,
        cancel_notice=24 * HOUR,
        reschedule_notice=timedelta(minutes=90),
        horizon=timedelta(days=60),
        quotas=(Quota(3, Window.WEEK, QuotaScope.ROOM_TYPE),),
        max_reschedules=2,
        hold=timedelta(minutes=5),
        refund_tiers=(RefundTier(48 * HOUR, Decimal(100)),),
    )
    assert rules_of(RoomRules()) == BookingRules()


def test_a_room_without_its_own_hold_or_tiers_keeps_the_services_and_staff_refunds_stay() -> None:
    service = RefundPolicy(admin_percent=Decimal(80))
    own = BookingRules(
        hold=timedelta(minutes=5), refund_tiers=(RefundTier(48 * HOUR, Decimal(100)),)
    )

    assert BookingRules().hold_or(timedelta(minutes=15)) == timedelta(minutes=15)
    assert own.hold_or(timedelta(minutes=15)) == timedelta(minutes=5)
    assert BookingRules().refunds_or(service) is service
    policy = own.refunds_or(service)
    price = Money.of("40.00", "EUR")
    quote = policy.quote(price=price, paid=True, starts_at=NOW + 30 * HOUR, now=NOW, by_admin=False)
    assert quote.percent == Decimal(0)  # less notice than the room's one tier
    by_staff = policy.quote(price=price, paid=True, starts_at=NOW + HOUR, now=NOW, by_admin=True)
    assert by_staff.amount == Money.of("32.00", "EUR")


def test_a_booking_counts_once_per_quota_under_its_room_or_type_and_window() -> None:
    room = Room(
        id=UUID("00000000-0000-0000-0000-000000000007"),
        name="Studio 7",
        time_zone="Europe/Berlin",
        active=True,
        room_type="treatment",
        rules=BookingRules(
            quotas=(
                Quota(3, Window.WEEK, QuotaScope.ROOM_TYPE),
                Quota(1, Window.DAY),
                Quota(2, Window.WEEK),
            )
        ),
    )
    starts = datetime(2027, 3, 10, 8, tzinfo=UTC)

    windows = quota_windows(room, starts)

    assert [(w.scope, w.where, w.quota.most) for w in windows] == [
        ("room:00000000-0000-0000-0000-000000000007:day", "Studio 7", 1),
        ("room:00000000-0000-0000-0000-000000000007:week", "Studio 7", 2),
        ("room_type:treatment:week", "treatment", 3),
    ]
    assert windows[1].span == window_around(starts, "Europe/Berlin", Window.WEEK)
    assert quota_windows(Room(room.id, "Plain", "UTC", True), starts) == []


def test_a_local_day_is_23_or_25_hours_when_the_clocks_change() -> None:
    spring = local_day(date(2027, 3, 28), "Europe/Berlin")
    autumn = local_day(date(2027, 10, 31), "Europe/Berlin")

    assert spring.ends_at - spring.starts_at == timedelta(hours=23)
    assert autumn.ends_at - autumn.starts_at == timedelta(hours=25)
    assert spring.starts_at == datetime(2027, 3, 27, 23, tzinfo=UTC)
    assert spring.label == "on 2027-03-28"


def _slot(at: datetime, *, places: int = 1, booked: int = 0, status: str = "open") -> Slot:
    return Slot(
        id=uuid4(),
        room_id=UUID(int=7),
        starts_at=at,
        ends_at=at + HOUR,
        price=Money.of("10.00", "EUR"),
        max_bookings=places,
        booked_count=booked,
        status=status,
    )


def test_bookable_keeps_what_the_user_could_book_under_the_rules() -> None:
    room = Room(
        UUID(int=7),
        "Studio",
        "UTC",
        True,
        rules=BookingRules(book_notice=2 * HOUR, quotas=(Quota(1, Window.DAY),)),
    )
    open_later = _slot(NOW + 3 * HOUR)
    too_soon = _slot(NOW + HOUR)
    full = _slot(NOW + 4 * HOUR, booked=1)
    blocked = _slot(NOW + 5 * HOUR, status="blocked")
    started = _slot(NOW - HOUR)
    held = _slot(NOW + 6 * HOUR, places=2)
    tomorrow = _slot(NOW + 24 * HOUR)
    slots = [open_later, too_soon, full, blocked, started, held, tomorrow]
    today = (f"room:{room.id}:day", window_around(NOW, "UTC", Window.DAY).starts_at)

    free = bookable(slots, room, now=NOW, held={held.id}, used={})
    at_quota = bookable(slots, room, now=NOW, held=set(), used={today: 1})

    assert free == [open_later, tomorrow]
    assert at_quota == [tomorrow]


def test_a_booking_keeps_the_terms_of_its_rooms_rules_it_was_made_under() -> None:
    own_tiers = BookingRules(
        cancel_notice=24 * HOUR,
        reschedule_notice=timedelta(minutes=90),
        max_reschedules=2,
        book_notice=2 * HOUR,
        refund_tiers=(RefundTier(48 * HOUR, Decimal("87.5")),),
    )

    kept = terms_of(own_tiers, RefundPolicy())
    platform = terms_of(BookingRules(), RefundPolicy())

    assert kept.model_dump(mode="json", exclude_defaults=True) == {
        "cancel_notice_minutes": 1440,
        "reschedule_notice_minutes": 90,
        "max_reschedules": 2,
        "refund_tiers": [{"notice_minutes": 2880, "percent": "87.5"}],
    }
    assert [(t.notice_minutes, t.percent) for t in platform.refund_tiers or ()] == [
        (1440, Decimal(100)),
        (360, Decimal(50)),
    ]
    assert rules_of(kept).refund_tiers == own_tiers.refund_tiers
