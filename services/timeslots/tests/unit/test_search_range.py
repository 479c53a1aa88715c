"""The local date range a search or listing covers."""

from __future__ import annotations

from datetime import date

import pytest

from timeslots import domain
from timeslots.handlers import search_range


def test_one_date_is_a_one_day_range() -> None:
    assert search_range(on=date(2030, 1, 2), date_from=None, date_to=None, max_days=31) == (
        date(2030, 1, 2),
        date(2030, 1, 2),
    )


def test_a_range_of_exactly_the_maximum_is_allowed_and_one_day_more_is_not() -> None:
    assert search_range(
        on=None, date_from=date(2030, 1, 1), date_to=date(2030, 1, 31), max_days=31
    ) == (date(2030, 1, 1), date(2030, 1, 31))
    with pytest.raises(domain.InvalidRange, match="32 days, more than 31"):
        search_range(on=None, date_from=date(2030, 1, 1), date_to=date(2030, 2, 1), max_days=31)


@pytest.mark.parametrize(
    ("on", "date_from", "date_to", "reason"),
    [
        (date(2030, 1, 1), date(2030, 1, 1), None, "not both"),
        (None, date(2030, 1, 1), None, "both `from` and `to`"),
        (None, None, date(2030, 1, 1), "both `from` and `to`"),
        (None, date(2030, 1, 2), date(2030, 1, 1), "ends before it starts"),
    ],
)
def test_an_ambiguous_or_reversed_range_is_refused(
    on: date | None, date_from: date | None, date_to: date | None, reason: str
) -> None:
    with pytest.raises(domain.InvalidRange, match=reason):
        search_range(on=on, date_from=date_from, date_to=date_to, max_days=31)
