"""Exact money and time: what a client or another team sees on the wire."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

import jsonschema_rs
import pytest
from pydantic import BaseModel, TypeAdapter, ValidationError

from booking_contracts.money import Money, Price, UtcDatetime, minor_unit_exponent, utc_now


def test_money_travels_as_a_decimal_string_with_its_currency() -> None:
    assert Money.of("12.5", "EUR").model_dump(mode="json") == {"amount": "12.50", "currency": "EUR"}


def test_money_from_json_string_is_exact() -> None:
    money = Money.model_validate_json('{"amount": "0.10", "currency": "USD"}')
    assert money.amount + money.amount + money.amount == Decimal("0.30")


def test_float_amounts_are_refused() -> None:
    with pytest.raises(ValidationError, match="not floats"):
        Money.model_validate({"amount": 0.1, "currency": "EUR"})


@pytest.mark.parametrize("amount", ["abc", "NaN", "Infinity", "1e400000000000000000000"])
def test_non_numeric_or_infinite_amounts_are_refused(amount: str) -> None:
    with pytest.raises(ValidationError):
        Money.model_validate({"amount": amount, "currency": "EUR"})


def test_infinite_decimal_is_refused() -> None:
    with pytest.raises(ValidationError, match="finite"):
        Money(amount=Decimal("Infinity"), currency="EUR")


def test_more_decimals_than_the_currency_has_are_refused() -> None:
    with pytest.raises(ValidationError, match="more decimal places than EUR"):
        Money.model_validate({"amount": "1.005", "currency": "EUR"})
    with pytest.raises(ValidationError, match="JPY"):
        Money.model_validate({"amount": "100.5", "currency": "JPY"})
    assert Money.model_validate({"amount": "1.005", "currency": "KWD"}).amount == Decimal("1.005")


def test_a_currency_is_read_in_any_case_and_kept_upper_case() -> None:
    assert Money.model_validate({"amount": "1.00", "currency": "eur"}).currency == "EUR"
    with pytest.raises(ValidationError, match="upper case"):
        TypeAdapter(Price).validate_python({"amount": "1.00", "currency": "eur"})


@pytest.mark.parametrize("code", ["EURO", "E1R", "", "eu"])
def test_currency_must_be_an_iso_4217_code(code: str) -> None:
    with pytest.raises(ValidationError):
        Money.model_validate({"amount": "1", "currency": code})


def test_rounding_to_the_minor_unit_is_half_up() -> None:
    assert Money.of(Decimal("5.005"), "EUR").amount == Decimal("5.01")
    assert Money.of(Decimal("5.004"), "EUR").amount == Decimal("5.00")
    assert Money.of(Decimal("99.5"), "JPY").amount == Decimal("100")
    assert minor_unit_exponent("BHD") == 3
    assert str(Money.of(3, "EUR")) == "3.00 EUR"


class Stamped(BaseModel):
    at: UtcDatetime


def test_times_are_normalised_to_utc() -> None:
    berlin_summer = timezone(timedelta(hours=2))
    stamped = Stamped(at=datetime(2026, 7, 1, 9, 0, tzinfo=berlin_summer))
    assert stamped.at == datetime(2026, 7, 1, 7, 0, tzinfo=UTC)
    assert stamped.at.utcoffset() == timedelta(0)
    assert Stamped.model_validate_json('{"at": "2026-03-29T01:30:00+01:00"}').at.hour == 0


def test_naive_times_are_refused() -> None:
    with pytest.raises(ValidationError):
        Stamped(at=datetime(2026, 7, 1, 9, 0))


def test_utc_now_is_aware() -> None:
    assert utc_now().utcoffset() == timedelta(0)


class _Priced(BaseModel):
    price: Price
    at: UtcDatetime | None = None


@pytest.mark.parametrize(
    ("amount", "reason"),
    [("-0.01", "must not be negative"), ("1000000000000", "must be below")],
)
def test_a_price_is_neither_negative_nor_absurdly_large(amount: str, reason: str) -> None:
    with pytest.raises(ValidationError, match=reason):
        _Priced.model_validate({"price": {"amount": amount, "currency": "EUR"}})


def test_a_price_of_zero_or_just_below_the_limit_is_fine() -> None:
    for amount in ("0", "999999999999.99"):
        assert _Priced.model_validate({"price": {"amount": amount, "currency": "EUR"}})


def test_a_time_without_a_utc_equivalent_is_refused_not_crashed_on() -> None:
    with pytest.raises(ValidationError, match="out of range in UTC"):
        _Priced.model_validate(
            {"price": {"amount": "1", "currency": "EUR"}, "at": "9999-12-31T23:00:00-05:00"}
        )


@pytest.mark.parametrize(
    "amount", ["1E+900000000", "1e3", "+1", " 1", "1_000", "1.", ".5", "\u0661"]
)
def test_an_amount_is_a_plain_decimal_string_and_nothing_else(amount: str) -> None:
    with pytest.raises(ValidationError, match="is not a decimal string") as refused:
        Money.model_validate({"amount": amount, "currency": "EUR"})

    assert len(str(refused.value)) < 1000  # the message never writes out a huge exponent


@pytest.mark.parametrize("amount", ["1" * 16, "1." + "0" * 7])
def test_an_amount_has_at_most_15_digits_before_the_point_and_6_after(amount: str) -> None:
    with pytest.raises(ValidationError, match="at most 15 digits"):
        Money.model_validate({"amount": amount, "currency": "EUR"})


def test_an_amount_given_as_a_json_number_is_refused() -> None:
    with pytest.raises(ValidationError, match="decimal strings"):
        Money.model_validate({"amount": 12, "currency": "EUR"})
    assert Money(amount=Decimal(12), currency="EUR").amount == 12  # built in Python: fine


@pytest.mark.parametrize(
    ("amount", "currency", "valid"),
    [
        ("12.50", "EUR", True),
        ("12.505", "EUR", False),
        ("100", "JPY", True),
        ("100.5", "JPY", False),
        ("1.005", "KWD", True),
        ("1.0005", "KWD", False),
        ("999999999999.99", "EUR", True),
        ("1000000000000", "EUR", False),
        ("-1", "EUR", False),
    ],
)
def test_the_price_schema_states_what_a_price_accepts(
    amount: str, currency: str, valid: bool
) -> None:
    price = {"amount": amount, "currency": currency}
    schema = TypeAdapter(Price).json_schema()

    in_schema = jsonschema_rs.validator_for(schema).is_valid(price)
    try:
        TypeAdapter(Price).validate_python(price)
        accepted = True
    except ValidationError:
        accepted = False

    assert (in_schema, accepted) == (valid, valid)
