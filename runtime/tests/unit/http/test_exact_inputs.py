"""Request scalars are read exactly as the document states them, no more: what the schema of
each type admits, the type accepts, and what it refuses, the type refuses."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, time
from typing import Any

import jsonschema_rs
import pytest
from pydantic import Field, TypeAdapter, ValidationError

from platform_runtime.http.inputs import (
    CalendarDate,
    Instant,
    LocalTime,
    PatchModel,
    RequestModel,
    WholeNumber,
    whole_numbers_as_integers,
)
from platform_runtime.text import LINE_BREAKS, refuse_control_characters, text_pattern


def _both(kind: Any, value: Any) -> tuple[bool, bool]:
    """(the type's JSON Schema admits ``value``, the type accepts it)."""
    adapter: TypeAdapter[Any] = TypeAdapter(kind)
    in_schema = jsonschema_rs.validator_for(adapter.json_schema(), validate_formats=True).is_valid(
        value
    )
    try:
        adapter.validate_python(value)
    except ValidationError:
        return in_schema, False
    return in_schema, True


@pytest.mark.parametrize(
    ("value", "valid"),
    [
        ("2027-03-08", True),
        ("2000-01-01", True),
        ("2199-12-31", True),
        ("1999-12-31", False),  # outside the years the platform reckons with
        ("2200-01-01", False),
        ("2027-02-30", False),
        ("2027-3-8", False),
        ("20270308", False),
        ("2027-03-08T00:00:00", False),
        (1_800_000_000, False),  # no Unix time
    ],
)
def test_a_calendar_date_is_read_as_documented(value: Any, valid: bool) -> None:
    assert _both(CalendarDate, value) == (valid, valid)


@pytest.mark.parametrize(
    ("value", "valid"),
    [
        ("2027-03-08T09:00:00Z", True),
        ("2027-03-08T10:00:00.123456+01:00", True),
        ("2027-03-08 09:00:00Z", False),
        ("2027-03-08T09:00Z", False),  # seconds are part of RFC 3339
        ("2027-03-08T09:00:00", False),  # no offset: which instant?
        ("2027-03-08T09:00:00.1234567Z", False),
        ("0001-01-01T00:00:00+01:00", False),
        ("1800000000", False),
        (1_800_000_000, False),
    ],
)
def test_an_instant_is_read_as_documented(value: Any, valid: bool) -> None:
    assert _both(Instant, value) == (valid, valid)


def test_an_instant_is_normalised_to_utc() -> None:
    read = TypeAdapter(Instant).validate_python("2027-03-08T10:00:00+01:00")

    assert read == datetime(2027, 3, 8, 9, tzinfo=UTC)
    assert read.tzinfo is UTC


@pytest.mark.parametrize(
    ("value", "valid"),
    [("09:00", True), ("23:59:59", True), ("24:00", False), ("9:00", False), (3600, False)],
)
def test_a_local_time_is_read_as_documented(value: Any, valid: bool) -> None:
    assert _both(LocalTime, value) == (valid, valid)


def test_values_built_in_python_pass_unchanged() -> None:
    assert TypeAdapter(CalendarDate).validate_python(date(2027, 3, 8)) == date(2027, 3, 8)
    assert TypeAdapter(LocalTime).validate_python(time(9)) == time(9)


class Counted(RequestModel):
    count: WholeNumber = Field(ge=1)
    tags: dict[str, Any] = Field(default_factory=dict)


@pytest.mark.parametrize(
    ("count", "read"), [(3, 3), (3.0, 3), ("3", None), (True, None), (3.5, None), (0, None)]
)
def test_a_whole_number_is_a_json_integer(count: Any, read: int | None) -> None:
    if read is None:
        with pytest.raises(ValidationError):
            Counted.model_validate({"count": count})
    else:
        assert Counted.model_validate({"count": count}).count == read


def test_numbers_without_a_fraction_are_integers_everywhere_in_a_body() -> None:
    body = {"count": 2.0, "tags": {"a": [1.0, {"b": 2.5}]}}

    assert whole_numbers_as_integers(body) == {"count": 2, "tags": {"a": [1, {"b": 2.5}]}}
    assert type(body["count"]) is int
    assert whole_numbers_as_integers(4.0) == 4
    assert whole_numbers_as_integers(4.5) == 4.5


class Renamed(PatchModel):
    name: str | None = Field(default=None, max_length=10)
    count: WholeNumber | None = None


def test_a_patch_document_lists_no_member_as_nullable_and_null_is_refused() -> None:
    schema = Renamed.model_json_schema()

    assert schema["properties"]["name"] == {
        "maxLength": 10,
        "pattern": "^[^\\u0000]*$",
        "title": "Name",
        "type": "string",
    }
    assert schema["properties"]["count"]["type"] == "integer"
    with pytest.raises(ValidationError, match="name cannot be null; leave it out to keep it"):
        Renamed.model_validate({"name": None})
    assert Renamed.model_validate({}).model_fields_set == set()


@pytest.mark.parametrize(
    "text", ["plain", "é ü 漢字", "tab\there", "line\nbreak", "nul\x00", "c1\x86", "sep\u2028"]
)
@pytest.mark.parametrize("allowed", ["", "\t" + LINE_BREAKS])
def test_the_text_pattern_states_the_control_character_rule(text: str, allowed: str) -> None:
    try:
        refuse_control_characters(text, allowed=allowed)
        accepted = True
    except ValueError:
        accepted = False

    assert bool(re.fullmatch(text_pattern(allowed=allowed), text)) == accepted
