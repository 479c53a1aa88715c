"""What a request body may carry: the guards every request model of every service shares.

PostgreSQL stores no NUL character in text and no NaN or Infinity in JSON, and a free-form
value nested hundreds of levels deep is stored and then breaks every read of it. Such input
is refused when the request is validated, a 422 naming where it is, so nothing is written:

- :class:`RequestModel`, the base of every request body, refuses unknown members, the NUL
  character in any string (member names included) and NaN or Infinity in any number,
  wherever they are in the body;
- :data:`FreeFormObject` is a JSON object for free-form metadata (``attributes``), at most
  :data:`MAX_FREE_FORM_DEPTH` levels deep and :data:`MAX_FREE_FORM_BYTES` long as JSON;
- :class:`PatchModel`, the base of partial updates: a member left out is kept, ``null`` is
  refused, and the document says so (no member is nullable);
- :data:`CalendarDate`, :data:`Instant`, :data:`LocalTime` and :data:`WholeNumber` parse
  exactly what the document states (a pattern for each, a JSON integer): no Unix time for a
  date or an instant, no number written as a string, no year outside 2000-2199.

The URL is guarded by :mod:`platform_runtime.http.guards`.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from datetime import date, datetime, time
from typing import Annotated, Any, Final

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    Strict,
    WithJsonSchema,
    model_validator,
)
from pydantic_core import PydanticCustomError

from booking_contracts.money import UtcDatetime

MAX_FREE_FORM_DEPTH: Final = 8
"""Levels of a free-form object: the object itself is one, each object or array in it one more."""
MAX_FREE_FORM_BYTES: Final = 8 * 1024
"""Length of a free-form object as compact UTF-8 JSON."""

NUL_CHARACTER: Final = "nul_character"
NON_FINITE_NUMBER: Final = "finite_number"
"""The ``type`` of the validation issues these guards raise."""

Path = tuple[str | int, ...]


def unstorable(value: Any) -> tuple[str, str] | None:
    """The first NUL character or non-finite number in ``value`` (parsed JSON), as an error
    type and a message naming where it is; None when there is none.

    Walks iteratively, so a value nested deeper than the interpreter's recursion limit is
    walked like any other."""
    pending: list[tuple[Path, Any]] = [((), value)]
    while pending:
        path, item = pending.pop()
        if isinstance(item, str):
            if "\x00" in item:
                return NUL_CHARACTER, f"{_where(path)} contains the NUL character (U+0000)"
        elif isinstance(item, float):
            if not math.isfinite(item):
                return NON_FINITE_NUMBER, f"{_where(path)} is {item}: numbers must be finite"
        elif isinstance(item, Mapping):
            for key in item:
                if isinstance(key, str) and "\x00" in key:
                    return NUL_CHARACTER, (
                        f"a member name in {_where(path)} contains the NUL character (U+0000)"
                    )
            pending.extend(((*path, key), member) for key, member in reversed(list(item.items())))
        elif isinstance(item, list | tuple):
            pending.extend(
                ((*path, index), member) for index, member in reversed(list(enumerate(item)))
            )
    return None


def _where(path: Path) -> str:
    if not path:
        return "the value"
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


NO_NUL_PATTERN: Final = "^[^\\u0000]*$"


def _state_nul_refusal(schema: dict[str, Any]) -> None:
    """The document says what :class:`RequestModel` refuses: each free string member of the
    model gets a pattern without the NUL character (members with a pattern, a format or a
    list of values already exclude it)."""
    for member in schema.get("properties", {}).values():
        for choice in member.get("anyOf", [member]):
            if choice.get("type") == "string" and not {"pattern", "format", "enum"} & set(choice):
                choice["pattern"] = NO_NUL_PATTERN


class RequestModel(BaseModel):
    """Base of request bodies: unknown members, NUL characters and non-finite numbers are
    refused anywhere in the body (a 422 whose message says where)."""

    model_config = ConfigDict(extra="forbid", json_schema_extra=_state_nul_refusal)

    @model_validator(mode="before")
    @classmethod
    def _storable(cls, data: Any) -> Any:
        found = unstorable(data)
        if found is not None:
            error_type, message = found
            raise PydanticCustomError(error_type, "{message}", {"message": message})
        return whole_numbers_as_integers(data)


def whole_numbers_as_integers(value: Any) -> Any:
    """``value`` (parsed JSON) with every number that has no fraction (``3.0``) made an
    integer, as JSON Schema reads it. Lists and objects are changed in place; walks
    iteratively, like :func:`unstorable`."""
    if isinstance(value, float):
        return int(value) if value.is_integer() else value
    pending: list[Any] = [value]
    while pending:
        item = pending.pop()
        if isinstance(item, dict):
            keys: Any = list(item)
        elif isinstance(item, list):
            keys = range(len(item))
        else:
            continue
        for key in keys:
            member = item[key]
            if isinstance(member, float) and member.is_integer():
                item[key] = int(member)
            elif isinstance(member, dict | list):
                pending.append(member)
    return value


def depth(value: Any, *, beyond: int) -> int:
    """Levels of objects and arrays in ``value`` (a scalar has none), counted up to
    ``beyond``: deeper values are not walked further."""
    deepest = 0
    pending: list[tuple[int, Any]] = [(1, value)]
    while pending:
        level, item = pending.pop()
        if isinstance(item, Mapping):
            members: Any = item.values()
        elif isinstance(item, list | tuple):
            members = item
        else:
            continue
        deepest = max(deepest, level)
        if deepest >= beyond:
            return deepest
        pending.extend((level + 1, member) for member in members)
    return deepest


def _bounded_free_form(value: dict[str, Any]) -> dict[str, Any]:
    levels = depth(value, beyond=MAX_FREE_FORM_DEPTH + 1)
    if levels > MAX_FREE_FORM_DEPTH:
        raise ValueError(f"nests objects and arrays more than {MAX_FREE_FORM_DEPTH} levels deep")
    found = unstorable(value)
    if found is not None:
        raise ValueError(found[1])
    size = len(json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=str).encode())
    if size > MAX_FREE_FORM_BYTES:
        raise ValueError(
            f"is {size} bytes long as JSON; at most {MAX_FREE_FORM_BYTES} are accepted"
        )
    return value


FreeFormObject = Annotated[
    dict[str, Any],
    AfterValidator(_bounded_free_form),
    Field(
        description=f"Free-form metadata: a JSON object at most {MAX_FREE_FORM_DEPTH} levels "
        f"deep and {MAX_FREE_FORM_BYTES} bytes long as JSON, with no NUL character in any "
        "string or member name",
        json_schema_extra={"propertyNames": {"pattern": NO_NUL_PATTERN}},
    ),
]
"""A free-form JSON object, bounded in depth and length (see the module)."""


class PatchModel(RequestModel):
    """Base of partial updates: only the members present change. ``null`` is refused (leave a
    member out to keep it), and the document lists no member as nullable."""

    model_config = ConfigDict(extra="forbid", json_schema_extra=lambda s: _patch_schema(s))

    @model_validator(mode="before")
    @classmethod
    def _no_nulls(cls, data: Any) -> Any:
        if isinstance(data, Mapping):
            nulls = sorted(str(name) for name, value in data.items() if value is None)
            if nulls:
                raise ValueError(f"{nulls[0]} cannot be null; leave it out to keep it")
        return data


def _patch_schema(schema: dict[str, Any]) -> None:
    _drop_nulls(schema)
    _state_nul_refusal(schema)


def _drop_nulls(schema: dict[str, Any]) -> None:
    for member in schema.get("properties", {}).values():
        member.pop("default", None)
        choices = member.get("anyOf")
        if choices is not None:
            kept = [choice for choice in choices if choice != {"type": "null"}]
            member.pop("anyOf")
            if len(kept) == 1:
                member.update(kept[0])
            else:
                member["anyOf"] = kept


# --- scalars read exactly as the document states them -----------------------------------

EARLIEST_YEAR: Final = 2000
LATEST_YEAR: Final = 2199
_DATE = r"2[01][0-9]{2}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])"
DATE_PATTERN: Final = rf"^{_DATE}$"
INSTANT_PATTERN: Final = (
    rf"^{_DATE}T([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](\.[0-9]{{1,6}})?"
    r"(Z|[+-]([01][0-9]|2[0-3]):[0-5][0-9])$"
)
LOCAL_TIME_PATTERN: Final = r"^([01][0-9]|2[0-3]):[0-5][0-9](:[0-5][0-9])?$"


def _reader(pattern: str, kind: type, parse: Any, what: str) -> Any:
    compiled = re.compile(pattern)

    def read(value: Any) -> Any:
        if isinstance(value, kind):  # built in Python, not read from a request
            return value
        if not isinstance(value, str) or not compiled.fullmatch(value):
            shown = repr(value[:60]) if isinstance(value, str) else type(value).__name__
            raise ValueError(f"{shown} is not {what}")
        return parse(value)

    return read


CalendarDate = Annotated[
    date,
    BeforeValidator(
        _reader(
            DATE_PATTERN,
            date,
            date.fromisoformat,
            f"a date YYYY-MM-DD from {EARLIEST_YEAR} to {LATEST_YEAR}",
        )
    ),
    WithJsonSchema(
        {"type": "string", "format": "date", "pattern": DATE_PATTERN, "examples": ["2027-03-08"]}
    ),
]
"""A calendar date ``YYYY-MM-DD`` in the years 2000-2199 (date arithmetic never overflows)."""

Instant = Annotated[
    UtcDatetime,
    BeforeValidator(
        _reader(
            INSTANT_PATTERN,
            datetime,
            datetime.fromisoformat,
            "an RFC 3339 date-time with an offset (2027-03-08T09:00:00Z, "
            f"2027-03-08T10:00:00+01:00), years {EARLIEST_YEAR} to {LATEST_YEAR}",
        )
    ),
    WithJsonSchema(
        {
            "type": "string",
            "format": "date-time",
            "pattern": INSTANT_PATTERN,
            "examples": ["2027-03-08T09:00:00Z"],
        }
    ),
]
"""An instant in a request: RFC 3339 with ``T``, seconds and an offset, at most microseconds,
in the years 2000-2199; normalised to UTC."""

LocalTime = Annotated[
    time,
    BeforeValidator(
        _reader(LOCAL_TIME_PATTERN, time, time.fromisoformat, "a local time HH:MM or HH:MM:SS")
    ),
    WithJsonSchema({"type": "string", "pattern": LOCAL_TIME_PATTERN, "examples": ["09:00"]}),
]
"""A wall-clock time without an offset (``09:00``), in the zone the context gives."""


WholeNumber = Annotated[int, Strict()]
"""A JSON integer: not a string of digits, not ``true``. ``3.0`` is one (JSON Schema counts a
number with no fraction as an integer: :class:`RequestModel` reads it as ``3``), ``3.5`` is
not."""
