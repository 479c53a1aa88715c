"""What a request body may carry: the guards every request model of every service shares.

PostgreSQL stores no NUL character in text and no NaN or Infinity in JSON, and a free-form
value nested hundreds of levels deep is stored and then breaks every read of it. Such input
is refused when the request is validated, a 422 naming where it is, so nothing is written:

- :class:`RequestModel`, the base of every request body, refuses unknown members, the NUL
  character in any string (member names included) and NaN or Infinity in any number,
  wherever they are in the body;
- :data:`FreeFormObject` is a JSON object for free-form metadata (``attributes``), at most
  :data:`MAX_FREE_FORM_DEPTH` levels deep and :data:`MAX_FREE_FORM_BYTES` long as JSON.

The URL is guarded by :mod:`shared.http.guards`; datetimes in requests are
:data:`shared.events.money.UtcDatetime`, which refuses instants that do not exist in UTC.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Annotated, Any, Final

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator
from pydantic_core import PydanticCustomError

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


class RequestModel(BaseModel):
    """Base of request bodies: unknown members, NUL characters and non-finite numbers are
    refused anywhere in the body (a 422 whose message says where)."""

    model_config = ConfigDict(extra="forbid")

    @model_validator(mode="before")
    @classmethod
    def _storable(cls, data: Any) -> Any:
        found = unstorable(data)
        if found is not None:
            error_type, message = found
            raise PydanticCustomError(error_type, "{message}", {"message": message})
        return data


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
        f"deep and {MAX_FREE_FORM_BYTES} bytes long as JSON"
    ),
]
"""A free-form JSON object, bounded in depth and length (see the module)."""
