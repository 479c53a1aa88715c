"""Exact money and time types used in every event and API of the platform.

Money is a ``Decimal`` amount plus an ISO 4217 currency code. It travels as a JSON string
(``"12.50"``), never as a float, and floats are refused on the way in: a float has already
lost the exactness this type exists for. Times are timezone-aware and normalised to UTC.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    WithJsonSchema,
    model_validator,
)

# Currencies whose minor unit is not the cent (ISO 4217 exponent). Everything else: 2.
_MINOR_UNIT_EXPONENT: dict[str, int] = {
    "BIF": 0, "CLP": 0, "DJF": 0, "GNF": 0, "ISK": 0, "JPY": 0, "KMF": 0, "KRW": 0,
    "PYG": 0, "RWF": 0, "UGX": 0, "UYI": 0, "VND": 0, "VUV": 0, "XAF": 0, "XOF": 0,
    "XPF": 0, "BHD": 3, "IQD": 3, "JOD": 3, "KWD": 3, "LYD": 3, "OMR": 3, "TND": 3,
}  # fmt: skip


def minor_unit_exponent(currency: str) -> int:
    """Number of decimal places the currency's smallest unit has (2 for EUR, 0 for JPY)."""
    return _MINOR_UNIT_EXPONENT.get(currency, 2)


AMOUNT_INTEGER_DIGITS = 15
AMOUNT_FRACTION_DIGITS = 6
AMOUNT_PATTERN = rf"^-?[0-9]{{1,{AMOUNT_INTEGER_DIGITS}}}(\.[0-9]{{1,{AMOUNT_FRACTION_DIGITS}}})?$"
"""A decimal string: an optional minus, at most 15 digits, a point and at most 6 digits.

No exponent, no sign ``+``, no spaces or underscores: ``"1E+900000000"`` is a short string
that is a billion characters long once written out, and an amount is never that."""
_AMOUNT = re.compile(AMOUNT_PATTERN)


def _exact_decimal(value: Any) -> Any:
    if isinstance(value, Decimal):  # built in Python, not read from outside
        return value
    if not isinstance(value, str):
        raise ValueError(
            f'money amounts are decimal strings such as "12.50", not {type(value).__name__}s'
        )
    if not _AMOUNT.fullmatch(value):
        raise ValueError(
            f'{value[:40]!r} is not a decimal string such as "12.50" (at most '
            f"{AMOUNT_INTEGER_DIGITS} digits before the point, {AMOUNT_FRACTION_DIGITS} after it)"
        )
    return Decimal(value)


def _finite(value: Decimal) -> Decimal:
    if not value.is_finite():
        raise ValueError("money amounts must be finite")
    return value


ExactDecimal = Annotated[
    Decimal,
    BeforeValidator(_exact_decimal),
    AfterValidator(_finite),
    PlainSerializer(lambda d: format(d, "f"), return_type=str, when_used="json"),
    WithJsonSchema({"type": "string", "pattern": AMOUNT_PATTERN, "examples": ["12.50"]}),
]
"""A Decimal read only from a bounded decimal string and serialised as one."""


def _upper_case(value: Any) -> Any:
    return value.upper() if isinstance(value, str) and len(value) == 3 else value


CurrencyCode = Annotated[
    str,
    BeforeValidator(_upper_case),
    Field(
        pattern=r"^[A-Z]{3}$",
        examples=["EUR", "USD"],
        description="ISO 4217; read in any case (payment providers send 'eur'), kept upper case",
    ),
]


def _to_utc(value: datetime) -> datetime:
    try:
        return value.astimezone(UTC)
    except OverflowError:  # e.g. 9999-12-31T23:00-05:00 has no UTC datetime
        raise ValueError(f"{value.isoformat()} is out of range in UTC") from None


UtcDatetime = Annotated[AwareDatetime, AfterValidator(_to_utc)]
"""A timezone-aware datetime, normalised to UTC; naive datetimes are refused."""


def utc_now() -> datetime:
    """The current instant, timezone-aware, in UTC."""
    return datetime.now(UTC)


class Money(BaseModel):
    """An exact amount in one currency, rounded to the currency's minor unit: ``amount`` is a
    decimal string (``"12.50"``, never a JSON number) and ``currency`` an ISO 4217 code."""

    model_config = ConfigDict(frozen=True, extra="forbid", use_attribute_docstrings=True)

    amount: ExactDecimal
    """The amount as a decimal string: an optional minus, at most 15 digits, then at most 6
    after a point (``"12.50"``), never an exponent; with no more decimal places than the
    currency's minor unit has (2 for EUR, 0 for JPY, 3 for KWD). Read it as an exact decimal,
    not a float."""
    currency: CurrencyCode

    @model_validator(mode="after")
    def _amount_fits_currency(self) -> Money:
        exponent = self.amount.as_tuple().exponent
        if isinstance(exponent, int) and -exponent > minor_unit_exponent(self.currency):
            raise ValueError(
                f"{self.amount} has more decimal places than {self.currency} allows "
                f"({minor_unit_exponent(self.currency)})"
            )
        return self

    @classmethod
    def of(cls, amount: Decimal | int | str, currency: str) -> Money:
        """Round ``amount`` half-up (as on an invoice) to the currency's minor unit."""
        quantum = Decimal(1).scaleb(-minor_unit_exponent(currency))
        return cls(
            amount=Decimal(amount).quantize(quantum, rounding=ROUND_HALF_UP), currency=currency
        )

    def __str__(self) -> str:
        return f"{format(self.amount, 'f')} {self.currency}"


MAX_PRICE = Decimal(10) ** 12
"""Prices are below a trillion units: anything larger is a typo (and overflows storage)."""


def _upper_case_currency(value: Any) -> Any:
    """A price in a request names its currency as the document says: upper case."""
    currency = value.get("currency") if isinstance(value, dict) else None
    if isinstance(currency, str) and not re.fullmatch(r"[A-Z]{3}", currency):
        raise ValueError(f"currency {currency[:10]!r} is not an ISO 4217 code in upper case")
    return value


def _is_price(value: Money) -> Money:
    if value.amount < 0:
        raise ValueError(f"a price must not be negative, not {value}")
    if value.amount >= MAX_PRICE:
        raise ValueError(f"a price must be below {MAX_PRICE:,} {value.currency}, not {value}")
    return value


def _price_schema() -> dict[str, Any]:
    """Money that can be a price, as JSON Schema states it: a non-negative amount of at most 12
    digits, with as many decimal places as the currency's minor unit has, or fewer."""
    by_exponent: dict[int, list[str]] = {}
    for code, exponent in sorted(_MINOR_UNIT_EXPONENT.items()):
        by_exponent.setdefault(exponent, []).append(code)
    listed = sorted(_MINOR_UNIT_EXPONENT)

    def shape(currency: dict[str, Any], places: int) -> dict[str, Any]:
        fraction = rf"(\.[0-9]{{1,{places}}})?" if places else ""
        return {
            "type": "object",
            "properties": {
                "amount": {"type": "string", "pattern": f"^[0-9]{{1,12}}{fraction}$"},
                "currency": currency,
            },
            "required": ["amount", "currency"],
            "additionalProperties": False,
        }

    return {
        "anyOf": [
            *(shape({"enum": codes}, exponent) for exponent, codes in sorted(by_exponent.items())),
            shape({"type": "string", "pattern": r"^[A-Z]{3}$", "not": {"enum": listed}}, 2),
        ],
        "description": "A price: a non-negative decimal string below 10^12 with at most as many "
        "decimal places as the currency's minor unit (0 for JPY, 3 for KWD, 2 for most)",
        "examples": [{"amount": "12.50", "currency": "EUR"}],
    }


Price = Annotated[
    Money,
    BeforeValidator(_upper_case_currency),
    AfterValidator(_is_price),
    WithJsonSchema(_price_schema()),
]
"""Money that can be a price: not negative and below ``MAX_PRICE`` (for request bodies)."""
