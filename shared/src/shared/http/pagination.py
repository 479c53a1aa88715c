"""Keyset pagination cursors: opaque to clients, checked when they come back.

A cursor encodes the sort key of the last item of a page (e.g. its start time and id); the
next page continues strictly after it, so pages stay stable while rows are added.
"""

from __future__ import annotations

import base64
import binascii
from datetime import UTC, datetime
from uuid import UUID


class InvalidCursor(ValueError):
    """A pagination cursor this service did not hand out (a 422 for the client)."""


def encode_cursor(*parts: datetime | UUID) -> str:
    raw = "|".join(p.isoformat() if isinstance(p, datetime) else str(p) for p in parts)
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_time_and_id(cursor: str | None) -> tuple[datetime, UUID] | None:
    """The ``(UTC datetime, UUID)`` of a cursor from ``encode_cursor(moment, id)``.

    A moment without an offset, or one with no UTC datetime (``0001-01-01T00:00+01:00``), is
    not one this service handed out."""
    if cursor is None:
        return None
    try:
        moment, identifier = _parts(cursor).split("|")
        parsed = datetime.fromisoformat(moment)
        if parsed.utcoffset() is None:
            raise ValueError("naive cursor")
        return parsed.astimezone(UTC), UUID(identifier)
    except (ValueError, OverflowError) as exc:
        raise _invalid(cursor) from exc


def decode_id(cursor: str | None) -> UUID | None:
    """The UUID of a cursor from ``encode_cursor(id)``."""
    if cursor is None:
        return None
    try:
        return UUID(_parts(cursor))
    except ValueError as exc:
        raise _invalid(cursor) from exc


def _parts(cursor: str) -> str:
    try:
        return base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    except (UnicodeDecodeError, binascii.Error) as exc:
        raise _invalid(cursor) from exc


def _invalid(cursor: str) -> InvalidCursor:
    return InvalidCursor(f"cursor {cursor[:100]!r} is not one this service handed out")
