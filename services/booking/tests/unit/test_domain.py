"""The booking state machine, the refund policy at its exact thresholds, price arithmetic."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from booking.domain import (
    TRANSITIONS,
    Action,
    BookingStatus,
    InvalidBooking,
    InvalidTransition,
    PriceNotCovered,
    RefundPolicy,
    RefundStatus,
    RefundTier,
    percent_of,
    price_difference,
    reprice,
    settle_refund,
    transition,
)
from booking_contracts.money import Money

START = datetime(2030, 3, 4, 9, 0, tzinfo=UTC)
PRICE = Money.of("40.00", "EUR")
POLICY = RefundPolicy()


@pytest.mark.parametrize(
    ("status", "action", "expected"),
    [
        (BookingStatus.PENDING, Action.CONFIRM, BookingStatus.CONFIRMED),
        (BookingStatus.PENDING, Action.FAIL, BookingStatus.CANCELLED),
        (BookingStatus.PENDING, Action.EXPIRE, BookingStatus.EXPIRED),
        (BookingStatus.PENDING, Action.CANCEL, BookingStatus.CANCELLED),
        (BookingStatus.CONFIRMED, Action.CANCEL, BookingStatus.CANCELLED),
    ],
)
def test_allowed_untimed_transitions(
    status: BookingStatus, action: Action, expected: BookingStatus
) -> None:
    assert transition(status, action) is expected


def test_every_other_transition_is_refused_naming_the_current_status() -> None:
    refused = [
        (status, action)
        for action in Action
        for status in BookingStatus
        if status not in TRANSITIONS[action]
    ]
    assert len(refused) == 6 * 7 - 8
    for status, action in refused:
        with pytest.raises(InvalidTransition, match=f"that is {status.value}") as info:
            transition(status, action, starts_at=START, now=START)
        assert info.value.status is status
        assert info.value.action is action


def test_a_refused_transition_says_when_it_would_be_allowed() -> None:
    with pytest.raises(
        InvalidTransition,
        match=r"cannot cancel a booking that is expired"
        r" \(only when confirmed, pending\)",
    ):
        transition(BookingStatus.EXPIRED, Action.CANCEL)


def test_rescheduling_is_allowed_until_the_slot_starts() -> None:
    second_before = START - timedelta(seconds=1)

    assert (
        transition(BookingStatus.CONFIRMED, Action.RESCHEDULE, starts_at=START, now=second_before)
        is BookingStatus.CONFIRMED
    )
    with pytest.raises(InvalidTransition, match="already started"):
        transition(BookingStatus.CONFIRMED, Action.RESCHEDULE, starts_at=START, now=START)


@pytest.mark.parametrize(
    ("action", "expected"),
    [(Action.COMPLETE, BookingStatus.COMPLETED), (Action.NO_SHOW, BookingStatus.NO_SHOW)],
)
def test_complete_and_no_show_need_the_slot_to_have_started(
    action: Action, expected: BookingStatus
) -> None:
    with pytest.raises(InvalidTransition, match="not started yet"):
        transition(BookingStatus.CONFIRMED, action, starts_at=START, now=START - timedelta(1))
    assert transition(BookingStatus.CONFIRMED, action, starts_at=START, now=START) is expected


def test_a_timed_transition_without_its_times_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="needs starts_at and now"):
        transition(BookingStatus.CONFIRMED, Action.COMPLETE)


@pytest.mark.parametrize(
    ("left", "percent", "amount"),
    [
        (timedelta(days=3), 100, "40.00"),
        (timedelta(hours=24), 100, "40.00"),
        (timedelta(hours=24) - timedelta(microseconds=1), 50, "20.00"),
        (timedelta(hours=6), 50, "20.00"),
        (timedelta(hours=6) - timedelta(microseconds=1), 0, "0.00"),
        (timedelta(0), 0, "0.00"),
        (-timedelta(hours=1), 0, "0.00"),
    ],
)
def test_the_refund_follows_the_time_left_at_the_exact_thresholds(
    left: timedelta, percent: int, amount: str
) -> None:
    quote = POLICY.quote(price=PRICE, paid=True, starts_at=START, now=START - left, by_admin=False)

    assert quote.percent == percent
    assert quote.amount == Money.of(amount, "EUR")


def test_the_refund_reason_says_how_much_notice_was_given() -> None:
    early = POLICY.quote(
        price=PRICE, paid=True, starts_at=START, now=START - timedelta(hours=30), by_admin=False
    )
    late = POLICY.quote(
        price=PRICE, paid=True, starts_at=START, now=START - timedelta(hours=2.5), by_admin=False
    )
    after = POLICY.quote(
        price=PRICE, paid=True, starts_at=START, now=START + timedelta(hours=1), by_admin=False
    )

    assert early.reason == "cancelled 30 h before the start (at least 24 h)"
    assert late.reason == "cancelled 2.5 h before the start (less than 6 h)"
    assert after.reason == "cancelled after the start"


def test_an_unpaid_booking_refunds_nothing_and_an_admin_cancellation_everything() -> None:
    unpaid = POLICY.quote(
        price=PRICE, paid=False, starts_at=START, now=START - timedelta(days=9), by_admin=True
    )
    by_admin = POLICY.quote(
        price=PRICE, paid=True, starts_at=START, now=START + timedelta(hours=1), by_admin=True
    )

    assert unpaid.amount == Money.of(0, "EUR")
    assert unpaid.reason == "nothing was paid"
    assert by_admin.amount == PRICE
    assert by_admin.percent == 100


def test_the_policy_is_data() -> None:
    policy = RefundPolicy(
        tiers=[
            RefundTier(timedelta(hours=2), Decimal(25)),
            RefundTier(timedelta(hours=48), Decimal(90)),
        ],
        admin_percent=Decimal(80),
    )

    def percent(left: timedelta) -> Decimal:
        return policy.quote(
            price=PRICE, paid=True, starts_at=START, now=START - left, by_admin=False
        ).percent

    assert percent(timedelta(hours=50)) == 90
    assert percent(timedelta(hours=10)) == 25
    assert percent(timedelta(hours=1)) == 0
    assert policy.quote(
        price=PRICE, paid=True, starts_at=START, now=START, by_admin=True
    ).amount == Money.of("32.00", "EUR")


def test_a_policy_without_tiers_refunds_nothing_to_users() -> None:
    quote = RefundPolicy(tiers=()).quote(
        price=PRICE, paid=True, starts_at=START, now=START - timedelta(days=30), by_admin=False
    )

    assert quote.amount == Money.of(0, "EUR")


@pytest.mark.parametrize(
    ("tier", "reason"),
    [
        (lambda: RefundTier(-timedelta(hours=1), Decimal(50)), "notice"),
        (lambda: RefundTier(timedelta(hours=1), Decimal(101)), "percent"),
        (lambda: RefundPolicy(admin_percent=Decimal(-1)), "admin percent"),
    ],
)
def test_an_impossible_policy_is_refused(tier: object, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        tier()  # type: ignore[operator]


@pytest.mark.parametrize(
    ("price", "percent", "expected"),
    [
        (Money.of("0.05", "EUR"), Decimal(50), "0.03"),  # 0.025 rounds half up
        (Money.of("33.33", "EUR"), Decimal(50), "16.67"),  # 16.665
        (Money.of("999", "JPY"), Decimal(50), "500"),  # no minor unit
        (Money.of("1.005", "BHD"), Decimal(50), "0.503"),  # three decimals
    ],
)
def test_refunds_are_rounded_half_up_to_the_currency_minor_unit(
    price: Money, percent: Decimal, expected: str
) -> None:
    assert percent_of(price, percent) == Money.of(expected, price.currency)


def test_the_price_difference_of_a_reschedule_is_new_minus_old() -> None:
    assert price_difference(PRICE, Money.of("55.50", "EUR")) == Money.of("15.50", "EUR")
    assert price_difference(PRICE, Money.of("30.00", "EUR")) == Money.of("-10.00", "EUR")
    with pytest.raises(InvalidBooking, match="EUR to USD"):
        price_difference(PRICE, Money.of("40.00", "USD"))


@pytest.mark.parametrize(
    ("moved_to", "percent"),
    [
        (START + timedelta(days=2), 0),  # later: still 2 h before the paid start
        (START - timedelta(hours=1), 0),  # a little earlier: still the paid start's notice
    ],
)
def test_the_refund_counts_the_notice_to_the_start_that_was_paid_for(
    moved_to: datetime, percent: int
) -> None:
    quote = POLICY.quote(
        price=PRICE,
        paid=True,
        starts_at=moved_to,
        paid_start=START,
        now=START - timedelta(hours=2),
        by_admin=False,
    )

    assert quote.percent == percent
    assert quote.reason == (
        "cancelled 2 h before the start it was paid for (2030-03-04 09:00 UTC) (less than 6 h)"
    )


def test_moving_earlier_keeps_the_paid_starts_notice_until_the_held_slot_starts() -> None:
    paid_start, moved_to = START, START - timedelta(hours=45)

    def quote(now: datetime) -> Decimal:
        return POLICY.quote(
            price=PRICE,
            paid=True,
            starts_at=moved_to,
            paid_start=paid_start,
            now=now,
            by_admin=False,
        ).percent

    assert quote(moved_to - timedelta(hours=3)) == 100
    assert quote(moved_to) == 0  # the place was used or forfeited
    assert quote(paid_start - timedelta(hours=30)) == 0


def test_a_move_refunds_the_difference_to_a_cheaper_slot_and_refuses_a_pricier_one() -> None:
    assert reprice(PRICE, Money.of("25.50", "EUR")) == Money.of("14.50", "EUR")
    assert reprice(PRICE, PRICE) == Money.of(0, "EUR")
    pricier = r"paid 40\.00 EUR and the new slot costs 40\.01 EUR"
    with pytest.raises(PriceNotCovered, match=pricier):
        reprice(PRICE, Money.of("40.01", "EUR"))
    with pytest.raises(PriceNotCovered, match=r"10\.00 USD"):
        reprice(PRICE, Money.of("10.00", "USD"))


@pytest.mark.parametrize(
    ("status", "outcome", "expected"),
    [
        (RefundStatus.REQUESTED, RefundStatus.SUCCEEDED, RefundStatus.SUCCEEDED),
        (RefundStatus.REQUESTED, RefundStatus.FAILED, RefundStatus.FAILED),
        (RefundStatus.FAILED, RefundStatus.SUCCEEDED, RefundStatus.SUCCEEDED),
        (RefundStatus.FAILED, RefundStatus.FAILED, None),
        (RefundStatus.SUCCEEDED, RefundStatus.SUCCEEDED, None),
        (RefundStatus.SUCCEEDED, RefundStatus.FAILED, None),
    ],
)
def test_a_refund_settles_once_and_a_failed_one_may_still_succeed(
    status: RefundStatus, outcome: RefundStatus, expected: RefundStatus | None
) -> None:
    assert settle_refund(status, outcome) is expected


def test_requested_is_no_refund_outcome() -> None:
    with pytest.raises(ValueError, match="succeeded or failed"):
        settle_refund(RefundStatus.REQUESTED, RefundStatus.REQUESTED)
