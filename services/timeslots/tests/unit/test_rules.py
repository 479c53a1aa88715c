"""A room's booking rules: its own over its type's defaults over the platform's, rule by rule;
the settings that hold the defaults and the request that sets a room's own. No I/O."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from pydantic import ValidationError

from booking_contracts.catalogue import (
    BookingQuota,
    QuotaPeriod,
    RefundTierRule,
    RoomRules,
    RoomType,
)
from timeslots.domain import (
    RULE_NAMES,
    InvalidRules,
    PartialRules,
    RuleDefaults,
    TimeslotError,
    rules_in_force,
)
from timeslots.schemas import QuotaIn, RefundTierIn, RoomRulesIn
from timeslots.settings import TimeslotsSettings

MEETING = RoomType.MEETING


def rules(values: dict[str, Any], whose: str = "a test") -> PartialRules:
    return PartialRules.checked(values, whose=whose)


def defaults(platform: dict[str, Any] | None = None, **by_type: dict[str, Any]) -> RuleDefaults:
    return RuleDefaults(
        platform=rules(platform or {}),
        by_room_type={RoomType(name): rules(values) for name, values in by_type.items()},
    )


# --- the merge -------------------------------------------------------------------------


def test_without_defaults_or_rules_of_its_own_a_room_refuses_nothing() -> None:
    assert rules_in_force(RuleDefaults(), MEETING, PartialRules()) == RoomRules()


def test_each_rule_comes_from_the_highest_layer_that_sets_it() -> None:
    layers = defaults(
        {"book_notice_minutes": 60, "cancel_notice_minutes": 1440, "offer_minutes": 30},
        meeting={"book_notice_minutes": 120, "max_reschedules": 2},
        treatment={"book_notice_minutes": 999},
    )
    own = rules({"cancel_notice_minutes": 60})

    merged = rules_in_force(layers, MEETING, own)

    assert merged == RoomRules(
        book_notice_minutes=120,  # the type's over the platform's
        cancel_notice_minutes=60,  # the room's own over the platform's
        offer_minutes=30,  # the platform's
        max_reschedules=2,  # the type's
    )


def test_a_type_without_defaults_of_its_own_inherits_the_platforms() -> None:
    layers = defaults({"hold_minutes": 20}, meeting={"hold_minutes": 5})

    assert rules_in_force(layers, RoomType.OFFICE, PartialRules()).hold_minutes == 20


def test_null_is_a_value_a_room_sets_no_horizon_over_its_types() -> None:
    layers = defaults(meeting={"horizon_minutes": 43_200, "max_reschedules": 1})
    own = rules({"horizon_minutes": None})

    merged = rules_in_force(layers, MEETING, own)

    assert merged.horizon_minutes is None
    assert merged.max_reschedules == 1


def test_a_list_rule_is_replaced_whole_not_merged_item_by_item() -> None:
    layers = defaults(
        meeting={
            "quotas": [{"most": 3, "per": "week"}],
            "refund_tiers": [{"notice_minutes": 1440, "percent": "100"}],
        }
    )
    own = rules({"quotas": [{"most": 1, "per": "day"}], "refund_tiers": []})

    merged = rules_in_force(layers, MEETING, own)

    assert merged.quotas == [BookingQuota(most=1, per=QuotaPeriod.DAY)]
    assert merged.refund_tiers == []


def test_rules_that_contradict_each_other_once_merged_say_which_and_where_from() -> None:
    layers = defaults({"book_notice_minutes": 120})

    with pytest.raises(InvalidRules) as refused:
        rules_in_force(layers, MEETING, rules({"horizon_minutes": 60}))

    assert str(refused.value) == (
        "the rules in force would be invalid: horizon_minutes must be longer than "
        "book_notice_minutes (book_notice_minutes=120 from the platform's defaults; "
        "horizon_minutes=60 from the room's own rules)"
    )
    assert isinstance(refused.value, TimeslotError)


def test_a_rule_of_the_room_can_lift_the_contradiction_a_default_would_make() -> None:
    layers = defaults({"book_notice_minutes": 120}, meeting={"horizon_minutes": 10_080})

    assert rules_in_force(layers, MEETING, rules({"book_notice_minutes": 0})).horizon_minutes


# --- one layer's rules ----------------------------------------------------------------


def test_rules_are_kept_in_their_json_form_with_what_the_contract_fills_in() -> None:
    checked = rules(
        {
            "quotas": [{"most": 2, "per": "week"}],
            "refund_tiers": [{"notice_minutes": 60, "percent": "50.5"}],
            "horizon_minutes": None,
        }
    )

    assert checked.values == {
        "quotas": [{"most": 2, "per": "week", "scope": "room"}],
        "refund_tiers": [{"notice_minutes": 60, "percent": "50.5"}],
        "horizon_minutes": None,
    }


@pytest.mark.parametrize(
    ("values", "reason"),
    [
        ({"horizon": 60}, "'horizon' is not a booking rule; the rules are book_notice_minutes"),
        ({"book_notice_minutes": -1}, "book_notice_minutes: Input should be greater than"),
        ({"hold_minutes": 0}, "hold_minutes: Input should be greater than or equal to 1"),
        ({"quotas": [{"most": 1, "per": "year"}]}, "quotas.0.per: Input should be 'day'"),
        (
            {"quotas": [{"most": 1, "per": "day"}, {"most": 2, "per": "day"}]},
            "at most one quota per window and scope",
        ),
        (
            {"refund_tiers": [{"notice_minutes": 60, "percent": 50}]},
            "refund_tiers.0.percent",
        ),
        (
            {"book_notice_minutes": 60, "horizon_minutes": 60},
            "horizon_minutes must be longer than book_notice_minutes",
        ),
    ],
)
def test_an_invalid_rule_is_refused_with_whose_it_is_and_why(
    values: dict[str, Any], reason: str
) -> None:
    with pytest.raises(InvalidRules) as refused:
        rules(values, whose="the rules of room 7")

    assert str(refused.value).startswith("the rules of room 7: ")
    assert reason in str(refused.value)


def test_defaults_whose_merge_contradicts_are_refused() -> None:
    with pytest.raises(InvalidRules, match="horizon_minutes=30 from the defaults of meeting"):
        defaults({"book_notice_minutes": 60}, meeting={"horizon_minutes": 30})


def test_the_rule_names_are_those_of_the_contract() -> None:
    assert set(RULE_NAMES) == set(RoomRules.model_fields)


# --- the settings ---------------------------------------------------------------------


def test_the_settings_set_no_rule_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TIMESLOTS_DEFAULT_RULES", raising=False)
    monkeypatch.delenv("TIMESLOTS_RULES_BY_ROOM_TYPE", raising=False)

    assert TimeslotsSettings().rule_defaults() == RuleDefaults()


def test_the_settings_read_the_defaults_as_json(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TIMESLOTS_DEFAULT_RULES", '{"cancel_notice_minutes": 1440}')
    monkeypatch.setenv(
        "TIMESLOTS_RULES_BY_ROOM_TYPE",
        '{"treatment": {"refund_tiers": [{"notice_minutes": 1440, "percent": "100"}]}}',
    )

    layers = TimeslotsSettings().rule_defaults()
    merged = rules_in_force(layers, RoomType.TREATMENT, PartialRules())

    assert merged.cancel_notice_minutes == 1440
    assert merged.refund_tiers == [RefundTierRule(notice_minutes=1440, percent=Decimal(100))]
    assert rules_in_force(layers, MEETING, PartialRules()).refund_tiers is None


@pytest.mark.parametrize(
    ("variable", "value", "reason"),
    [
        ("TIMESLOTS_DEFAULT_RULES", '{"notice": 5}', "'notice' is not a booking rule"),
        (
            "TIMESLOTS_RULES_BY_ROOM_TYPE",
            '{"meeting": {"offer_minutes": 0}}',
            "TIMESLOTS_RULES_BY_ROOM_TYPE meeting: offer_minutes: Input should be greater",
        ),
        ("TIMESLOTS_RULES_BY_ROOM_TYPE", '{"sauna": {}}', "Input should be 'office'"),
        (
            "TIMESLOTS_RULES_BY_ROOM_TYPE",
            '{"office": {"book_notice_minutes": 60, "horizon_minutes": 30}}',
            "horizon_minutes must be longer than book_notice_minutes",
        ),
    ],
)
def test_invalid_defaults_stop_the_service_from_starting_and_say_why(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, reason: str
) -> None:
    monkeypatch.setenv(variable, value)

    with pytest.raises(ValidationError) as refused:
        TimeslotsSettings()

    assert reason in str(refused.value)


def test_defaults_that_contradict_once_merged_stop_the_service_too(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("TIMESLOTS_DEFAULT_RULES", '{"book_notice_minutes": 120}')
    monkeypatch.setenv("TIMESLOTS_RULES_BY_ROOM_TYPE", '{"meeting": {"horizon_minutes": 60}}')

    with pytest.raises(ValidationError) as refused:
        TimeslotsSettings()

    assert "TIMESLOTS_DEFAULT_RULES or TIMESLOTS_RULES_BY_ROOM_TYPE refused" in str(refused.value)
    assert "book_notice_minutes=120 from the platform's defaults" in str(refused.value)


# --- the request ----------------------------------------------------------------------


def test_the_request_offers_every_rule_of_the_contract_and_no_other() -> None:
    assert set(RoomRulesIn.model_fields) == set(RoomRules.model_fields)
    assert set(QuotaIn.model_fields) == set(BookingQuota.model_fields)
    assert set(RefundTierIn.model_fields) == set(RefundTierRule.model_fields)


def test_the_command_holds_only_the_rules_given_nulls_included() -> None:
    body = RoomRulesIn.model_validate(
        {"book_notice_minutes": 30, "horizon_minutes": None, "quotas": [{"most": 1, "per": "day"}]}
    )

    assert body.command() == PartialRules(
        {
            "book_notice_minutes": 30,
            "horizon_minutes": None,
            "quotas": [{"most": 1, "per": "day", "scope": "room"}],
        }
    )
    assert RoomRulesIn.model_validate({}).command() == PartialRules()


@pytest.mark.parametrize(
    "body",
    [
        {"book_notice_minutes": "30"},
        {"book_notice_minutes": None},
        {"offer_minutes": True},
        {"refund_tiers": [{"notice_minutes": 60, "percent": "100.5"}]},
        {"refund_tiers": [{"notice_minutes": 60, "percent": 50}]},
        {"quotas": [{"most": 0, "per": "day"}]},
        {"horizon": 60},
    ],
)
def test_the_request_accepts_exactly_what_its_document_states(body: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        RoomRulesIn.model_validate(body)


def test_the_document_gives_no_defaults_since_a_rule_left_out_is_inherited() -> None:
    properties = RoomRulesIn.model_json_schema()["properties"]

    assert set(properties) == set(RoomRules.model_fields)
    assert not [name for name, member in properties.items() if "default" in member]
    assert properties["book_notice_minutes"]["description"].startswith("A booking is made")
