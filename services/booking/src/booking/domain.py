"""Bookings: their one state machine, the refund policy and price arithmetic.

Pure domain code: no database, no HTTP, no Kafka. Persistence applies the transitions this
module allows (and the database refuses any other, see ``models.py``).

Errors form one small tree::

    BookingError              anything this module refuses
     +-- InvalidTransition    the booking's status does not allow the action (names the status)
     +-- SlotUnavailable      the slot is full, blocked, started, unknown or its room inactive
     +-- BookingNotFound      no booking with that id visible to the caller
     +-- SlotNotFound         no slot with that id
     +-- RoomNotFound         no room with that id known here
     +-- InvalidBooking       a request that can never succeed (another room, bad contact ...)
     +-- IdempotencyConflict  an Idempotency-Key reused for a different request
     +-- Forbidden            a user asking for what only admins may see
     +-- PriceNotCovered      a move to a slot that costs more than was paid (or in another
                              currency)
     +-- TooManyUnpaidHolds   the user already holds as many unpaid bookings as allowed
     +-- RuleBroken           a rule of the room refuses it (names the rule and its limit)
     +-- WaitlistRefused      a waitlist request that cannot be met
     +-- NotInLine            no such entry or offer of the caller in a slot's line

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

Money: a booking is paid once, for the price of its slot when it was booked, and never
charged again. Rescheduling never raises what cancelling refunds: the refund policy counts
the notice to the start the booking had when it was paid (``paid_start``), wherever it was
moved since, and a move to a pricier slot is refused while a move to a cheaper one refunds
the difference (:func:`reprice`). Each refund lives on its own (``RefundStatus``); the
booking's ``PaymentStatus`` sums up its refunds (``PAYMENT_STATUS_OF_REFUNDS``).
"""

from __future__ import annotations

import enum
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Any
from uuid import UUID
from zoneinfo import ZoneInfo

from booking_contracts.catalogue import (
    Actor,
    Contact,
    QuotaPeriod,
    QuotaScope,
    RefundTierRule,
    RoomRules,
    SlotStatus,
)
from booking_contracts.money import Money


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


class RoomNotFound(BookingError):
    pass


class SlotNotFound(BookingError):
    """No slot with that id is known to the booking service."""


class InvalidBooking(BookingError):
    """A request that can never succeed as it stands."""


class IdempotencyConflict(BookingError):
    """An ``Idempotency-Key`` already used for a different request."""


class Forbidden(BookingError):
    """Only admins may do or see this."""


class PriceNotCovered(BookingError):
    """The booking cannot move to a slot that costs more than was paid, or in another currency."""


class TooManyUnpaidHolds(BookingError):
    """The user already holds ``most`` unpaid bookings (or more: the cap was lowered since).

    One more waits until one of them is paid, cancelled or expires: the cap keeps a single
    user from holding every place of a room unpaid, again and again.
    """

    def __init__(self, *, held: int, most: int) -> None:
        self.held = held
        self.most = most
        over = held > most
        allowed = f"more than the {most} allowed" if over else "the most allowed"
        first = held - most + 1 if over else "one"
        super().__init__(f"you hold {held} unpaid bookings, {allowed}; pay or cancel {first} first")


class BookingStatus(enum.StrEnum):
    PENDING = "pending"
    CONFIRMED = "confirmed"
    CANCELLED = "cancelled"
    COMPLETED = "completed"
    NO_SHOW = "no_show"
    EXPIRED = "expired"


class PaymentStatus(enum.StrEnum):
    """Where the booking's money stands; from ``refund_pending`` on it sums up the refunds."""

    PENDING = "pending"
    """Nothing paid yet."""
    PAID = "paid"
    """Paid; nothing returned."""
    REFUND_PENDING = "refund_pending"
    """A refund was asked of the payment service and it has not answered yet."""
    REFUNDED = "refunded"
    """Every refund asked for was made (``refund`` says how much in all)."""
    REFUND_FAILED = "refund_failed"
    """The payment service could not make a refund: an admin has to look (the reason is kept)."""


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


class RefundStatus(enum.StrEnum):
    """The life of one refund, as the payment service reports it."""

    REQUESTED = "requested"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


REFUND_SETTLEMENTS: dict[RefundStatus, frozenset[RefundStatus]] = {
    RefundStatus.REQUESTED: frozenset({RefundStatus.SUCCEEDED, RefundStatus.FAILED}),
    RefundStatus.FAILED: frozenset({RefundStatus.SUCCEEDED}),
}
"""The outcomes each refund status still takes. A failed refund may yet succeed (the payment
service retried it); a succeeded one is final: the money is back."""


def settle_refund(status: RefundStatus, outcome: RefundStatus) -> RefundStatus | None:
    """The refund's status after the payment service reported ``outcome``, or None when the
    report changes nothing (the same outcome again, or any outcome of a finished refund)."""
    if outcome is RefundStatus.REQUESTED:
        raise ValueError("a refund outcome is succeeded or failed")
    return outcome if outcome in REFUND_SETTLEMENTS.get(status, frozenset()) else None


PAYMENT_STATUS_OF_REFUNDS: tuple[tuple[RefundStatus, PaymentStatus], ...] = (
    (RefundStatus.FAILED, PaymentStatus.REFUND_FAILED),
    (RefundStatus.REQUESTED, PaymentStatus.REFUND_PENDING),
    (RefundStatus.SUCCEEDED, PaymentStatus.REFUNDED),
)
"""A booking with refunds has the payment status of the first of these refund statuses any of
its refunds has: one failed refund needs an admin whatever the others did, and a booking is
refunded only when every refund asked for was made."""


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
    """How much a cancellation refunds, by the time left before the start it was paid for.

    Tiers are checked from the longest notice down; the first whose notice the cancellation
    meets applies (a notice is met when exactly that much time is left). Less notice than
    every tier refunds nothing. The notice counts to ``paid_start``, the start the booking
    had when it was paid, not to where a reschedule moved it: moving a booking later never
    raises the refund, moving it earlier never lowers it. Once the slot the booking holds has
    started, cancelling refunds nothing (the place was used or forfeited). An admin
    cancellation refunds ``admin_percent``; an unpaid booking refunds nothing.
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
        self,
        *,
        price: Money,
        paid: bool,
        starts_at: datetime,
        now: datetime,
        by_admin: bool,
        paid_start: datetime | None = None,
    ) -> RefundQuote:
        """What cancelling at ``now`` refunds of ``price``, for a booking in a slot starting at
        ``starts_at`` that started at ``paid_start`` when it was paid (default: the same)."""
        zero = Money.of(0, price.currency)
        if not paid:
            return RefundQuote(Decimal(0), zero, "nothing was paid")
        if by_admin:
            return RefundQuote(
                self.admin_percent,
                percent_of(price, self.admin_percent),
                "cancelled by an admin",
            )
        if now >= starts_at:
            return RefundQuote(Decimal(0), zero, "cancelled after the start")
        basis = paid_start or starts_at
        start = (
            "the start"
            if basis == starts_at
            else f"the start it was paid for ({basis.astimezone(UTC):%Y-%m-%d %H:%M} UTC)"
        )
        left = basis - now
        for tier in self.tiers:
            if left >= tier.notice:
                return RefundQuote(
                    tier.percent,
                    percent_of(price, tier.percent),
                    f"cancelled {_hours(left)} before {start} (at least {_hours(tier.notice)})",
                )
        shortest = self.tiers[-1].notice if self.tiers else timedelta(0)
        reason = (
            f"cancelled after {start}"
            if left < timedelta(0)
            else f"cancelled {_hours(left)} before {start} (less than {_hours(shortest)})"
        )
        return RefundQuote(Decimal(0), zero, reason)


def percent_of(price: Money, percent: Decimal) -> Money:
    """``percent`` % of ``price``, rounded half-up to the currency's minor unit."""
    return Money.of(price.amount * percent / Decimal(100), price.currency)


def reprice(paid: Money, new: Money) -> Money:
    """What moving a booking paid ``paid`` to a slot priced ``new`` refunds: the difference
    when the new slot is cheaper, zero when it costs the same.

    A slot that costs more, or is priced in another currency, is refused: a booking is paid
    once and never charged again, so the move would get more than was paid for (cancel and
    book the other slot instead).
    """
    if new.currency != paid.currency or new.amount > paid.amount:
        raise PriceNotCovered(
            f"the booking was paid {paid} and the new slot costs {new}: a booking can only "
            "move to a slot that costs at most what was paid, in the same currency "
            "(cancel it and book that slot instead)"
        )
    return Money.of(paid.amount - new.amount, paid.currency)


def price_difference(old: Money, new: Money) -> Money:
    """``new - old``: positive when the new slot costs more."""
    if old.currency != new.currency:
        raise InvalidBooking(f"cannot move a booking paid in {old.currency} to {new.currency}")
    return Money.of(new.amount - old.amount, new.currency)


def _hours(span: timedelta) -> str:
    hours = span.total_seconds() / 3600
    return f"{hours:g} h" if hours == int(hours) else f"{hours:.1f} h"


# --- the rules a business sets per room --------------------------------------------------
#
# Rules as data (``BookingRules``) and the checks that read them, with no I/O. What a rule
# refuses is a ``RuleBroken`` naming the rule and its limit. Quotas count live bookings in a
# window of the room's own calendar (``window_around``): a day, an ISO week from Monday or a
# calendar month, from local midnight to local midnight, so a window that a DST change
# crosses is an hour shorter or longer than its nominal length. Counting, and refusing one
# booking over a quota, is the database's job; this module says which window and what the
# refusal reads.


class RuleBroken(BookingError):
    """A room's booking rule refuses the request: ``rule`` names it, ``limit`` states it."""

    def __init__(self, rule: str, limit: str, message: str) -> None:
        self.rule = rule
        self.limit = limit
        self.problem_extensions = {"rule": rule, "limit": limit}
        """Added to the problem body an HTTP refusal answers with."""
        super().__init__(message)


Window = QuotaPeriod
"""A quota's window: a day, an ISO week or a calendar month of the room's calendar."""


@dataclass(frozen=True, slots=True)
class Quota:
    """A user holds at most ``most`` live bookings per ``per`` (of the room's calendar)."""

    most: int
    per: Window
    scope: QuotaScope = QuotaScope.ROOM

    def __post_init__(self) -> None:
        if self.most < 1:
            raise ValueError(f"a quota allows at least 1 booking, not {self.most}")


@dataclass(frozen=True, slots=True)
class Span:
    """A window of the room's calendar: ``[starts_at, ends_at)`` in UTC, and its name."""

    starts_at: datetime
    ends_at: datetime
    label: str

    def __contains__(self, instant: datetime) -> bool:
        return self.starts_at <= instant < self.ends_at


def window_around(instant: datetime, time_zone: str, per: Window) -> Span:
    """The day, ISO week or calendar month of the room's time zone that ``instant`` falls in."""
    zone = ZoneInfo(time_zone)
    day = instant.astimezone(zone).date()
    if per is Window.DAY:
        first, after, label = day, day + timedelta(days=1), f"on {day.isoformat()}"
    elif per is Window.WEEK:
        first = day - timedelta(days=day.weekday())
        after, label = first + timedelta(days=7), f"in the week of {first.isoformat()}"
    else:
        first = day.replace(day=1)
        after = (first + timedelta(days=32)).replace(day=1)
        label = f"in {first:%B %Y}"
    return Span(_local_midnight(first, zone), _local_midnight(after, zone), label)


def _local_midnight(day: date, zone: ZoneInfo) -> datetime:
    """The instant ``day`` begins in ``zone``. Where a DST change skips midnight, the day
    begins when the clocks jump (``fold=0`` reads a skipped time with the offset before)."""
    return datetime.combine(day, time(0), tzinfo=zone).astimezone(UTC)


@dataclass(frozen=True, slots=True)
class BookingRules:
    """What a room asks of a booking; the defaults refuse nothing (today's behaviour).

    A notice is met when at least that much time is left before the start; ``horizon``: a
    slot may be booked at most this far ahead; ``max_reschedules``: moves allowed per
    booking; ``hold`` and ``refund_tiers``: None keeps the booking service's settings."""

    book_notice: timedelta = timedelta(0)
    cancel_notice: timedelta = timedelta(0)
    reschedule_notice: timedelta = timedelta(0)
    horizon: timedelta | None = None
    quotas: tuple[Quota, ...] = ()
    max_reschedules: int | None = None
    hold: timedelta | None = None
    refund_tiers: tuple[RefundTier, ...] | None = None
    offer: timedelta = timedelta(minutes=15)
    """How long a place freed for the first waiter in line is held for them."""

    def __post_init__(self) -> None:
        for name in ("book_notice", "cancel_notice", "reschedule_notice"):
            if getattr(self, name) < timedelta(0):
                raise ValueError(f"{name} must not be negative")
        if self.horizon is not None and self.horizon <= self.book_notice:
            raise ValueError("the horizon must be longer than the notice to book")
        if self.max_reschedules is not None and self.max_reschedules < 0:
            raise ValueError("max_reschedules must not be negative")
        if self.hold is not None and self.hold <= timedelta(0):
            raise ValueError("a hold must last some time")

    def hold_or(self, default: timedelta) -> timedelta:
        """How long an unpaid booking of the room holds its place."""
        return default if self.hold is None else self.hold

    def refunds_or(self, default: RefundPolicy) -> RefundPolicy:
        """The room's refund policy: its tiers, else ``default``'s (an admin's cancellation
        refunds what ``default`` says either way)."""
        if self.refund_tiers is None:
            return default
        return RefundPolicy(tiers=self.refund_tiers, admin_percent=default.admin_percent)

    def check_booking(self, *, starts_at: datetime, now: datetime) -> None:
        """Refuse a booking of a slot starting at ``starts_at`` made at ``now``."""
        _check_notice("book_notice", "bookings", self.book_notice, starts_at=starts_at, now=now)
        if self.horizon is not None and starts_at - now > self.horizon:
            latest = (now + self.horizon).astimezone(UTC)
            raise RuleBroken(
                "horizon",
                _duration(self.horizon),
                f"this room takes bookings at most {_duration(self.horizon)} ahead "
                f"(until {latest:%Y-%m-%d %H:%M} UTC); the slot starts in "
                f"{_duration(starts_at - now)}",
            )

    def check_cancellation(self, *, starts_at: datetime, now: datetime) -> None:
        """Refuse a user's cancellation of a booking starting at ``starts_at``."""
        _check_notice(
            "cancel_notice", "cancellations", self.cancel_notice, starts_at=starts_at, now=now
        )

    def check_reschedule(
        self, *, starts_at: datetime, to_starts_at: datetime, moved: int, now: datetime
    ) -> None:
        """Refuse moving a booking that starts at ``starts_at`` and was moved ``moved`` times
        to a slot starting at ``to_starts_at``: the notice counts to the start it leaves; the
        slot it goes to must be bookable under the rules."""
        if self.max_reschedules is not None and moved >= self.max_reschedules:
            allowed = _count(self.max_reschedules, "time")
            raise RuleBroken(
                "max_reschedules",
                str(self.max_reschedules),
                f"a booking in this room may be moved {allowed}; this one was moved "
                f"{_count(moved, 'time')}",
            )
        _check_notice(
            "reschedule_notice", "moves", self.reschedule_notice, starts_at=starts_at, now=now
        )
        self.check_booking(starts_at=to_starts_at, now=now)


def rules_of(rules: RoomRules) -> BookingRules:
    """The rules a room's ``RoomRulesSet`` carries, as the checks read them."""
    return BookingRules(
        book_notice=timedelta(minutes=rules.book_notice_minutes),
        cancel_notice=timedelta(minutes=rules.cancel_notice_minutes),
        reschedule_notice=timedelta(minutes=rules.reschedule_notice_minutes),
        horizon=_minutes(rules.horizon_minutes),
        quotas=tuple(Quota(q.most, q.per, q.scope) for q in rules.quotas),
        max_reschedules=rules.max_reschedules,
        hold=_minutes(rules.hold_minutes),
        offer=timedelta(minutes=rules.offer_minutes),
        refund_tiers=None
        if rules.refund_tiers is None
        else tuple(
            RefundTier(timedelta(minutes=t.notice_minutes), t.percent) for t in rules.refund_tiers
        ),
    )


def terms_of(rules: BookingRules, refunds: RefundPolicy) -> RoomRules:
    """The part of a room's rules a booking keeps from when it was made (the refund tiers in
    force then: the room's, else ``refunds``'), as the contract writes them."""
    return RoomRules(
        cancel_notice_minutes=_whole_minutes(rules.cancel_notice),
        reschedule_notice_minutes=_whole_minutes(rules.reschedule_notice),
        max_reschedules=rules.max_reschedules,
        refund_tiers=[
            RefundTierRule(notice_minutes=_whole_minutes(tier.notice), percent=tier.percent)
            for tier in rules.refunds_or(refunds).tiers
        ],
    )


def _whole_minutes(span: timedelta) -> int:
    return int(span.total_seconds() // 60)


def _minutes(minutes: int | None) -> timedelta | None:
    return None if minutes is None else timedelta(minutes=minutes)


def quota_refusal(quota: Quota, *, used: int, span: Span, room: str) -> RuleBroken | None:
    """The refusal of one more booking when the user has ``used`` live bookings counted by
    ``quota`` in ``span``; ``room``: how the message names where the quota applies (the
    room's name, or its type for a quota per room type)."""
    if used < quota.most:
        return None
    where = f"rooms of type '{room}'" if quota.scope is QuotaScope.ROOM_TYPE else f"room '{room}'"
    return RuleBroken(
        f"quota_per_{quota.per.value}",
        f"{quota.most} per {quota.per.value}",
        f"{where} allow{'' if quota.scope is QuotaScope.ROOM_TYPE else 's'} "
        f"{_count(quota.most, 'booking')} per {quota.per.value}; you have {used} {span.label}",
    )


@dataclass(frozen=True, slots=True)
class QuotaWindow:
    """One count a booking adds to: its ``quota``, the ``scope`` the count is kept under (the
    room or its type, and the window's length), the ``span`` of the room's calendar it falls
    in, and ``where``, how a refusal names the room or type."""

    quota: Quota
    scope: str
    span: Span
    where: str


def quota_windows(room: Room, starts_at: datetime) -> list[QuotaWindow]:
    """The counts a booking of ``room`` in a slot starting at ``starts_at`` adds to, one per
    quota of the room, in one order (the order their rows are locked in)."""
    windows = []
    for quota in room.rules.quotas:
        if quota.scope is QuotaScope.ROOM_TYPE:
            scope, where = f"room_type:{room.room_type}", room.room_type
        else:
            scope, where = f"room:{room.id}", room.name
        span = window_around(starts_at, room.time_zone, quota.per)
        windows.append(QuotaWindow(quota, f"{scope}:{quota.per.value}", span, where))
    return sorted(windows, key=lambda w: (w.scope, w.span.starts_at))


def local_day(day: date, time_zone: str) -> Span:
    """``day`` of the room's calendar, from local midnight to local midnight."""
    zone = ZoneInfo(time_zone)
    after = day + timedelta(days=1)
    return Span(_local_midnight(day, zone), _local_midnight(after, zone), f"on {day.isoformat()}")


def bookable(
    slots: Sequence[Slot],
    room: Room,
    *,
    now: datetime,
    held: Collection[UUID],
    used: Mapping[tuple[str, datetime], int],
) -> list[Slot]:
    """The slots of ``room`` a user could book at ``now``: open, started later, with a place
    left, not among those the user ``held`` already, within the room's notice and horizon,
    and under each of its quotas by what the user ``used`` (per scope and window start)."""
    found = []
    for slot in slots:
        if (
            slot.id in held
            or slot.status != SlotStatus.OPEN
            or slot.booked_count >= slot.max_bookings
            or slot.starts_at <= now
        ):
            continue
        try:
            room.rules.check_booking(starts_at=slot.starts_at, now=now)
        except RuleBroken:
            continue
        windows = quota_windows(room, slot.starts_at)
        if any(used.get((w.scope, w.span.starts_at), 0) >= w.quota.most for w in windows):
            continue
        found.append(slot)
    return found


def _check_notice(
    rule: str, what: str, notice: timedelta, *, starts_at: datetime, now: datetime
) -> None:
    left = starts_at - now
    if left < notice:
        raise RuleBroken(
            rule,
            _duration(notice),
            f"{what} in this room need at least {_duration(notice)} notice; the slot starts "
            + (f"in {_duration(left)}" if left > timedelta(0) else "now or has started"),
        )


def _duration(span: timedelta) -> str:
    """``2 h``, ``90 min``, ``60 days``: the largest unit that says it exactly."""
    minutes = int(span.total_seconds() // 60)
    if minutes % (24 * 60) == 0 and minutes >= 24 * 60:
        return f"{minutes // (24 * 60)} days" if minutes != 24 * 60 else "1 day"
    if minutes % 60 == 0 and minutes >= 60:
        return f"{minutes // 60} h"
    return f"{minutes} min"


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


# --- the waitlist ------------------------------------------------------------------------
#
# A user queues for a full slot. When a place of it frees, the place is not given back to
# sale: it is offered to the first waiter in line and held for them (the slot's booked count
# does not go down) until they book it, decline, or let the offer lapse; then the next waiter
# gets it, and once nobody waits the place goes back to sale. A waiter who holds a live
# booking at the slot's time by then (got a place another way) is skipped. The line closes
# when the slot starts. This section is the rules as data; the store runs them under the
# slot's row lock, so one freed place is offered once, to one waiter, in order.


class WaitlistStatus(enum.StrEnum):
    WAITING = "waiting"
    """In line."""
    OFFERED = "offered"
    """A freed place is held for them until the offer runs out."""
    BOOKED = "booked"
    """They took the offer: a pending booking of theirs holds the place."""
    LEFT = "left"
    """They left the line, or declined the offer."""
    LAPSED = "lapsed"
    """They let the offer run out."""
    SKIPPED = "skipped"
    """Passed over when a place freed: they held a booking at the slot's time by then."""
    EXPIRED = "expired"
    """The slot started while they were in line."""


LIVE_WAITLIST: tuple[WaitlistStatus, ...] = (WaitlistStatus.WAITING, WaitlistStatus.OFFERED)
"""An entry in these holds the user's one place in the slot's line."""

WAITLIST_TRANSITIONS: dict[WaitlistStatus, frozenset[WaitlistStatus]] = {
    WaitlistStatus.WAITING: frozenset(
        {
            WaitlistStatus.OFFERED,
            WaitlistStatus.LEFT,
            WaitlistStatus.SKIPPED,
            WaitlistStatus.EXPIRED,
        }
    ),
    WaitlistStatus.OFFERED: frozenset(
        {
            WaitlistStatus.BOOKED,
            WaitlistStatus.LEFT,
            WaitlistStatus.LAPSED,
            WaitlistStatus.EXPIRED,
        }
    ),
}
"""Every change of an entry's status; the other statuses are final."""


class NotInLine(BookingError):
    """The caller has no such entry (or offer) in the slot's line."""


class WaitlistRefused(BookingError):
    """A waitlist request that cannot be met (the slot has places to book, has started, the
    user is in line already or booked it, or the entry cannot change so)."""


def change_waitlist(status: WaitlistStatus, to: WaitlistStatus) -> WaitlistStatus:
    """``to``, if an entry in ``status`` may become it."""
    if to not in WAITLIST_TRANSITIONS.get(status, frozenset()):
        raise WaitlistRefused(f"a waitlist entry that is {status} cannot become {to}")
    return to


@dataclass(frozen=True, slots=True)
class Waiter:
    """An entry in line: who, and their place in it (lower ``seq``: earlier)."""

    entry_id: UUID
    user_id: str
    seq: int


@dataclass(frozen=True, slots=True)
class NextOffer:
    """Who a freed place goes to: ``offer_to`` (None: nobody waits, the place goes back to
    sale), and the waiters ahead of them passed over."""

    offer_to: Waiter | None
    skipped: tuple[Waiter, ...]


def next_offer(waiting: Sequence[Waiter], *, busy: Collection[str]) -> NextOffer:
    """The first waiter in line (by ``seq``) who is not ``busy`` (holds no live booking at the
    slot's time); the busy ones before them are skipped. Waiters after the one offered keep
    their place in line."""
    skipped: list[Waiter] = []
    for waiter in sorted(waiting, key=lambda w: w.seq):
        if waiter.user_id in busy:
            skipped.append(waiter)
            continue
        return NextOffer(waiter, tuple(skipped))
    return NextOffer(None, tuple(skipped))


def offer_expires_at(now: datetime, offer: timedelta, starts_at: datetime) -> datetime:
    """When an offer made at ``now`` lapses: after ``offer``, and never after the start."""
    return min(now + offer, starts_at)


def check_joining(
    *, starts_at: datetime, now: datetime, places_left: int, in_line: int, most: int
) -> None:
    """Refuse joining a slot's line when it has started, still has a place to book, or the
    user is in ``in_line`` lines already, ``most`` being the cap."""
    if starts_at <= now:
        raise WaitlistRefused("the slot has started: its waitlist is closed")
    if places_left > 0:
        raise WaitlistRefused(
            f"the slot has {_count(places_left, 'place')} left: book it instead of waiting"
        )
    if in_line >= most:
        raise WaitlistRefused(
            f"you wait for {_count(in_line, 'slot')}, the most allowed; leave a line first"
        )


# --- the aggregates, as the store hands them over ---------------------------------------


@dataclass(frozen=True, slots=True)
class Slot:
    id: UUID
    room_id: UUID
    starts_at: datetime
    ends_at: datetime
    price: Money
    max_bookings: int
    booked_count: int
    status: str


@dataclass(frozen=True, slots=True)
class Room:
    id: UUID
    name: str
    time_zone: str
    active: bool
    room_type: str = ""
    """Empty until a snapshot of the room arrived (a deactivation seen first)."""
    rules: BookingRules = field(default_factory=BookingRules)
    """The rules of the newest ``RoomRulesSet`` applied; none refuse anything before one."""


@dataclass(frozen=True, slots=True)
class WaitlistEntry:
    id: UUID
    seq: int
    """Its place in the order of every line (lower: earlier)."""
    slot_id: UUID
    room_id: UUID
    user_id: str
    contact: Contact
    status: WaitlistStatus
    offer_expires_at: datetime | None
    booking_id: UUID | None
    created_at: datetime

    def waiter(self) -> Waiter:
        return Waiter(self.id, self.user_id, self.seq)


@dataclass(frozen=True, slots=True)
class Booking:
    id: UUID
    user_id: str
    room_id: UUID
    slot_id: UUID
    starts_at: datetime
    ends_at: datetime
    status: BookingStatus
    booking_type: str
    price: Money
    payment_status: PaymentStatus
    payment_id: str | None
    refund: Money | None
    refund_basis_starts_at: datetime | None
    """The start the booking had when it was paid: what the refund policy counts notice to."""
    refund_failure_reason: str | None
    notes: str
    attributes: dict[str, Any]
    contact: Contact
    hold_expires_at: datetime
    created_at: datetime
    updated_at: datetime
    cancelled_at: datetime | None
    cancellation_reason: str | None
    cancelled_by: Actor | None
    idempotency_key: str | None
    request_fingerprint: str | None
    version: int
    """1 when made, one more after every update (counted by the database: migration 0007);
    every event about the booking carries the version after its change."""
    reschedules: int = 0
    """How many times the booking was moved."""
    terms: BookingRules | None = None
    """The rules of its room it was made under, as far as they bind it after it was made:
    the notices to cancel and to move, the moves allowed and the refund tiers (None: a
    booking made before terms were kept, which follows its room's rules now)."""


# --- what the store is given and gives back -----------------------------------------


@dataclass(frozen=True)
class Place:
    """A place taken: its slot, and the slot's room with the rules it was taken under."""

    slot: Slot
    room: Room


def already_holds(slot_id: UUID) -> SlotUnavailable:
    return SlotUnavailable(f"you already hold a place in slot {slot_id}")


def why_unavailable(slot: Slot, room: Room | None, now: datetime) -> Exception | None:
    """Why a place of ``slot`` (of ``room``, None when not known here) cannot be taken at
    ``now``; None when nothing stands in the way."""
    if room is None or not room.name:
        return SlotUnavailable(f"the room of slot {slot.id} is not known here yet")
    if not room.active:
        return SlotUnavailable(f"room {room.name!r} takes no bookings (inactive)")
    if slot.starts_at <= now:
        return SlotUnavailable(f"slot {slot.id} has already started")
    if slot.status != SlotStatus.OPEN:
        return SlotUnavailable(f"slot {slot.id} is {slot.status}")
    try:
        room.rules.check_booking(starts_at=slot.starts_at, now=now)
    except RuleBroken as broken:
        return broken
    if slot.booked_count >= slot.max_bookings:
        return slot_full(slot.id, slot.max_bookings)
    return None


def slot_full(slot_id: UUID, places: int) -> SlotUnavailable:
    return SlotUnavailable(f"slot {slot_id} is full ({places} place{'' if places == 1 else 's'})")


@dataclass(frozen=True)
class Taken:
    """What the store's ``take_places`` took."""

    places: dict[UUID, tuple[Place, int]]
    """Per slot that gave any: the slot with its room, and how many places it gave."""
    full: dict[UUID, int]
    """Per slot that takes bookings but had fewer places left than wanted (locked, so this
    is so until the transaction ends): its number of places."""


@dataclass(frozen=True, slots=True)
class PendingBooking:
    """A new booking, held unpaid in ``slot`` until ``hold_expires_at``."""

    id: UUID
    user_id: str
    slot: Slot
    booking_type: str
    notes: str
    attributes: dict[str, Any]
    contact: Contact
    hold_expires_at: datetime
    idempotency_key: str | None
    request_fingerprint: str | None
    terms: RoomRules | None = None
    """The rules of its room that bind it once made (:func:`terms_of`)."""


@dataclass(frozen=True, slots=True)
class BookingFilter:
    user_id: str | None = None
    room_id: UUID | None = None
    statuses: tuple[BookingStatus, ...] = ()
    payment_statuses: tuple[PaymentStatus, ...] = ()
    starts_from: datetime | None = None
    starts_before: datetime | None = None


@dataclass(frozen=True, slots=True)
class Refund:
    """A refund asked of the payment service, as far as its outcome needs it."""

    id: UUID
    booking_id: UUID
    payment_id: str
    amount: Money
    status: RefundStatus


@dataclass(frozen=True, slots=True)
class StrayPayment:
    """A payment no booking took, and the refund that returns it in full."""

    payment_id: str
    booking_id: UUID
    """The booking the payment named (which may not exist)."""
    amount: Money
    reason: str
    refund_id: UUID
    refund_status: RefundStatus
    failure_reason: str | None
