"""Bounds on every scalar an event carries, so that no event, however it was produced, makes
a record too large to publish, a number too large to store, or a message too long to format.

An identifier or a name longer than any the platform issues is refused (the event goes to
the dead-letter topic with the reason). Free text that comes from another system (a payment
provider's reason, a delivery error) is cut to :data:`MAX_NOTE_CHARACTERS` instead: it is
there for people to read, and refusing an event for a long explanation would lose the event.
A correlation id that is not a sane one is dropped: the event's own id then correlates.
"""

from __future__ import annotations

import functools
import re
from typing import Annotated, Any, Final

from pydantic import AfterValidator, BeforeValidator, Field, WithJsonSchema
from pydantic.networks import validate_email

MAX_INT32: Final = 2**31 - 1
"""The largest PostgreSQL ``integer``: counts beyond it cannot be stored."""
MAX_NOTE_CHARACTERS: Final = 1000
MAX_CORRELATION_ID_CHARACTERS: Final = 128
CORRELATION_ID_PATTERN: Final = rf"^[A-Za-z0-9._:-]{{1,{MAX_CORRELATION_ID_CHARACTERS}}}$"
_CORRELATION_ID = re.compile(CORRELATION_ID_PATTERN)


def is_sane_correlation_id(value: str) -> bool:
    """Whether a correlation id is safe to log, echo back and copy into every event it causes:
    at most 128 characters of ``[A-Za-z0-9._:-]``."""
    return _CORRELATION_ID.fullmatch(value) is not None


def _clip(value: Any) -> Any:
    if isinstance(value, str) and len(value) > MAX_NOTE_CHARACTERS:
        return value[: MAX_NOTE_CHARACTERS - 1] + "…"
    return value


def _sane_or_none(value: Any) -> Any:
    if isinstance(value, str) and not is_sane_correlation_id(value):
        return None
    return value


@functools.lru_cache(maxsize=8192)
def _email_address(value: str) -> str:
    # The check of EmailStr, cached: a booking's address is checked in the request, in its
    # events and in its answer, and the check costs more than the rest of a small request.
    # A refused address raises (pydantic's own error) and so is not cached.
    return validate_email(value)[1]


EmailAddress = Annotated[
    str, AfterValidator(_email_address), WithJsonSchema({"format": "email", "type": "string"})
]
"""An e-mail address by the rules of pydantic's ``EmailStr`` (same errors, same schema)."""
Count = Annotated[int, Field(ge=1, le=MAX_INT32)]
"""A positive count or version that fits a PostgreSQL ``integer``."""
Identifier = Annotated[str, Field(min_length=1, max_length=255)]
"""An id issued by the platform or a partner (user, payment, message id)."""
Label = Annotated[str, Field(max_length=200)]
"""A name people gave something (a room)."""
ZoneName = Annotated[str, Field(min_length=1, max_length=64)]
"""An IANA time zone name."""
Note = Annotated[
    str,
    BeforeValidator(_clip),
    Field(
        description=f"Free text; longer text is cut to {MAX_NOTE_CHARACTERS} characters",
    ),
]
"""Free text from another system: cut, not refused, when longer than the bound."""
CorrelationId = Annotated[
    Annotated[str, Field(pattern=CORRELATION_ID_PATTERN)] | None,
    BeforeValidator(_sane_or_none),
    Field(description="At most 128 characters of [A-Za-z0-9._:-]; any other value is dropped"),
]
"""A correlation or causation id: dropped (None) when it is not a sane one."""


TRACEPARENT_PATTERN: Final = r"^00-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$"
_TRACEPARENT = re.compile(TRACEPARENT_PATTERN)


def _traceparent_or_none(value: Any) -> Any:
    if isinstance(value, str) and not _TRACEPARENT.fullmatch(value):
        return None
    return value


Traceparent = Annotated[
    Annotated[str, Field(pattern=TRACEPARENT_PATTERN)] | None,
    BeforeValidator(_traceparent_or_none),
]
"""A W3C ``traceparent`` (version 00): dropped (None) when it is of any other form."""
