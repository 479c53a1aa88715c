"""Keyset pagination cursors: a position in a listing, in a fixed shape the document states.

A cursor encodes the sort key of the last item of a page (its start time and id, or its id);
the next page continues strictly after it, so pages stay stable while rows are added. It is
the key's bytes in unpadded base64url, so it has one length and one alphabet: 32 characters
for a time and an id (8 bytes of microseconds since 1970 UTC, 16 of UUID), 22 for an id.

Every string of that shape is a position, so any such cursor is answered: a position before
the first item gives the listing from its start, one past the last an empty page. A string of
another shape is refused (a 422 for the client).
"""

from __future__ import annotations

import base64
import binascii
import re
import struct
from datetime import UTC, datetime, timedelta
from typing import Annotated, Final
from uuid import UUID

from fastapi import Query

from platform_runtime.errors import KernelError

TIME_AND_ID_PATTERN: Final = r"^[A-Za-z0-9_-]{32}$"
ID_PATTERN: Final = r"^[A-Za-z0-9_-]{22}$"

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_EARLIEST = datetime.min.replace(tzinfo=UTC)
_LATEST = datetime.max.replace(tzinfo=UTC)
_MICROSECONDS = struct.Struct(">q")

TimeAndIdCursor = Annotated[
    str | None,
    Query(
        pattern=TIME_AND_ID_PATTERN,
        description="`next_cursor` of the previous page: where this page continues",
    ),
]
IdCursor = Annotated[
    str | None,
    Query(
        pattern=ID_PATTERN,
        description="`next_cursor` of the previous page: where this page continues",
    ),
]


class InvalidCursor(KernelError, ValueError):
    """A pagination cursor of another shape (a 422 for the client)."""


def encode_cursor(*parts: datetime | UUID) -> str:
    raw = b"".join(
        _MICROSECONDS.pack(_microseconds(p)) if isinstance(p, datetime) else p.bytes for p in parts
    )
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_time_and_id(cursor: str | None) -> tuple[datetime, UUID] | None:
    """The ``(UTC datetime, UUID)`` of a cursor from ``encode_cursor(moment, id)``; a moment
    outside the years 1-9999 is the earliest or the latest there is."""
    if cursor is None:
        return None
    raw = _bytes(cursor, TIME_AND_ID_PATTERN)
    (microseconds,) = _MICROSECONDS.unpack(raw[:8])
    try:
        moment = _EPOCH + timedelta(microseconds=microseconds)
    except OverflowError:
        moment = _EARLIEST if microseconds < 0 else _LATEST
    return moment, UUID(bytes=raw[8:])


def decode_id(cursor: str | None) -> UUID | None:
    """The UUID of a cursor from ``encode_cursor(id)``."""
    if cursor is None:
        return None
    return UUID(bytes=_bytes(cursor, ID_PATTERN))


def _microseconds(moment: datetime) -> int:
    return (moment - _EPOCH) // timedelta(microseconds=1)


def _bytes(cursor: str, pattern: str) -> bytes:
    if not re.fullmatch(pattern, cursor):
        raise InvalidCursor(
            f"cursor {cursor[:100]!r} is not the `next_cursor` of a page of this listing"
        )
    try:
        return base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
    except binascii.Error as exc:  # pragma: no cover - the pattern admits only base64url
        raise InvalidCursor(f"cursor {cursor[:100]!r} is not base64url") from exc
