"""Bookings: their one state machine, the refund policy and price arithmetic.

Pure domain code: no database, no HTTP, no Kafka. Persistence applies the transitions this
module allows (and the database refuses any other, see ``models.py``).

Errors form one small tree::

    BookingError              anything this module refuses
     +-- InvalidTransition    the booking's status does not allow the action (names the status)
     +-- SlotUnavailable      the slot is full, blocked, started, unknown or its room inactive
     +-- BookingNotFound      no booking with that id visible to the caller
     +-- SlotNotFound         no slot with that id
     +-- InvalidBooking       a request that can never succeed (another room, bad contact ...)
     +-- IdempotencyConflict  an Idempotency-Key reused for a different request
     +-- Forbidden            a user asking for what only admins may see

State machine (``action: from -> to``)::

    confirm     pending   -> confirmed     (payment succeeded)
    fail        pending   -> cancelled     (payment failed)
    expire      pending   -> expired       (hold ran out unpaid)
    cancel      pending   -> cancelled
    cancel      confirmed -> cancelled
    reschedule  confirmed -> confirmed     (before the slot starts)
    complete    confirmed -> completed     (admin, once the slot has started)
    no_show     confirmed -> no_show       (admin, once the slot has started)

``cancelled``, ``completed``, ``no_show`` and ``expired`` are final.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal

from shared.events.money import Money


class BookingError(Exception):
    """Base of every error of the booking domain."""


class InvalidTransition(BookingError):
    """The booking's current status does not allow the requested action."""

    def __init__(self, status: BookingStatus, action: Action, why: str = "") -> None:
        self.status = status
        self.action = action
        allowed = ", ".join(sorted(s.value for s in ALLOWED[action]))
        message = f"cannot {action.value.replace('_', '-')} a booking that is {status.value}"
        super().__init__(f"{message}{why or f' (only when {allowed})'}")


class SlotUnavailable(BookingError):
    """The slot cannot take this booking now."""


class BookingNotFound(BookingError):
    """No booking with that id is visible to the caller."""


class SlotNotFound(BookingError):
    """No slot with that id is known to the booking service."""


class InvalidBooking(BookingError):
    """A request that can never succeed as it stands."""


class IdempotencyConflict(BookingError):
    """An ``Idempotency-Key`` already used for a different request."""


class Forbidden(BookingError):
    """Only admins may do or see this."""


class BookingStatus(enum.StrEnum):
    PENDING = "pending"
    CONFIRMED = "confirmed"
    CANCELLED = "cancelled"
    COMPLETED = "completed"
    NO_SHOW = "no_show"
    EXPIRED = "expired"


class PaymentStatus(enum.StrEnum):
    PENDING = "pending"
    PAID = "paid"
    REFUNDED = "refunded"


class Action(enum.StrEnum):
    CONFIRM = "confirm"
    FAIL = "fail"
    EXPIRE = "expire"
    CANCEL = "cancel"
    RESCHEDULE = "reschedule"
    COMPLETE = "complete"
    NO_SHOW = "no_show"


_P, _C = BookingStatus.PENDING, BookingStatus.CONFIRMED

TRANSITIONS: dict[Action, dict[BookingStatus, BookingStatus]] = {
    Action.CONFIRM: {_P: _C},
    Action.FAIL: {_P: BookingStatus.CANCELLED},
    Action.EXPIRE: {_P: BookingStatus.EXPIRED},
    Action.CANCEL: {_P: BookingStatus.CANCELLED, _C: BookingStatus.CANCELLED},
    Action.RESCHEDULE: {_C: _C},
    Action.COMPLETE: {_C: BookingStatus.COMPLETED},
    Action.NO_SHOW: {_C: BookingStatus.NO_SHOW},
}
"""Every allowed transition; anything not listed is refused."""

ALLOWED: dict[Action, frozenset[BookingStatus]] = {
    action: frozenset(moves) for action, moves in TRANSITIONS.items()
}

FINAL = frozenset(
    {
        BookingStatus.CANCELLED,
        BookingStatus.COMPLETED,
        BookingStatus.NO_SHOW,
        BookingStatus.EXPIRED,
    }
)
HOLDS_A_PLACE = frozenset({BookingStatus.PENDING, BookingStatus.CONFIRMED})
"""Statuses in which a booking occupies one place of its slot."""


def transition(
    status: BookingStatus,
    action: Action,
    *,
    starts_at: datetime | None = None,
    now: datetime | None = None,
) -> BookingStatus:
    """The status after ``action``, or ``InvalidTransition`` naming the current status.

    Rescheduling needs the slot not to have started; completing and no-show need it to have
    started (pass ``starts_at`` and ``now`` for those actions).
    """
    target = TRANSITIONS[action].get(status)
    if target is None:
        raise InvalidTransition(status, action)
    if action in _TIMED:
        if starts_at is None or now is None:
            raise ValueError(f"{action.value} needs starts_at and now")
        started = now >= starts_at
        if action is Action.RESCHEDULE and started:
            raise InvalidTransition(status, action, " whose slot has already started")
        if action is not Action.RESCHEDULE and not started:
            raise InvalidTransition(status, action, " whose slot has not started yet")
    return target


_TIMED = frozenset({Action.RESCHEDULE, Action.COMPLETE, Action.NO_SHOW})


# --- refunds ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RefundTier:
    """At least ``notice`` before the start refunds ``percent`` of the price."""

    notice: timedelta
    percent: Decimal

    def __post_init__(self) -> None:
        if self.notice < timedelta(0):
            raise ValueError(f"notice must not be negative, not {self.notice}")
        if not Decimal(0) <= self.percent <= Decimal(100):
            raise ValueError(f"percent must be 0 to 100, not {self.percent}")


@dataclass(frozen=True, slots=True)
class RefundQuote:
    percent: Decimal
    amount: Money
    reason: str


@dataclass(frozen=True, slots=True)
class RefundPolicy:
    """How much a cancellation refunds, by the time left before the slot starts.

    Tiers are checked from the longest notice down; the first whose notice the cancellation
    meets applies (a notice is met when exactly that much time is left). Less notice than
    every tier refunds nothing. An admin cancellation refunds ``admin_percent``; an unpaid
    booking refunds nothing.
    """

    tiers: Sequence[RefundTier] = field(
        default_factory=lambda: (
            RefundTier(timedelta(hours=24), Decimal(100)),
            RefundTier(timedelta(hours=6), Decimal(50)),
        )
    )
    admin_percent: Decimal = Decimal(100)

    def __post_init__(self) -> None:
        ordered = tuple(sorted(self.tiers, key=lambda tier: tier.notice, reverse=True))
        object.__setattr__(self, "tiers", ordered)
        if not Decimal(0) <= self.admin_percent <= Decimal(100):
            raise ValueError(f"admin percent must be 0 to 100, not {self.admin_percent}")

    def quote(
        self, *, price: Money, paid: bool, starts_at: datetime, now: datetime, by_admin: bool
    ) -> RefundQuote:
        zero = Money.of(0, price.currency)
        if not paid:
            return RefundQuote(Decimal(0), zero, "nothing was paid")
        if by_admin:
            return RefundQuote(
                self.admin_percent,
                percent_of(price, self.admin_percent),
                "cancelled by an admin",
            )
        left = starts_at - now
        for tier in self.tiers:
            if left >= tier.notice:
                return RefundQuote(
                    tier.percent,
                    percent_of(price, tier.percent),
                    f"cancelled {_hours(left)} before the start (at least {_hours(tier.notice)})",
                )
        shortest = self.tiers[-1].notice if self.tiers else timedelta(0)
        reason = (
            "cancelled after the start"
            if left < timedelta(0)
            else f"cancelled {_hours(left)} before the start (less than {_hours(shortest)})"
        )
        return RefundQuote(Decimal(0), zero, reason)


def percent_of(price: Money, percent: Decimal) -> Money:
    """``percent`` % of ``price``, rounded half-up to the currency's minor unit."""
    return Money.of(price.amount * percent / Decimal(100), price.currency)


def price_difference(old: Money, new: Money) -> Money:
    """``new - old``: positive when the new slot costs more."""
    if old.currency != new.currency:
        raise InvalidBooking(f"cannot move a booking paid in {old.currency} to {new.currency}")
    return Money.of(new.amount - old.amount, new.currency)


def _hours(span: timedelta) -> str:
    hours = span.total_seconds() / 3600
    return f"{hours:g} h" if hours == int(hours) else f"{hours:.1f} h"
