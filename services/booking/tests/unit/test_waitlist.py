"""The waitlist as data: who a freed place goes to, in what order, who is passed over, how an
entry may change, and when joining is refused."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from uuid import uuid4

import pytest

from booking.domain import (
    LIVE_WAITLIST,
    WAITLIST_TRANSITIONS,
    Waiter,
    WaitlistRefused,
    WaitlistStatus,
    change_waitlist,
    check_joining,
    next_offer,
    offer_expires_at,
)

NOW = datetime(2027, 3, 1, 9, tzinfo=UTC)


def _line(*users: str) -> list[Waiter]:
    return [Waiter(uuid4(), user, seq) for seq, user in enumerate(users, start=1)]


def test_a_freed_place_goes_to_the_first_in_line() -> None:
    line = _line("ann", "bob", "cat")

    chosen = next_offer(list(reversed(line)), busy=set())

    assert chosen.offer_to == line[0]
    assert chosen.skipped == ()


def test_waiters_who_got_a_place_at_that_time_another_way_are_passed_over() -> None:
    line = _line("ann", "bob", "cat")

    chosen = next_offer(line, busy={"ann", "cat"})

    assert chosen.offer_to == line[1]
    assert chosen.skipped == (line[0],)  # cat keeps her place behind bob


def test_with_nobody_left_to_offer_to_the_place_goes_back_to_sale() -> None:
    line = _line("ann")

    assert next_offer([], busy=set()) == next_offer([], busy={"x"})
    assert next_offer(line, busy={"ann"}).offer_to is None
    assert next_offer(line, busy={"ann"}).skipped == (line[0],)


def test_an_offer_lasts_its_time_but_never_past_the_start() -> None:
    assert offer_expires_at(NOW, timedelta(minutes=15), NOW + timedelta(hours=1)) == NOW + (
        timedelta(minutes=15)
    )
    assert offer_expires_at(NOW, timedelta(minutes=15), NOW + timedelta(minutes=5)) == NOW + (
        timedelta(minutes=5)
    )


@pytest.mark.parametrize(
    ("status", "to"),
    [
        (WaitlistStatus.WAITING, WaitlistStatus.OFFERED),
        (WaitlistStatus.WAITING, WaitlistStatus.LEFT),
        (WaitlistStatus.WAITING, WaitlistStatus.SKIPPED),
        (WaitlistStatus.WAITING, WaitlistStatus.EXPIRED),
        (WaitlistStatus.OFFERED, WaitlistStatus.BOOKED),
        (WaitlistStatus.OFFERED, WaitlistStatus.LEFT),
        (WaitlistStatus.OFFERED, WaitlistStatus.LAPSED),
        (WaitlistStatus.OFFERED, WaitlistStatus.EXPIRED),
    ],
)
def test_an_entry_changes_only_forward(status: WaitlistStatus, to: WaitlistStatus) -> None:
    assert change_waitlist(status, to) is to


def test_a_closed_entry_never_changes_and_an_offer_is_not_made_twice() -> None:
    final = set(WaitlistStatus) - set(WAITLIST_TRANSITIONS)
    assert final == {
        WaitlistStatus.BOOKED,
        WaitlistStatus.LEFT,
        WaitlistStatus.LAPSED,
        WaitlistStatus.SKIPPED,
        WaitlistStatus.EXPIRED,
    }
    assert set(LIVE_WAITLIST) == set(WAITLIST_TRANSITIONS)
    for status in final:
        with pytest.raises(WaitlistRefused, match=f"that is {status} cannot become waiting"):
            change_waitlist(status, WaitlistStatus.WAITING)
    with pytest.raises(WaitlistRefused):
        change_waitlist(WaitlistStatus.OFFERED, WaitlistStatus.OFFERED)
    with pytest.raises(WaitlistRefused):
        change_waitlist(WaitlistStatus.WAITING, WaitlistStatus.BOOKED)  # only with an offer


@pytest.mark.parametrize(
    ("starts_in", "places_left", "in_line", "why"),
    [
        (timedelta(0), 0, 0, "the slot has started: its waitlist is closed"),
        (timedelta(hours=1), 2, 0, "the slot has 2 places left: book it instead of waiting"),
        (timedelta(hours=1), 1, 0, "the slot has 1 place left: book it instead of waiting"),
        (timedelta(hours=1), 0, 10, "you wait for 10 slots, the most allowed; leave a line first"),
    ],
)
def test_joining_is_refused_with_the_reason(
    starts_in: timedelta, places_left: int, in_line: int, why: str
) -> None:
    with pytest.raises(WaitlistRefused) as refused:
        check_joining(
            starts_at=NOW + starts_in, now=NOW, places_left=places_left, in_line=in_line, most=10
        )

    assert str(refused.value) == why


def test_a_full_slot_that_has_not_started_may_be_queued_for() -> None:
    check_joining(starts_at=NOW + timedelta(minutes=1), now=NOW, places_left=0, in_line=9, most=10)
