"""A room's rules as the timeslot service publishes them: what another reader may rely on."""

from __future__ import annotations

import uuid
from decimal import Decimal

import pytest
from pydantic import ValidationError

from booking_contracts.catalogue import (
    BookingQuota,
    QuotaPeriod,
    QuotaScope,
    RefundTierRule,
    RoomRules,
    RoomRulesSet,
)
from booking_contracts.envelope import EventCatalogue


def test_no_rules_refuse_nothing_and_leave_holds_and_refunds_to_the_booking_service() -> None:
    rules = RoomRules()
    assert (rules.book_notice_minutes, rules.horizon_minutes, rules.quotas) == (0, None, [])
    assert (rules.max_reschedules, rules.hold_minutes, rules.refund_tiers) == (None, None, None)
    assert rules.offer_minutes == 15


def test_rules_travel_as_json_and_come_back_equal() -> None:
    event = RoomRulesSet(
        room_id=uuid.uuid4(),
        room_version=3,
        rules=RoomRules(
            book_notice_minutes=120,
            horizon_minutes=60 * 24 * 60,
            quotas=[BookingQuota(most=3, per=QuotaPeriod.WEEK, scope=QuotaScope.ROOM_TYPE)],
            refund_tiers=[RefundTierRule(notice_minutes=24 * 60, percent=Decimal("87.5"))],
        ),
    )
    wire = event.model_dump(mode="json")
    assert wire["rules"]["refund_tiers"] == [{"notice_minutes": 1440, "percent": "87.5"}]
    assert RoomRulesSet.model_validate(wire) == event
    assert EventCatalogue.get(RoomRulesSet.type_name()) is RoomRulesSet


@pytest.mark.parametrize(
    ("rules", "why"),
    [
        ({"book_notice_minutes": 120, "horizon_minutes": 120}, "horizon_minutes must be longer"),
        (
            {"quotas": [{"most": 1, "per": "day"}, {"most": 2, "per": "day", "scope": "room"}]},
            "one quota per window and scope",
        ),
        (
            {"refund_tiers": [{"notice_minutes": 60, "percent": "50"}] * 2},
            "one refund tier per notice",
        ),
        ({"refund_tiers": [{"notice_minutes": 60, "percent": "100.5"}]}, "less than or equal"),
        ({"book_notice_minutes": -1}, "greater than or equal"),
        ({"quotas": [{"most": 0, "per": "week"}]}, "greater than or equal"),
        ({"quotas": [{"most": 1, "per": "year"}]}, "'day', 'week' or 'month'"),
    ],
)
def test_contradictory_or_impossible_rules_are_refused(rules: dict[str, object], why: str) -> None:
    with pytest.raises(ValidationError, match=why):
        RoomRules.model_validate(rules)


def test_a_quota_per_room_type_and_one_per_room_in_the_same_window_may_both_hold() -> None:
    rules = RoomRules.model_validate(
        {"quotas": [{"most": 3, "per": "week", "scope": "room_type"}, {"most": 1, "per": "week"}]}
    )
    assert [q.scope for q in rules.quotas] == [QuotaScope.ROOM_TYPE, QuotaScope.ROOM]
