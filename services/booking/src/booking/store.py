"""SQL of the booking service. Every function runs in the caller's transaction."""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import Any
from uuid import UUID

from sqlalchemy import (
    ARRAY,
    ColumnElement,
    DateTime,
    Integer,
    Numeric,
    Row,
    String,
    Text,
    Uuid,
    and_,
    bindparam,
    case,
    delete,
    func,
    insert,
    literal,
    or_,
    select,
    text,
    tuple_,
    update,
)
from sqlalchemy.dialects.postgresql import aggregate_order_by
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.exc import IntegrityError

from booking import domain
from booking.domain import (
    LIVE_WAITLIST,
    PAYMENT_STATUS_OF_REFUNDS,
    Booking,
    BookingFilter,
    BookingStatus,
    PaymentStatus,
    PendingBooking,
    Place,
    Refund,
    RefundStatus,
    Room,
    Slot,
    StrayPayment,
    Taken,
    WaitlistEntry,
    WaitlistStatus,
)
from booking.models import (
    booking_quotas,
    bookings,
    quota_counts,
    refunds,
    rooms,
    slots,
    stray_payments,
    waitlist_entries,
)
from booking_contracts.catalogue import (
    Actor,
    Contact,
    RoomRules,
    RoomSnapshot,
    SlotSnapshot,
    SlotStatus,
)
from booking_contracts.money import Money
from platform_runtime.db import (
    reported_detail,
    sql_literal,
    status_in,
    status_is,
    violated_constraint,
)
from platform_runtime.transactions import SessionStore

# --- inventory -------------------------------------------------------------------------


def room_of(row: Row[Any], prefix: str = "") -> Room:
    """The room of a row of ``rooms``, or of its columns labelled ``<prefix><column>``."""
    v = row._mapping
    rules = v[f"{prefix}rules"]
    return Room(
        id=v[f"{prefix}id"],
        name=v[f"{prefix}name"],
        time_zone=v[f"{prefix}time_zone"],
        active=v[f"{prefix}active"],
        room_type=v[f"{prefix}room_type"],
        rules=domain.rules_of(
            RoomRules.model_validate_json(rules)  # as text() returns it
            if isinstance(rules, str)
            else RoomRules.model_validate(rules)
        ),
    )


def _room_is_older(new: Any) -> ColumnElement[bool]:
    """The copy's ``(version, time)`` is below the event's: versions decide, and the envelope
    time only between events that had no version (0)."""
    return tuple_(rooms.c.version, rooms.c.active_as_of) < tuple_(new.version, new.active_as_of)


_UPSERT_SLOTS = text(
    """
    INSERT INTO slots AS s
        (id, room_id, starts_at, ends_at, price, currency, max_bookings, status, revision)
    SELECT * FROM unnest(:ids, :room_ids, :starts, :ends, :prices, :currencies,
                         :max_bookings, :statuses, :revisions)
    ON CONFLICT (id) DO UPDATE SET
        starts_at = excluded.starts_at, ends_at = excluded.ends_at, price = excluded.price,
        currency = excluded.currency, max_bookings = excluded.max_bookings,
        status = excluded.status, revision = excluded.revision, updated_at = now()
    WHERE s.revision < excluded.revision
    """
).bindparams(
    bindparam("ids", type_=ARRAY(Uuid)),
    bindparam("room_ids", type_=ARRAY(Uuid)),
    bindparam("starts", type_=ARRAY(DateTime(timezone=True))),
    bindparam("ends", type_=ARRAY(DateTime(timezone=True))),
    bindparam("prices", type_=ARRAY(Numeric(19, 4))),
    bindparam("currencies", type_=ARRAY(String)),
    bindparam("max_bookings", type_=ARRAY(Integer)),
    bindparam("statuses", type_=ARRAY(String)),
    bindparam("revisions", type_=ARRAY(Integer)),
)


def slot_of(row: Row[Any]) -> Slot:
    v = row._mapping
    return Slot(
        id=v["id"],
        room_id=v["room_id"],
        starts_at=v["starts_at"],
        ends_at=v["ends_at"],
        price=Money.of(v["price"], v["currency"]),
        max_bookings=v["max_bookings"],
        booked_count=v["booked_count"],
        status=v["status"],
    )


def _takes_the_booking(now: Any) -> list[ColumnElement[bool]]:
    """The slot's room (joined as ``rooms``) is known and active, and its rules take a booking
    of the slot made at ``now``: at least ``book_notice`` before the start, at most
    ``horizon`` ahead."""
    return [
        rooms.c.id == slots.c.room_id,
        rooms.c.active,
        rooms.c.name != "",
        slots.c.starts_at >= now + rooms.c.book_notice,
        or_(rooms.c.horizon.is_(None), slots.c.starts_at <= now + rooms.c.horizon),
    ]


_ROOM_OF_SLOT = (
    rooms.c.name.label("room_name"),
    rooms.c.time_zone.label("room_time_zone"),
    rooms.c.active.label("room_active"),
    rooms.c.room_type.label("room_room_type"),
    rooms.c.rules.label("room_rules"),
)
"""The columns of a slot's room read with the slot, named as :func:`place_of` reads them."""


def place_of(row: Row[Any]) -> Place:
    return Place(slot_of(row), room_of(row, prefix="room_"))


_TAKE_NOW = bindparam("take_now", type_=DateTime(timezone=True))
_TAKE_PLACE = (
    update(slots)
    .where(
        slots.c.id == bindparam("take_slot_id", type_=Uuid),
        status_is(slots.c.status, SlotStatus.OPEN),
        slots.c.booked_count < slots.c.max_bookings,
        slots.c.starts_at > _TAKE_NOW,
        *_takes_the_booking(_TAKE_NOW),
    )
    .values(booked_count=slots.c.booked_count + 1, updated_at=func.now())
    .returning(*slots.c, *_ROOM_OF_SLOT)
)
"""Built once: a statement built per call costs its cache key on every call. Its ``WHERE``
names ``rooms``: an ``UPDATE ... FROM rooms``, which returns the room beside the slot."""


_TAKE_PLACES = text(
    f"""
    UPDATE slots AS s SET booked_count = s.booked_count + w.n, updated_at = now()
    FROM unnest(:ids, :counts) AS w(id, n), rooms AS r
    WHERE s.id = w.id AND r.id = s.room_id AND s.status = {sql_literal(SlotStatus.OPEN)}
      AND s.booked_count + w.n <= s.max_bookings AND s.starts_at > :now
    RETURNING s.*, r.name AS room_name, r.time_zone AS room_time_zone,
        r.active AS room_active, r.room_type AS room_room_type, r.rules AS room_rules
    """  # noqa: S608 (constants)
).bindparams(
    bindparam("ids", type_=ARRAY(Uuid)),
    bindparam("counts", type_=ARRAY(Integer)),
    bindparam("now", type_=DateTime(timezone=True)),
)


_RELEASE_PLACES = text(
    """
    UPDATE slots AS s
    SET booked_count = s.booked_count - given.places, updated_at = now()
    FROM unnest(:slot_ids, :places) AS given(slot_id, places)
    WHERE s.id = given.slot_id
    """
).bindparams(bindparam("slot_ids", type_=ARRAY(Uuid)), bindparam("places", type_=ARRAY(Integer)))


# --- bookings --------------------------------------------------------------------------


def booking_of(row: Row[Any]) -> Booking:
    v = row._mapping
    currency = v["currency"]
    refund = v["refund_amount"]
    return Booking(
        id=v["id"],
        user_id=v["user_id"],
        room_id=v["room_id"],
        slot_id=v["slot_id"],
        starts_at=v["starts_at"],
        ends_at=v["ends_at"],
        status=BookingStatus(v["status"]),
        booking_type=v["booking_type"],
        price=Money.of(v["price"], currency),
        payment_status=PaymentStatus(v["payment_status"]),
        payment_id=v["payment_id"],
        refund=Money.of(refund, currency) if refund is not None else None,
        refund_basis_starts_at=v["refund_basis_starts_at"],
        refund_failure_reason=v["refund_failure_reason"],
        notes=v["notes"],
        attributes=v["attributes"],
        # validated when the booking was made: not parsed again on every read
        contact=Contact.model_construct(email=v["contact_email"], phone=v["contact_phone"]),
        hold_expires_at=v["hold_expires_at"],
        created_at=v["created_at"],
        updated_at=v["updated_at"],
        cancelled_at=v["cancelled_at"],
        cancellation_reason=v["cancellation_reason"],
        cancelled_by=Actor(v["cancelled_by"]) if v["cancelled_by"] else None,
        idempotency_key=v["idempotency_key"],
        request_fingerprint=v["request_fingerprint"],
        version=v["version"],
        reschedules=v["reschedules"],
        terms=None if v["terms"] is None else domain.rules_of(RoomRules.model_validate(v["terms"])),
    )


def _columns(booking: PendingBooking) -> dict[str, Any]:
    return {
        "id": booking.id,
        "user_id": booking.user_id,
        "room_id": booking.slot.room_id,
        "slot_id": booking.slot.id,
        "starts_at": booking.slot.starts_at,
        "ends_at": booking.slot.ends_at,
        "status": BookingStatus.PENDING.value,
        "booking_type": booking.booking_type,
        "price": booking.slot.price.amount,
        "currency": booking.slot.price.currency,
        "payment_status": PaymentStatus.PENDING.value,
        "notes": booking.notes,
        "attributes": booking.attributes,
        "contact_email": booking.contact.email,
        "contact_phone": booking.contact.phone,
        "hold_expires_at": booking.hold_expires_at,
        "idempotency_key": booking.idempotency_key,
        "request_fingerprint": booking.request_fingerprint,
        "terms": None if booking.terms is None else booking.terms.model_dump(mode="json"),
    }


_INSERT_BOOKING = insert(bookings).returning(*bookings.c)
"""The row's values come as parameters: compiled once per set of columns."""


# --- the cap on unpaid holds -----------------------------------------------------------
#
# The database counts and refuses (migration 0004): before a pending booking is inserted,
# the trigger ``bookings_cap_unpaid_holds`` locks its user's holds (``lock_unpaid_holds``, an
# advisory lock held to commit), counts the user's pending bookings and refuses one more
# than the cap the transaction states in ``booking.max_unpaid_holds``; a transaction that
# states none (an admin's own booking, an operator) is not capped. A hold stops counting
# when it is paid, cancelled or expires: nothing else has to remember it.

UNPAID_HOLDS_CAP = "unpaid_holds_within_cap"
"""The name under which the database refuses a hold over the cap."""

_STATE_CAP = text("SELECT set_config('booking.max_unpaid_holds', :most, true)")


@contextmanager
def _refused_over_the_cap(most: int | None) -> Iterator[None]:
    try:
        yield
    except IntegrityError as exc:
        if most is None or violated_constraint(exc) != UNPAID_HOLDS_CAP:
            raise
        held = int(reported_detail(exc) or most)
        raise domain.TooManyUnpaidHolds(held=held, most=most) from exc


_LOCK_UNPAID_HOLDS = text("SELECT lock_unpaid_holds(:users)").bindparams(
    bindparam("users", type_=ARRAY(String))
)


# --- idempotency keys ------------------------------------------------------------------

_LOCK_KEYS = text(
    """
    SELECT pg_advisory_xact_lock(lock_key)
    FROM (
        SELECT DISTINCT hashtextextended('booking idempotency key:' || u || chr(10) || k, 0)
            AS lock_key
        FROM unnest(:users, :keys) AS pairs(u, k)
    ) AS locks
    ORDER BY lock_key
    """
).bindparams(bindparam("users", type_=ARRAY(String)), bindparam("keys", type_=ARRAY(String)))


_CONFIRM_PAID = text(
    """
    UPDATE bookings AS b
    SET status = :confirmed, payment_status = :paid, payment_id = p.payment_id,
        refund_basis_starts_at = b.starts_at, updated_at = now()
    FROM unnest(:ids, :payment_ids) AS p(id, payment_id)
    WHERE b.id = p.id AND b.status = :pending AND b.payment_id IS NULL
    RETURNING b.id, b.version
    """
).bindparams(
    bindparam("ids", type_=ARRAY(Uuid)),
    bindparam("payment_ids", type_=ARRAY(String)),
    confirmed=BookingStatus.CONFIRMED.value,
    paid=PaymentStatus.PAID.value,
    pending=BookingStatus.PENDING.value,
)


# --- refunds ---------------------------------------------------------------------------


# --- stray payments --------------------------------------------------------------------


def stray_payment_of(row: Row[Any]) -> StrayPayment:
    v = row._mapping
    return StrayPayment(
        payment_id=v["payment_id"],
        booking_id=v["booking_id"],
        amount=Money.of(v["amount"], v["currency"]),
        reason=v["reason"],
        refund_id=v["refund_id"],
        refund_status=RefundStatus(v["refund_status"]),
        failure_reason=v["failure_reason"],
    )


# --- the waitlist ------------------------------------------------------------------------


def entry_of(row: Row[Any]) -> WaitlistEntry:
    v = row._mapping
    return WaitlistEntry(
        id=v["id"],
        seq=v["seq"],
        slot_id=v["slot_id"],
        room_id=v["room_id"],
        user_id=v["user_id"],
        contact=Contact.model_construct(email=v["contact_email"], phone=v["contact_phone"]),
        status=WaitlistStatus(v["status"]),
        offer_expires_at=v["offer_expires_at"],
        booking_id=v["booking_id"],
        created_at=v["created_at"],
    )


_LOCK_LINES = text("SELECT pg_advisory_xact_lock(hashtextextended('waitlist:' || :user_id, 0))")


class SqlStore(SessionStore):
    """The booking service's state in its PostgreSQL database (the
    :class:`booking.handlers.Store` of its use cases): every method runs in the session's
    transaction."""

    async def upsert_room(self, room: RoomSnapshot, *, version: int, as_of: datetime) -> None:
        """Apply a room's snapshot (``version`` 0: an event that had none) if it is newer than the
        copy: name, zone and ``active`` follow the newest event (see :data:`models.rooms`). A
        placeholder left by a deactivation seen first takes the name and zone of any snapshot."""
        statement = pg_insert(rooms).values(
            id=room.room_id,
            name=room.name,
            time_zone=room.time_zone,
            room_type=room.room_type.value,
            active=room.active,
            active_as_of=as_of,
            version=version,
        )
        new = statement.excluded
        newer = _room_is_older(new)
        named = or_(newer, rooms.c.name == "")
        statement = statement.on_conflict_do_update(
            index_elements=[rooms.c.id],
            set_={
                "name": case((named, new.name), else_=rooms.c.name),
                "time_zone": case((named, new.time_zone), else_=rooms.c.time_zone),
                "room_type": case((named, new.room_type), else_=rooms.c.room_type),
                "active": case((newer, new.active), else_=rooms.c.active),
                "active_as_of": case((newer, new.active_as_of), else_=rooms.c.active_as_of),
                "version": case((newer, new.version), else_=rooms.c.version),
                "updated_at": func.now(),
            },
        )
        await self.session.execute(statement)

    async def deactivate_room(self, room_id: UUID, *, version: int, as_of: datetime) -> None:
        """Mark the room inactive unless a newer event already set its state.

        A deactivation seen before the room itself leaves a placeholder row (no name yet) that
        the room's snapshot fills in later.
        """
        statement = pg_insert(rooms).values(
            id=room_id, name="", time_zone="UTC", active=False, active_as_of=as_of, version=version
        )
        new = statement.excluded
        statement = statement.on_conflict_do_update(
            index_elements=[rooms.c.id],
            set_={
                "active": False,
                "active_as_of": new.active_as_of,
                "version": new.version,
                "updated_at": func.now(),
            },
            where=_room_is_older(new),
        )
        await self.session.execute(statement)

    async def set_room_rules(
        self, room_id: UUID, rules: RoomRules, *, version: int, as_of: datetime
    ) -> None:
        """Apply a room's rules if their version is above the copy's ``rules_version``: rules
        follow their own events, whatever the room's snapshots do. Rules seen before the room
        itself leave a placeholder row (no name yet: it takes no bookings) that its snapshot
        fills in."""
        statement = pg_insert(rooms).values(
            id=room_id,
            name="",
            time_zone="UTC",
            active=False,
            active_as_of=as_of,
            version=0,
            rules=rules.model_dump(mode="json"),
            rules_version=version,
        )
        new = statement.excluded
        statement = statement.on_conflict_do_update(
            index_elements=[rooms.c.id],
            set_={"rules": new.rules, "rules_version": new.rules_version, "updated_at": func.now()},
            where=rooms.c.rules_version < new.rules_version,
        )
        await self.session.execute(statement)

    async def upsert_slots(self, snapshots: Sequence[SlotSnapshot]) -> None:
        """Insert new slots and apply newer revisions of known ones; older revisions are dropped.

        The booked count is this service's own and never comes from a snapshot.
        """
        ordered = sorted(snapshots, key=lambda s: s.slot_id)  # one lock order: no deadlocks
        await self.session.execute(
            _UPSERT_SLOTS,
            {
                "ids": [s.slot_id for s in ordered],
                "room_ids": [s.room_id for s in ordered],
                "starts": [s.starts_at for s in ordered],
                "ends": [s.ends_at for s in ordered],
                "prices": [s.price.amount for s in ordered],
                "currencies": [s.price.currency for s in ordered],
                "max_bookings": [s.max_bookings for s in ordered],
                "statuses": [s.status.value for s in ordered],
                "revisions": [s.revision for s in ordered],
            },
        )

    async def take_place(self, slot_id: UUID, *, now: datetime) -> Place:
        """Take one place of the slot, or raise why not. One conditional ``UPDATE``: concurrent
        requests queue on the slot's row and each sees the count the previous one left."""
        given = {"take_slot_id": slot_id, "take_now": now}
        for _ in range(3):
            row = (await self.session.execute(_TAKE_PLACE, given)).first()
            if row is not None:
                return place_of(row)
            reason = await self._why_unavailable(slot_id, now)
            if reason is not None:
                raise reason
            # nothing explains it any more: what stood in the way (e.g. the room, arriving just
            # now) changed between the UPDATE and the look at why; try again
        raise domain.SlotUnavailable(f"slot {slot_id} is changing right now; try again")

    async def _why_unavailable(self, slot_id: UUID, now: datetime) -> Exception | None:
        slot = await self.get_slot(slot_id)
        return domain.why_unavailable(slot, await self.get_room(slot.room_id), now)

    async def take_places(self, wanted: Mapping[UUID, int], *, now: datetime) -> Taken:
        """Take up to ``wanted[slot]`` places of each slot: as many as it has left.

        Two statements: the slots are locked in id order (one lock order for every writer: no
        deadlocks) and read, then the places they can give are taken in one ``UPDATE`` under
        the same conditions as ``take_place``; ``booked_count <= max_bookings`` holds
        whatever happens (a CHECK constraint).
        """
        ids = sorted(wanted)
        locked = await self.session.execute(
            select(slots.c.id, slots.c.booked_count, slots.c.max_bookings)
            .where(
                slots.c.id.in_(ids),
                status_is(slots.c.status, SlotStatus.OPEN),
                slots.c.starts_at > now,
                *_takes_the_booking(literal(now, DateTime(timezone=True))),
                # a room with quotas counts each booking in its own statement: made alone
                func.coalesce(func.jsonb_array_length(rooms.c.rules["quotas"]), 0) == 0,
            )
            .order_by(slots.c.id)
            .with_for_update(of=slots)
        )
        grants: dict[UUID, int] = {}
        full: dict[UUID, int] = {}
        for row in locked:
            left = max(row.max_bookings - row.booked_count, 0)
            if left > 0:
                grants[row.id] = min(wanted[row.id], left)
            if wanted[row.id] > left:
                full[row.id] = row.max_bookings
        if not grants:
            return Taken({}, full)
        granted = sorted(grants)
        rows = await self.session.execute(
            _TAKE_PLACES, {"ids": granted, "counts": [grants[i] for i in granted], "now": now}
        )
        return Taken(
            {place.slot.id: (place, grants[place.slot.id]) for place in map(place_of, rows)}, full
        )

    async def count_against_quotas(
        self, booking: Booking, windows: Sequence[domain.QuotaWindow]
    ) -> domain.RuleBroken | None:
        """Count the booking against each of its room's quotas, or say which one it would break.

        One conditional upsert per quota: a count below the limit goes up by one, a count at it
        stays and refuses. Concurrent requests of one user queue on the count's row (locked in
        the order of ``windows``) and each sees what the previous one left, so no quota is ever
        exceeded. A refusal leaves the transaction to be rolled back (its place and booking
        with it)."""
        for window in windows:
            key = {
                "user_id": booking.user_id,
                "scope": window.scope,
                "window_starts_at": window.span.starts_at,
            }
            upsert = pg_insert(quota_counts).values(**key, used=1)
            counted = upsert.on_conflict_do_update(
                index_elements=list(key),
                set_={"used": quota_counts.c.used + 1},
                where=quota_counts.c.used < window.quota.most,
            ).returning(quota_counts.c.used)
            if (await self.session.execute(counted)).first() is None:
                used = await self.session.scalar(
                    select(quota_counts.c.used).where(
                        *(quota_counts.c[name] == value for name, value in key.items())
                    )
                )
                return domain.quota_refusal(
                    window.quota, used=used or 0, span=window.span, room=window.where
                )
        if windows:
            await self.session.execute(
                insert(booking_quotas),
                [
                    {
                        "booking_id": booking.id,
                        "user_id": booking.user_id,
                        "scope": window.scope,
                        "window_starts_at": window.span.starts_at,
                    }
                    for window in windows
                ],
            )
        return None

    async def release_quotas(self, booking_ids: Sequence[UUID]) -> None:
        """Give back what these bookings counted against quotas, once: the rows that say what
        they counted are deleted as the counts go down (in one lock order)."""
        gone = await self.session.execute(
            delete(booking_quotas)
            .where(booking_quotas.c.booking_id.in_(sorted(set(booking_ids))))
            .returning(
                booking_quotas.c.user_id, booking_quotas.c.scope, booking_quotas.c.window_starts_at
            )
        )
        counts = Counter(tuple(row) for row in gone)
        for user_id, scope, starts_at in sorted(counts):
            await self.session.execute(
                update(quota_counts)
                .where(
                    quota_counts.c.user_id == user_id,
                    quota_counts.c.scope == scope,
                    quota_counts.c.window_starts_at == starts_at,
                )
                .values(used=quota_counts.c.used - counts[user_id, scope, starts_at])
            )

    async def slots_between(self, room_id: UUID, span: domain.Span) -> list[Slot]:
        """The room's slots starting in ``span``, by start."""
        statement = (
            select(slots)
            .where(
                slots.c.room_id == room_id,
                slots.c.starts_at >= span.starts_at,
                slots.c.starts_at < span.ends_at,
            )
            .order_by(slots.c.starts_at, slots.c.id)
        )
        return [slot_of(row) for row in await self.session.execute(statement)]

    async def slots_held_by(self, user_id: str, slot_ids: Collection[UUID]) -> set[UUID]:
        """Which of these slots the user holds a live (pending or confirmed) booking in."""
        statement = select(bookings.c.slot_id).where(
            bookings.c.user_id == user_id,
            bookings.c.slot_id.in_(sorted(set(slot_ids))),
            status_in(bookings.c.status, (BookingStatus.PENDING, BookingStatus.CONFIRMED)),
        )
        return set((await self.session.execute(statement)).scalars())

    async def quota_usage(
        self, user_id: str, keys: Collection[tuple[str, datetime]]
    ) -> dict[tuple[str, datetime], int]:
        """What the user's bookings count against quotas, per scope and window start asked."""
        if not keys:
            return {}
        statement = select(
            quota_counts.c.scope, quota_counts.c.window_starts_at, quota_counts.c.used
        ).where(
            quota_counts.c.user_id == user_id,
            tuple_(quota_counts.c.scope, quota_counts.c.window_starts_at).in_(sorted(set(keys))),
        )
        return {
            (row.scope, row.window_starts_at): row.used
            for row in await self.session.execute(statement)
        }

    async def release_places(self, slot_ids: Sequence[UUID]) -> None:
        """Give back one place per occurrence of a slot id, in one statement. The caller holds
        the slots' rows already (it took their places, or locked them, in this transaction), so
        the order the statement meets them in cannot deadlock."""
        counts = Counter(slot_ids)
        ordered = sorted(counts)
        await self.session.execute(
            _RELEASE_PLACES, {"slot_ids": ordered, "places": [counts[s] for s in ordered]}
        )

    async def get_slot(self, slot_id: UUID) -> Slot:
        row = (await self.session.execute(select(slots).where(slots.c.id == slot_id))).first()
        if row is None:
            raise domain.SlotNotFound(f"slot {slot_id} is not known")
        return slot_of(row)

    async def lock_slots(self, slot_ids: Sequence[UUID]) -> dict[UUID, Slot]:
        """The slots with these ids that are known, locked in id order (the one lock order of
        every writer of several slots: two transactions that each change the same two slots
        take turns instead of deadlocking), by id."""
        statement = (
            select(slots)
            .where(slots.c.id.in_(sorted(set(slot_ids))))
            .order_by(slots.c.id)
            .with_for_update(key_share=True)
        )
        return {slot.id: slot for slot in map(slot_of, await self.session.execute(statement))}

    async def get_room(self, room_id: UUID) -> Room | None:
        return (await self.get_rooms([room_id])).get(room_id)

    async def insert_booking(
        self, booking: PendingBooking, *, max_unpaid_holds: int | None
    ) -> Booking:
        """Insert a pending booking, unless its user already holds ``max_unpaid_holds`` unpaid
        bookings (``None``: no cap): then the database refuses it, ``domain.TooManyUnpaidHolds``;
        or unless the user holds the slot already: ``domain.SlotUnavailable``."""
        await self._cap_unpaid_holds(max_unpaid_holds)
        try:
            with _refused_over_the_cap(max_unpaid_holds):
                return booking_of(
                    (await self.session.execute(_INSERT_BOOKING, _columns(booking))).one()
                )
        except IntegrityError as exc:
            # The user holds the slot already (one live booking per user and slot). Not the
            # key's index: the requests with one key take turns, each finds the last's booking.
            # No savepoint: the refused INSERT ends the whole transaction, as the caller wants.
            raise domain.already_holds(booking.slot.id) from exc

    async def insert_bookings(
        self, new: Sequence[PendingBooking], *, max_unpaid_holds: int | None
    ) -> dict[UUID, Booking]:
        """Insert many bookings in one statement; a row that would break a unique index (the
        user already holds the slot, or reuses an ``Idempotency-Key``) is left out, not an
        error. Returns the inserted bookings by id. A row that would give its user more than
        ``max_unpaid_holds`` unpaid bookings fails the whole statement, as in
        ``insert_booking``: leave such rows out (``lock_unpaid_holds`` tells which)."""
        await self._cap_unpaid_holds(max_unpaid_holds)
        statement = (
            pg_insert(bookings)
            .on_conflict_do_nothing()
            .returning(*bookings.c, sort_by_parameter_order=True)
        )
        with _refused_over_the_cap(max_unpaid_holds):
            result = await self.session.execute(statement, [_columns(booking) for booking in new])
        return {booking.id: booking for booking in map(booking_of, result)}

    async def _cap_unpaid_holds(self, most: int | None) -> None:
        """State the cap for the rest of this transaction (``SET LOCAL``)."""
        await self.session.execute(_STATE_CAP, {"most": "" if most is None else str(most)})

    async def lock_unpaid_holds(self, user_ids: Collection[str]) -> dict[str, int]:
        """How many unpaid (pending) bookings each of these users holds, by user; none for a
        user who holds none. The users' holds are locked until this transaction ends, with the
        database's own lock (the one the cap's trigger takes): until then no other transaction
        adds to them, so as many more as the cap leaves can be inserted without a refusal.

        Take it after the places (every writer locks slots before holds: no deadlocks). Two
        statements: the count's snapshot is taken once the locks are granted, so it sees every
        hold committed while this transaction waited for them.
        """
        users = sorted(set(user_ids))
        await self.session.execute(_LOCK_UNPAID_HOLDS, {"users": users})
        statement = (
            select(bookings.c.user_id, func.count().label("held"))
            .where(
                bookings.c.user_id.in_(users),
                status_is(bookings.c.status, BookingStatus.PENDING),
            )
            .group_by(bookings.c.user_id)
        )
        return {row.user_id: row.held for row in await self.session.execute(statement)}

    async def lock_idempotency_keys(self, keys: Collection[tuple[str, str]]) -> None:
        """Make the requests with these ``(user_id, Idempotency-Key)`` pairs take turns: the
        locks are held until this transaction ends. A retry that overlaps the request it
        repeats waits for it here, before looking for its booking (in a statement of its own,
        so it sees what committed meanwhile), instead of competing with it for a place.

        Transaction-level advisory locks, taken in one order (no deadlocks) and before any
        place; a hash collision only makes two unrelated requests take turns.
        """
        await self.session.execute(
            _LOCK_KEYS, {"users": [user for user, _ in keys], "keys": [key for _, key in keys]}
        )

    async def find_by_idempotency_keys(
        self, keys: Sequence[tuple[str, str]]
    ) -> dict[tuple[str, str], Booking]:
        """The bookings made with these ``(user_id, Idempotency-Key)`` pairs, by pair."""
        statement = select(bookings).where(
            tuple_(bookings.c.user_id, bookings.c.idempotency_key).in_(list(keys))
        )
        found = map(booking_of, await self.session.execute(statement))
        return {(b.user_id, b.idempotency_key or ""): b for b in found}

    async def get_booking(self, booking_id: UUID, *, lock: bool = False) -> Booking:
        statement = select(bookings).where(bookings.c.id == booking_id)
        if lock:
            statement = statement.with_for_update()
        row = (await self.session.execute(statement)).first()
        if row is None:
            raise domain.BookingNotFound(f"booking {booking_id} does not exist")
        return booking_of(row)

    async def lock_bookings(
        self, booking_ids: Sequence[UUID]
    ) -> tuple[dict[UUID, Booking], dict[UUID, Room]]:
        """The bookings with these ids (those that exist), locked in id order (one lock order
        for every writer of many bookings: no deadlocks), by id; and their rooms that are known
        (not locked, and without their rules), by id. One statement."""
        room = rooms.alias("room")
        statement = (
            select(
                bookings,
                room.c.name.label("room_name"),
                room.c.time_zone.label("room_time_zone"),
                room.c.active.label("room_active"),
            )
            .outerjoin(room, room.c.id == bookings.c.room_id)
            .where(bookings.c.id.in_(sorted(set(booking_ids))))
            .order_by(bookings.c.id)
            .with_for_update(of=bookings)
        )
        found: dict[UUID, Booking] = {}
        known: dict[UUID, Room] = {}
        for row in await self.session.execute(statement):
            booking = found[row.id] = booking_of(row)
            if row.room_name is not None:
                known[booking.room_id] = Room(
                    booking.room_id, row.room_name, row.room_time_zone, row.room_active
                )
        return found, known

    async def get_rooms(self, room_ids: Sequence[UUID]) -> dict[UUID, Room]:
        """The rooms with these ids that are known, by id."""
        statement = select(rooms).where(rooms.c.id.in_(sorted(set(room_ids))))
        return {row.id: room_of(row) for row in await self.session.execute(statement)}

    async def confirm_paid(self, payments: Mapping[UUID, str]) -> dict[UUID, int]:
        """Confirm pending, unpaid bookings as paid by ``payments[booking_id]`` (their start
        becomes the start they were paid for), in one statement (the caller holds their locks);
        returns the ids it confirmed, each with the booking's new version."""
        if not payments:
            return {}
        ids = list(payments)
        result = await self.session.execute(
            _CONFIRM_PAID, {"ids": ids, "payment_ids": [payments[i] for i in ids]}
        )
        return {row.id: row.version for row in result}

    async def find_by_idempotency_key(self, user_id: str, key: str) -> Booking | None:
        statement = select(bookings).where(
            bookings.c.user_id == user_id, bookings.c.idempotency_key == key
        )
        row = (await self.session.execute(statement)).first()
        return booking_of(row) if row else None

    async def _change(self, booking_id: UUID, **values: Any) -> Booking:
        statement = (
            update(bookings)
            .where(bookings.c.id == booking_id)
            .values(**values, updated_at=func.now())
            .returning(*bookings.c)
        )
        return booking_of((await self.session.execute(statement)).one())

    async def cancel_booking(
        self, booking_id: UUID, *, by: Actor, reason: str | None, at: datetime
    ) -> Booking:
        return await self._change(
            booking_id,
            status=BookingStatus.CANCELLED.value,
            cancelled_at=at,
            cancelled_by=by.value,
            cancellation_reason=reason,
        )

    async def move_booking(self, booking_id: UUID, slot: Slot) -> Booking:
        """The booking now holds a place in ``slot``, at its price; one more move counted.
        ``domain.SlotUnavailable`` when its user holds that slot already (nothing changes)."""
        try:
            async with self.session.begin_nested():
                return await self._change(
                    booking_id,
                    slot_id=slot.id,
                    starts_at=slot.starts_at,
                    ends_at=slot.ends_at,
                    price=slot.price.amount,
                    reschedules=bookings.c.reschedules + 1,
                )
        except IntegrityError as exc:
            raise domain.already_holds(slot.id) from exc

    async def set_status(self, booking_id: UUID, status: BookingStatus) -> Booking:
        return await self._change(booking_id, status=status.value)

    async def confirm_booking(
        self, booking_id: UUID, *, payment_id: str, refund_basis_starts_at: datetime
    ) -> Booking:
        """Paid with ``payment_id``: confirmed; refunds count notice from
        ``refund_basis_starts_at``."""
        return await self._change(
            booking_id,
            status=BookingStatus.CONFIRMED.value,
            payment_status=PaymentStatus.PAID.value,
            payment_id=payment_id,
            refund_basis_starts_at=refund_basis_starts_at,
        )

    async def attach_payment(self, booking_id: UUID, payment_id: str) -> Booking:
        """Remember the payment a booking received (though it cannot take it)."""
        return await self._change(booking_id, payment_id=payment_id)

    async def expire_due(self, *, now: datetime, limit: int) -> list[Booking]:
        """Expire up to ``limit`` pending bookings whose hold ran out; skip rows others hold."""
        due = (
            select(bookings.c.id)
            .where(
                status_is(bookings.c.status, BookingStatus.PENDING),
                bookings.c.hold_expires_at <= now,
            )
            .order_by(bookings.c.hold_expires_at)
            .limit(limit)
            .with_for_update(skip_locked=True)
            .scalar_subquery()
        )
        statement = (
            update(bookings)
            .where(bookings.c.id.in_(due))
            .values(status=BookingStatus.EXPIRED.value, updated_at=func.now())
            .returning(*bookings.c)
        )
        return [booking_of(row) for row in await self.session.execute(statement)]

    async def list_bookings(
        self,
        where: BookingFilter,
        *,
        after: tuple[datetime, UUID] | None,
        limit: int,
    ) -> list[Booking]:
        """Bookings by start time, then id (a stable keyset order)."""
        conditions = []
        if where.user_id is not None:
            conditions.append(bookings.c.user_id == where.user_id)
        if where.room_id is not None:
            conditions.append(bookings.c.room_id == where.room_id)
        if where.statuses:
            conditions.append(bookings.c.status.in_([s.value for s in where.statuses]))
        if where.payment_statuses:
            conditions.append(
                bookings.c.payment_status.in_([s.value for s in where.payment_statuses])
            )
        if where.starts_from is not None:
            conditions.append(bookings.c.starts_at >= where.starts_from)
        if where.starts_before is not None:
            conditions.append(bookings.c.starts_at < where.starts_before)
        if after is not None:
            conditions.append(tuple_(bookings.c.starts_at, bookings.c.id) > tuple_(*after))
        statement = (
            select(bookings)
            .where(and_(True, *conditions))
            .order_by(bookings.c.starts_at, bookings.c.id)
            .limit(limit)
        )
        return [booking_of(row) for row in await self.session.execute(statement)]

    async def request_refund(
        self,
        *,
        refund_id: UUID,
        booking_id: UUID,
        payment_id: str,
        amount: Money,
        reason: str,
    ) -> Booking | None:
        """Record a refund asked of the payment service and sum up the booking's refunds again;
        None, and nothing changes, if a refund with this id was asked for already (the caller
        holds the booking's lock)."""
        statement = (
            pg_insert(refunds)
            .values(
                id=refund_id,
                booking_id=booking_id,
                payment_id=payment_id,
                amount=amount.amount,
                currency=amount.currency,
                reason=reason,
                status=RefundStatus.REQUESTED.value,
            )
            .on_conflict_do_nothing(index_elements=[refunds.c.id])
            .returning(refunds.c.id)
        )
        if (await self.session.execute(statement)).first() is None:
            return None
        return await self._sum_up_refunds(booking_id)

    async def get_refund(self, refund_id: UUID) -> Refund | None:
        row = (await self.session.execute(select(refunds).where(refunds.c.id == refund_id))).first()
        if row is None:
            return None
        return Refund(
            id=row.id,
            booking_id=row.booking_id,
            payment_id=row.payment_id,
            amount=Money.of(row.amount, row.currency),
            status=RefundStatus(row.status),
        )

    async def settle_refund(
        self,
        refund: Refund,
        *,
        status: RefundStatus,
        failure_reason: str | None,
        now: datetime,
    ) -> Booking:
        """Move the refund from the status it was read with to ``status`` and sum up the
        booking's refunds again (the caller holds the booking's lock)."""
        statement = (
            update(refunds)
            .where(refunds.c.id == refund.id, refunds.c.status == refund.status.value)
            .values(status=status.value, failure_reason=failure_reason, settled_at=now)
            .returning(refunds.c.id)
        )
        if (await self.session.execute(statement)).first() is None:
            raise RuntimeError(f"refund {refund.id} is no longer {refund.status.value}")
        return await self._sum_up_refunds(refund.booking_id)

    async def _sum_up_refunds(self, booking_id: UUID) -> Booking:
        """Set the booking's payment status, refund total and refund failure from its refunds
        (``domain.PAYMENT_STATUS_OF_REFUNDS``; the reason of the latest failure), in one
        statement."""
        failed = status_is(refunds.c.status, RefundStatus.FAILED)
        summary = (
            select(
                refunds.c.booking_id,
                func.sum(refunds.c.amount).label("total"),
                case(
                    *(
                        (func.bool_or(status_is(refunds.c.status, refund)), paid.value)
                        for refund, paid in PAYMENT_STATUS_OF_REFUNDS
                    )
                ).label("payment_status"),
                func.array_agg(
                    aggregate_order_by(refunds.c.failure_reason, refunds.c.settled_at.desc()),
                    type_=ARRAY(Text),
                )
                .filter(failed)
                .label("failures"),
            )
            .where(refunds.c.booking_id == booking_id)
            .group_by(refunds.c.booking_id)
            .subquery()
        )
        statement = (
            update(bookings)
            .where(bookings.c.id == summary.c.booking_id)
            .values(
                payment_status=summary.c.payment_status,
                refund_amount=summary.c.total,
                refund_failure_reason=summary.c.failures[1],
                updated_at=func.now(),
            )
            .returning(*bookings.c)
        )
        return booking_of((await self.session.execute(statement)).one())

    async def record_stray_payment(
        self,
        *,
        payment_id: str,
        booking_id: UUID,
        amount: Money,
        reason: str,
        refund_id: UUID,
    ) -> StrayPayment | None:
        """Record a payment no booking took, its refund ``requested``; None, and nothing changes,
        if this payment was recorded already (the primary key is the payment id: a payment
        delivered again waits here for the transaction that recorded it, then finds it)."""
        statement = (
            pg_insert(stray_payments)
            .values(
                payment_id=payment_id,
                booking_id=booking_id,
                amount=amount.amount,
                currency=amount.currency,
                reason=reason,
                refund_id=refund_id,
                refund_status=RefundStatus.REQUESTED.value,
            )
            .on_conflict_do_nothing(index_elements=[stray_payments.c.payment_id])
            .returning(*stray_payments.c)
        )
        row = (await self.session.execute(statement)).first()
        return stray_payment_of(row) if row is not None else None

    async def lock_stray_refund(self, refund_id: UUID) -> StrayPayment | None:
        """The stray payment that ``refund_id`` returns, locked until this transaction ends."""
        statement = (
            select(stray_payments).where(stray_payments.c.refund_id == refund_id).with_for_update()
        )
        row = (await self.session.execute(statement)).first()
        return stray_payment_of(row) if row is not None else None

    async def settle_stray_refund(
        self,
        stray: StrayPayment,
        *,
        status: RefundStatus,
        failure_reason: str | None,
        now: datetime,
    ) -> StrayPayment:
        """Move the stray payment's refund from the status it was read with to ``status``."""
        statement = (
            update(stray_payments)
            .where(
                stray_payments.c.payment_id == stray.payment_id,
                stray_payments.c.refund_status == stray.refund_status.value,
            )
            .values(refund_status=status.value, failure_reason=failure_reason, settled_at=now)
            .returning(*stray_payments.c)
        )
        row = (await self.session.execute(statement)).first()
        if row is None:
            raise RuntimeError(
                f"the refund of stray payment {stray.payment_id} is no longer "
                f"{stray.refund_status.value}"
            )
        return stray_payment_of(row)

    async def lock_slot(self, slot_id: UUID, *, share: bool = False) -> Slot:
        """The slot, locked until the transaction ends: ``share`` keeps its places from changing
        (joining a line), else the caller changes them (freeing and offering places)."""
        statement = select(slots).where(slots.c.id == slot_id)
        row = (
            await self.session.execute(
                statement.with_for_update(read=True) if share else statement.with_for_update()
            )
        ).first()
        if row is None:
            raise domain.SlotNotFound(f"slot {slot_id} is not known")
        return slot_of(row)

    async def lock_lines_of(self, user_id: str) -> int:
        """How many lines the user is in (live entries), their lines locked to the transaction's
        end: two joins of one user take turns, so the cap on lines holds."""
        await self.session.execute(_LOCK_LINES, {"user_id": user_id})
        count = await self.session.scalar(
            select(func.count())
            .select_from(waitlist_entries)
            .where(
                waitlist_entries.c.user_id == user_id,
                status_in(waitlist_entries.c.status, LIVE_WAITLIST),
            )
        )
        return int(count or 0)

    async def insert_entry(
        self, entry_id: UUID, slot: Slot, user_id: str, contact: Contact
    ) -> WaitlistEntry:
        """A new entry at the end of the slot's line (``IntegrityError``: the user is in it)."""
        statement = (
            insert(waitlist_entries)
            .values(
                id=entry_id,
                slot_id=slot.id,
                room_id=slot.room_id,
                user_id=user_id,
                contact_email=contact.email,
                contact_phone=contact.phone,
                status=WaitlistStatus.WAITING.value,
            )
            .returning(*waitlist_entries.c)
        )
        return entry_of((await self.session.execute(statement)).one())

    async def position_in_line(self, entry: WaitlistEntry) -> int:
        """1 + the waiters ahead of a waiting entry in its slot's line."""
        ahead = await self.session.scalar(
            select(func.count())
            .select_from(waitlist_entries)
            .where(
                waitlist_entries.c.slot_id == entry.slot_id,
                status_is(waitlist_entries.c.status, WaitlistStatus.WAITING),
                waitlist_entries.c.seq < entry.seq,
            )
        )
        return int(ahead or 0) + 1

    async def live_entry(
        self, user_id: str, slot_id: UUID, *, lock: bool = False
    ) -> WaitlistEntry | None:
        """The user's waiting or offered entry in the slot's line, if any."""
        statement = select(waitlist_entries).where(
            waitlist_entries.c.user_id == user_id,
            waitlist_entries.c.slot_id == slot_id,
            status_in(waitlist_entries.c.status, LIVE_WAITLIST),
        )
        row = (
            await self.session.execute(statement.with_for_update() if lock else statement)
        ).first()
        return entry_of(row) if row is not None else None

    async def get_entry(self, entry_id: UUID, *, lock: bool = False) -> WaitlistEntry | None:
        statement = select(waitlist_entries).where(waitlist_entries.c.id == entry_id)
        row = (
            await self.session.execute(statement.with_for_update() if lock else statement)
        ).first()
        return entry_of(row) if row is not None else None

    async def change_entry(
        self,
        entry_id: UUID,
        status: WaitlistStatus,
        *,
        offer_expires_at: datetime | None = None,
        booking_id: UUID | None = None,
    ) -> WaitlistEntry:
        """The entry's new status (the database refuses a change the domain does not allow)."""
        statement = (
            update(waitlist_entries)
            .where(waitlist_entries.c.id == entry_id)
            .values(
                status=status.value,
                offer_expires_at=offer_expires_at,
                booking_id=booking_id,
                updated_at=func.now(),
            )
            .returning(*waitlist_entries.c)
        )
        return entry_of((await self.session.execute(statement)).one())

    async def waiting_in_line(self, slot_id: UUID, *, limit: int) -> list[WaitlistEntry]:
        """The first ``limit`` waiters of the slot's line, in order, locked (the caller holds the
        slot's lock: nobody else offers its places meanwhile)."""
        statement = (
            select(waitlist_entries)
            .where(
                waitlist_entries.c.slot_id == slot_id,
                status_is(waitlist_entries.c.status, WaitlistStatus.WAITING),
            )
            .order_by(waitlist_entries.c.seq)
            .limit(limit)
            .with_for_update()
        )
        return [entry_of(row) for row in await self.session.execute(statement)]

    async def busy_at(
        self, user_ids: Collection[str], starts_at: datetime, ends_at: datetime
    ) -> set[str]:
        """Which of these users hold a live booking (pending or confirmed) overlapping
        ``[starts_at, ends_at)``, in any room."""
        if not user_ids:
            return set()
        statement = select(bookings.c.user_id).where(
            bookings.c.user_id.in_(sorted(set(user_ids))),
            status_in(bookings.c.status, (BookingStatus.PENDING, BookingStatus.CONFIRMED)),
            bookings.c.starts_at < ends_at,
            bookings.c.ends_at > starts_at,
        )
        return set((await self.session.execute(statement)).scalars())

    async def due_offers(self, *, now: datetime, limit: int) -> list[WaitlistEntry]:
        """Offers that ran out by ``now``, locked; those another sweeper holds are skipped."""
        statement = (
            select(waitlist_entries)
            .where(
                status_is(waitlist_entries.c.status, WaitlistStatus.OFFERED),
                waitlist_entries.c.offer_expires_at <= now,
            )
            .order_by(waitlist_entries.c.offer_expires_at)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
        return [entry_of(row) for row in await self.session.execute(statement)]

    async def closed_lines(self, *, now: datetime, limit: int) -> list[WaitlistEntry]:
        """Waiting entries of slots that started by ``now``, locked; those another sweeper holds
        are skipped."""
        statement = (
            select(waitlist_entries)
            .join(slots, slots.c.id == waitlist_entries.c.slot_id)
            .where(
                status_is(waitlist_entries.c.status, WaitlistStatus.WAITING),
                slots.c.starts_at <= now,
            )
            .limit(limit)
            .with_for_update(of=waitlist_entries, skip_locked=True)
        )
        return [entry_of(row) for row in await self.session.execute(statement)]

    async def take_offered_places(self, slot_id: UUID, places: int) -> None:
        """Count ``places`` more of the slot as held (offered out of capacity it gained)."""
        await self.session.execute(
            update(slots)
            .where(slots.c.id == slot_id)
            .values(booked_count=slots.c.booked_count + places, updated_at=func.now())
        )

    async def slots_with_waiters(self, slot_ids: Collection[UUID]) -> list[UUID]:
        """Which of these slots have someone waiting in their line."""
        statement = (
            select(waitlist_entries.c.slot_id)
            .where(
                waitlist_entries.c.slot_id.in_(sorted(set(slot_ids))),
                status_is(waitlist_entries.c.status, WaitlistStatus.WAITING),
            )
            .distinct()
        )
        return sorted((await self.session.execute(statement)).scalars())
