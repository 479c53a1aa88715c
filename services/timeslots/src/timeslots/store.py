"""SQL of the timeslots service: rows in and out, set-based wherever many rows move.

The statements, by section, and :class:`SqlStore`, which runs them inside the caller's
transaction and commits nothing (the store the use cases take; its twin held in the process
is :class:`timeslots.memory.MemoryStore`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Any
from uuid import UUID

from sqlalchemy import (
    ARRAY,
    DateTime,
    Integer,
    Numeric,
    Row,
    String,
    Uuid,
    and_,
    any_,
    bindparam,
    func,
    insert,
    select,
    text,
    tuple_,
    update,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.exc import IntegrityError

from booking_contracts.catalogue import (
    RoomRules,
    RoomType,
    SlotsGenerated,
    SlotStatus,
)
from booking_contracts.money import Money
from platform_runtime.db import sql_literal, violated_constraint
from platform_runtime.outbox import Outbox
from platform_runtime.transactions import SessionStore
from timeslots import domain
from timeslots.domain import (
    Available,
    HoldChange,
    Inserted,
    Move,
    NewRoom,
    PartialRules,
    Release,
    Room,
    RoomChanges,
    Slot,
    StoredSchedule,
)
from timeslots.models import rooms, schedules, slot_holds, timeslots

# --- rooms -----------------------------------------------------------------------------


def room_of(row: Row[Any]) -> Room:
    values = row._mapping
    return Room(
        id=values["id"],
        name=values["name"],
        description=values["description"],
        capacity=values["capacity"],
        room_type=RoomType(values["room_type"]),
        hourly_rate=Money.of(values["hourly_rate"], values["currency"]),
        time_zone=values["time_zone"],
        active=values["active"],
        attributes=values["attributes"],
        created_at=values["created_at"],
        updated_at=values["updated_at"],
        version=values["version"],
        own_rules=PartialRules(values["rules"]),
        published_rules=(
            None
            if values["published_rules"] is None
            else RoomRules.model_validate(values["published_rules"])
        ),
    )


def _room_columns(values: Mapping[str, Any]) -> dict[str, Any]:
    """A room's fields by name -> its columns (money is split into amount and currency)."""
    columns = {
        k: (v.value if isinstance(v, RoomType) else v)
        for k, v in values.items()
        if k != "hourly_rate"
    }
    rate = values.get("hourly_rate")
    if rate is not None:
        columns["hourly_rate"] = rate.amount
        columns["currency"] = rate.currency
    return columns


# --- schedules -------------------------------------------------------------------------


def _schedule_of(row: Row[Any]) -> StoredSchedule:
    values = row._mapping
    return StoredSchedule(
        room_id=values["room_id"],
        open_weekdays=tuple(values["open_weekdays"]),
        weekday_hours={
            int(weekday): [(time.fromisoformat(s), time.fromisoformat(e)) for s, e in spans]
            for weekday, spans in values["working_hours"].items()
        },
        slot_minutes=values["slot_minutes"],
        buffer_minutes=values["buffer_minutes"],
        max_bookings=values["max_bookings"],
        excluded_dates=tuple(values["excluded_dates"]),
        blackouts=tuple(
            (datetime.fromisoformat(s), datetime.fromisoformat(e)) for s, e in values["blackouts"]
        ),
        updated_at=values["updated_at"],
    )


# --- slots -----------------------------------------------------------------------------


def slot_of(row: Row[Any]) -> Slot:
    values = row._mapping
    return Slot(
        id=values["id"],
        room_id=values["room_id"],
        starts_at=values["starts_at"],
        ends_at=values["ends_at"],
        price=Money.of(values["price"], values["currency"]),
        max_bookings=values["max_bookings"],
        booked_count=values["booked_count"],
        status=SlotStatus(values["status"]),
        revision=values["revision"],
        created_at=values["created_at"],
    )


_TIMESTAMPS = ARRAY(DateTime(timezone=True))

_GENERATE = text(
    """
    WITH new_slots AS (
        INSERT INTO timeslots (room_id, starts_at, ends_at, price, currency, max_bookings)
        SELECT :room_id, span.starts_at, span.ends_at, :price, :currency, :max_bookings
        FROM unnest(:starts, :ends) AS span(starts_at, ends_at)
        ON CONFLICT (room_id, starts_at) DO NOTHING
        RETURNING id, starts_at, ends_at
    ),
    chunks AS (
        -- Each slot's JSON is written as text and the chunk parsed once: every value is a
        -- uuid, a formatted time, a number or the price JSON from Python (no free text).
        SELECT gen_random_uuid() AS event_id, min(starts_at) AS first_start,
               CAST('[' || string_agg(
                   format(
                       '{"slot_id":"%s","room_id":"%s","starts_at":"%s","ends_at":"%s",'
                       '"price":%s,"max_bookings":%s,"status":"open","revision":%s}',
                       id, CAST(:room_id AS uuid),
                       to_char(starts_at AT TIME ZONE 'UTC', :iso),
                       to_char(ends_at AT TIME ZONE 'UTC', :iso),
                       CAST(:price_json AS text), CAST(:max_bookings AS integer), 1
                   ),
                   ',' ORDER BY starts_at
               ) || ']' AS jsonb) AS slots
        FROM (
            SELECT *, (row_number() OVER (ORDER BY starts_at) - 1) / :per_event AS chunk
            FROM new_slots
        ) AS numbered
        GROUP BY chunk
    ),
    announced AS (
        INSERT INTO outbox (event_id, topic, key, event_type, payload, headers)
        SELECT event_id, :topic, :key, :event_type,
               CAST(:envelope AS jsonb) || jsonb_build_object(
                   'id', event_id,
                   'data', jsonb_build_object('room_id', CAST(:room_id AS uuid), 'slots', slots)
               ),
               CAST(:headers AS jsonb) || jsonb_build_object('ce_id', event_id)
        FROM chunks
        ORDER BY first_start
        RETURNING 1
    )
    SELECT (SELECT count(*) FROM new_slots) AS created,
           (SELECT min(starts_at) FROM new_slots) AS first_starts_at,
           (SELECT max(starts_at) FROM new_slots) AS last_starts_at,
           (SELECT count(*) FROM announced) AS events
    """
).bindparams(
    bindparam("starts", type_=_TIMESTAMPS),
    bindparam("ends", type_=_TIMESTAMPS),
    bindparam("envelope", type_=JSONB),
    bindparam("headers", type_=JSONB),
    bindparam("price_json", type_=String),
)

_ISO_UTC = 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'


_INSERT_CUSTOM = text(
    """
    INSERT INTO timeslots (room_id, starts_at, ends_at, price, currency, max_bookings)
    SELECT :room_id, span.starts_at, span.ends_at, span.price, :currency, span.max_bookings
    FROM unnest(:starts, :ends, :prices, :max_bookings)
        AS span(starts_at, ends_at, price, max_bookings)
    RETURNING *
    """
).bindparams(
    bindparam("starts", type_=_TIMESTAMPS),
    bindparam("ends", type_=_TIMESTAMPS),
    bindparam("prices", type_=ARRAY(Numeric(19, 4))),
    bindparam("max_bookings", type_=ARRAY(Integer)),
)


# --- holds: bookings and waitlist offers --------------------------------------------------
#
# A place is held by a booking (its id) or by a waitlist offer (its entry's id) while the
# booking service holds the place for the waiter. What one event does to its holder's hold
# is defined by the one-event forms ``hold``, ``release`` and ``move_hold``; the consumer
# applies a batch of events with ``apply_hold_changes``, which ends in the same rows and
# counts.

_UUIDS = ARRAY(Uuid)


_MOVE_HELD = text(
    """
    UPDATE slot_holds AS h
    SET slot_id = m.new_slot_id, updated_at = now()
    FROM unnest(:holders, :old_slots, :new_slots) AS m(holder_id, old_slot_id, new_slot_id)
    WHERE h.holder_id = m.holder_id AND NOT h.released AND h.slot_id = m.old_slot_id
    """
).bindparams(
    bindparam("holders", type_=_UUIDS),
    bindparam("old_slots", type_=_UUIDS),
    bindparam("new_slots", type_=_UUIDS),
)

_HOLD = text(
    """
    INSERT INTO slot_holds (holder_id, slot_id, released)
    SELECT holder_id, slot_id, false FROM unnest(:holders, :slots) AS h(holder_id, slot_id)
    ON CONFLICT (holder_id) DO NOTHING
    """
).bindparams(bindparam("holders", type_=_UUIDS), bindparam("slots", type_=_UUIDS))

_RELEASE = text(
    """
    INSERT INTO slot_holds (holder_id, slot_id, released)
    SELECT holder_id, slot_id, true FROM unnest(:holders, :slots) AS r(holder_id, slot_id)
    ON CONFLICT (holder_id) DO UPDATE SET released = true, updated_at = now()
    WHERE NOT slot_holds.released
    RETURNING slot_id
    """
).bindparams(bindparam("holders", type_=_UUIDS), bindparam("slots", type_=_UUIDS))


# --- availability ----------------------------------------------------------------------


_SEARCH = f"""
WITH window_of_room AS (
    SELECT r.id AS room_id, r.name AS room_name, r.time_zone,
           greatest(CAST(:date_from AS date)::timestamp AT TIME ZONE r.time_zone, :now) AS lo,
           (CAST(:date_to AS date) + 1)::timestamp AT TIME ZONE r.time_zone AS hi
    FROM rooms r
    WHERE r.active
      AND (CAST(:room_id AS uuid) IS NULL OR r.id = :room_id)
      AND (CAST(:room_type AS text) IS NULL OR r.room_type = :room_type)
),
free AS (
    SELECT t.id, t.room_id, w.room_name, w.time_zone, t.starts_at, t.ends_at, t.price,
           t.currency, t.max_bookings - t.booked_count AS places_left, w.hi
    FROM window_of_room w
    JOIN timeslots t ON t.room_id = w.room_id
     AND t.starts_at >= w.lo AND t.starts_at < w.hi + :run_reach
    WHERE t.status = {sql_literal(SlotStatus.OPEN)} AND t.booked_count < t.max_bookings
)
"""  # noqa: S608 (constants)

_PLAIN = (  # constant SQL, nothing from the request is pasted in
    _SEARCH
    + """
SELECT id, room_id, room_name, time_zone, starts_at, ends_at, price, currency, places_left,
       NULL::integer AS free_minutes
FROM free
WHERE starts_at < hi AND (starts_at, id) > (:after_start, :after_id)
ORDER BY starts_at, id
LIMIT :limit
"""
)

_RUNS = (  # constant SQL, nothing from the request is pasted in
    _SEARCH  # noqa: S608
    + """,
marked AS (
    SELECT free.*,
           CASE WHEN starts_at = lag(ends_at) OVER (PARTITION BY room_id ORDER BY starts_at)
                THEN 0 ELSE 1 END AS run_start
    FROM free
),
runs AS (
    SELECT marked.*,
           sum(run_start) OVER (PARTITION BY room_id ORDER BY starts_at) AS run
    FROM marked
),
reach AS (
    SELECT runs.*, max(ends_at) OVER (PARTITION BY room_id, run) AS free_until
    FROM runs
)
SELECT id, room_id, room_name, time_zone, starts_at, ends_at, price, currency, places_left,
       CAST(extract(epoch FROM free_until - starts_at) / 60 AS integer) AS free_minutes
FROM reach
WHERE starts_at < hi AND free_until - starts_at >= :min_duration
  AND (starts_at, id) > (:after_start, :after_id)
ORDER BY starts_at, id
LIMIT :limit
"""
)

_PLAIN_SEARCH = text(_PLAIN)
_RUNS_SEARCH = text(_RUNS)
_NO_CURSOR = (datetime(1, 1, 1, tzinfo=UTC), UUID(int=0))


class SqlStore(SessionStore):
    """The timeslots service's state in its PostgreSQL database (the
    :class:`timeslots.handlers.Store` of its use cases): every method runs in the session's
    transaction and commits nothing."""

    async def insert_room(self, room_id: UUID, new: NewRoom) -> Room:
        fields = {name: getattr(new, name) for name in new.__dataclass_fields__}
        statement = insert(rooms).values(id=room_id, **_room_columns(fields)).returning(*rooms.c)
        return room_of((await self.session.execute(statement)).one())

    async def update_room(self, room_id: UUID, changes: RoomChanges) -> Room | None:
        """Change the fields ``changes`` gives (None: the room does not exist)."""
        statement = (
            update(rooms)
            .where(rooms.c.id == room_id)
            .values(**_room_columns(changes.given()), updated_at=func.now())
            .returning(*rooms.c)
        )
        row = (await self.session.execute(statement)).first()
        return room_of(row) if row else None

    async def get_room(self, room_id: UUID, *, lock: bool = False) -> Room:
        statement = select(rooms).where(rooms.c.id == room_id)
        if lock:
            statement = statement.with_for_update()
        row = (await self.session.execute(statement)).first()
        if row is None:
            raise domain.RoomNotFound(f"room {room_id} does not exist")
        return room_of(row)

    async def set_own_rules(self, room_id: UUID, own: PartialRules) -> Room:
        """Replace the booking rules the room sets itself (the caller holds its row)."""
        statement = (
            update(rooms)
            .where(rooms.c.id == room_id)
            .values(rules=dict(own.values), updated_at=func.now())
            .returning(*rooms.c)
        )
        return room_of((await self.session.execute(statement)).one())

    async def record_published_rules(self, room_id: UUID, rules: RoomRules) -> Room:
        """Remember ``rules`` as the room's rules last published (the caller holds its row)."""
        statement = (
            update(rooms)
            .where(rooms.c.id == room_id)
            .values(published_rules=rules.model_dump(mode="json"), updated_at=func.now())
            .returning(*rooms.c)
        )
        return room_of((await self.session.execute(statement)).one())

    async def lock_rooms(self, *, after: UUID | None, limit: int) -> list[Room]:
        """The next ``limit`` rooms by id after ``after``, their rows locked until the
        transaction ends (in id order, so two callers wait for each other, never deadlock)."""
        statement = select(rooms).order_by(rooms.c.id).limit(limit).with_for_update()
        if after is not None:
            statement = statement.where(rooms.c.id > after)
        return [room_of(row) for row in await self.session.execute(statement)]

    async def list_rooms(
        self,
        *,
        room_type: RoomType | None,
        active: bool | None,
        after: UUID | None,
        limit: int,
    ) -> list[Room]:
        statement = select(rooms).order_by(rooms.c.id).limit(limit)
        if room_type is not None:
            statement = statement.where(rooms.c.room_type == room_type.value)
        if active is not None:
            statement = statement.where(rooms.c.active.is_(active))
        if after is not None:
            statement = statement.where(rooms.c.id > after)
        return [room_of(row) for row in await self.session.execute(statement)]

    async def active_room_ids(self) -> list[UUID]:
        statement = select(rooms.c.id).where(rooms.c.active).order_by(rooms.c.name, rooms.c.id)
        return list((await self.session.scalars(statement)).all())

    async def put_schedule(self, schedule: StoredSchedule) -> StoredSchedule:
        values = {
            "open_weekdays": list(schedule.open_weekdays),
            "working_hours": {
                str(weekday): [[s.isoformat(), e.isoformat()] for s, e in spans]
                for weekday, spans in sorted(schedule.weekday_hours.items())
            },
            "slot_minutes": schedule.slot_minutes,
            "buffer_minutes": schedule.buffer_minutes,
            "max_bookings": schedule.max_bookings,
            "excluded_dates": sorted(schedule.excluded_dates),
            "blackouts": [[s.isoformat(), e.isoformat()] for s, e in schedule.blackouts],
            "updated_at": func.now(),
        }
        statement = (
            pg_insert(schedules)
            .values(room_id=schedule.room_id, **values)
            .on_conflict_do_update(index_elements=[schedules.c.room_id], set_=values)
            .returning(*schedules.c)
        )
        return _schedule_of((await self.session.execute(statement)).one())

    async def get_schedule(self, room_id: UUID) -> StoredSchedule | None:
        row = (
            await self.session.execute(select(schedules).where(schedules.c.room_id == room_id))
        ).first()
        return _schedule_of(row) if row else None

    async def insert_generated(
        self,
        outbox: Outbox,
        *,
        room_id: UUID,
        starts: Sequence[datetime],
        ends: Sequence[datetime],
        price: Money,
        max_bookings: int,
        slots_per_event: int,
    ) -> Inserted:
        """Insert the slots and announce them in ``SlotsGenerated`` events, in one statement.

        Slots starting where the room already has one are skipped (``ON CONFLICT``); the caller
        drops those overlapping other slots beforehand (the trigger refuses them otherwise). The
        events are built by the database from the rows it inserted, at most ``slots_per_event``
        slots each, on the envelope of :meth:`Outbox.template`: no slot makes a round trip.
        """
        template = outbox.template(SlotsGenerated, subject=str(room_id))
        row = (
            await self.session.execute(
                _GENERATE,
                {
                    "room_id": room_id,
                    "starts": list(starts),
                    "ends": list(ends),
                    "price": price.amount,
                    "currency": price.currency,
                    "price_json": price.model_dump_json(),
                    "max_bookings": max_bookings,
                    "per_event": slots_per_event,
                    "iso": _ISO_UTC,
                    "topic": template.topic,
                    "key": str(room_id),
                    "event_type": template.event_type,
                    "envelope": template.payload,
                    "headers": template.headers,
                },
            )
        ).one()
        if row.events:
            await outbox.notify(self.session)
        return Inserted(
            created=row.created,
            first_starts_at=row.first_starts_at,
            last_starts_at=row.last_starts_at,
            events=row.events,
        )

    async def insert_custom(
        self,
        *,
        room_id: UUID,
        currency: str,
        slots: Sequence[tuple[datetime, datetime, Decimal, int]],
    ) -> list[Slot]:
        """Insert all of ``slots`` or none: an overlap the database finds raises ``SlotOverlap``."""
        params = {
            "room_id": room_id,
            "currency": currency,
            "starts": [slot[0] for slot in slots],
            "ends": [slot[1] for slot in slots],
            "prices": [slot[2] for slot in slots],
            "max_bookings": [slot[3] for slot in slots],
        }
        try:
            async with self.session.begin_nested():
                result = await self.session.execute(_INSERT_CUSTOM, params)
                inserted = [slot_of(row) for row in result]
        except IntegrityError as exc:
            if violated_constraint(exc) in {
                "timeslots_no_overlap",
                "ix_timeslots_room_id_starts_at",
            }:
                raise domain.SlotOverlap(
                    "a new slot overlaps a slot the room got meanwhile; nothing was added"
                ) from exc
            raise
        return sorted(inserted, key=lambda slot: slot.starts_at)

    async def spans_between(
        self, room_id: UUID, start: datetime, end: datetime
    ) -> list[tuple[datetime, datetime]]:
        """Spans of the room's slots that overlap ``[start, end)``."""
        statement = select(timeslots.c.starts_at, timeslots.c.ends_at).where(
            timeslots.c.room_id == room_id,
            timeslots.c.starts_at < end,
            timeslots.c.ends_at > start,
        )
        return [(row[0], row[1]) for row in await self.session.execute(statement)]

    async def get_slot(self, slot_id: UUID) -> Slot:
        row = (
            await self.session.execute(select(timeslots).where(timeslots.c.id == slot_id))
        ).first()
        if row is None:
            raise domain.SlotNotFound(f"slot {slot_id} does not exist")
        return slot_of(row)

    async def set_slot_status(self, slot_id: UUID, status: SlotStatus) -> tuple[Slot, bool]:
        """Set the slot's status; returns the slot and whether it changed (a new revision)."""
        statement = (
            update(timeslots)
            .where(timeslots.c.id == slot_id, timeslots.c.status != status.value)
            .values(status=status.value, revision=timeslots.c.revision + 1, updated_at=func.now())
            .returning(*timeslots.c)
        )
        row = (await self.session.execute(statement)).first()
        if row is not None:
            return slot_of(row), True
        return await self.get_slot(slot_id), False

    async def list_slots(
        self,
        room_id: UUID,
        *,
        start: datetime,
        end: datetime,
        after: tuple[datetime, UUID] | None,
        limit: int,
    ) -> list[Slot]:
        statement = (
            select(timeslots)
            .where(
                timeslots.c.room_id == room_id,
                timeslots.c.starts_at >= start,
                timeslots.c.starts_at < end,
            )
            .order_by(timeslots.c.starts_at, timeslots.c.id)
            .limit(limit)
        )
        if after is not None:
            statement = statement.where(
                tuple_(timeslots.c.starts_at, timeslots.c.id) > tuple_(*after)
            )
        return [slot_of(row) for row in await self.session.execute(statement)]

    async def existing_slots(self, slot_ids: Iterable[UUID]) -> set[UUID]:
        """Those of ``slot_ids`` that are slots of this service, in one query."""
        statement = select(timeslots.c.id).where(
            timeslots.c.id == any_(bindparam("ids", sorted(set(slot_ids)), type_=_UUIDS))
        )
        return set((await self.session.scalars(statement)).all())

    async def hold(self, holder_id: UUID, slot_id: UUID) -> None:
        """The holder holds a place in the slot, unless it is already known (held or released)."""
        statement = (
            pg_insert(slot_holds)
            .values(holder_id=holder_id, slot_id=slot_id, released=False)
            .on_conflict_do_nothing(index_elements=[slot_holds.c.holder_id])
        )
        await self.session.execute(statement)
        await self.recount([slot_id])

    async def release(self, holder_id: UUID, slot_id: UUID) -> None:
        """The holder gives its place back; remembered even before its creation is seen."""
        statement = (
            pg_insert(slot_holds)
            .values(holder_id=holder_id, slot_id=slot_id, released=True)
            .on_conflict_do_update(
                index_elements=[slot_holds.c.holder_id],
                set_={"released": True, "updated_at": func.now()},
                where=slot_holds.c.released.is_(False),
            )
            .returning(slot_holds.c.slot_id)
        )
        held = (await self.session.execute(statement)).scalar_one_or_none()
        await self.recount([slot_id, held])

    async def move_hold(self, holder_id: UUID, old_slot_id: UUID, new_slot_id: UUID) -> None:
        """The booking's place moves from the old slot to the new one (if it still holds one)."""
        statement = (
            pg_insert(slot_holds)
            .values(holder_id=holder_id, slot_id=new_slot_id, released=False)
            .on_conflict_do_update(
                index_elements=[slot_holds.c.holder_id],
                set_={"slot_id": new_slot_id, "updated_at": func.now()},
                where=and_(slot_holds.c.released.is_(False), slot_holds.c.slot_id == old_slot_id),
            )
        )
        await self.session.execute(statement)
        await self.recount([old_slot_id, new_slot_id])

    async def apply_hold_changes(self, changes: Sequence[HoldChange]) -> None:
        """Apply ``changes`` as :meth:`hold`, :meth:`release` and :meth:`move_hold` would one
        after the other, in a few set-based statements, then recount once every slot they name
        or release (:meth:`recount`).

        ``slot_holds`` is keyed by holder: changes of different holders write different rows
        and commute, only the order of each holder's own changes matters. So the k-th change of
        every holder goes in round k, rounds are applied in order, and a round (a holder at
        most once) takes at most three statements.
        """
        rounds: list[list[HoldChange]] = []
        seen: dict[UUID, int] = {}
        for change in changes:
            round_ = seen.get(change.holder_id, 0)
            seen[change.holder_id] = round_ + 1
            if round_ == len(rounds):
                rounds.append([])
            rounds[round_].append(change)
        touched = {slot_id for change in changes for slot_id in change.slots}
        for changes_of_round in rounds:
            touched.update(await self._apply_round(changes_of_round))
        await self.recount(touched)

    async def _apply_round(self, changes: Sequence[HoldChange]) -> list[UUID]:
        """Apply changes of distinct holders; returns the slots whose place was given back.

        Moves first update the holds they move; then one insert takes the places of the holds
        and of the moves of holders not seen before (as :meth:`move_hold` does), leaving every
        known holder alone; then the releases. Rows are written in holder id order.
        """
        ordered = sorted(changes, key=lambda change: change.holder_id)
        moves = [change for change in ordered if isinstance(change, Move)]
        takes = [
            (change.holder_id, change.new_slot_id if isinstance(change, Move) else change.slot_id)
            for change in ordered
            if not isinstance(change, Release)
        ]
        releases = [change for change in ordered if isinstance(change, Release)]
        if moves:
            await self.session.execute(
                _MOVE_HELD,
                {
                    "holders": [move.holder_id for move in moves],
                    "old_slots": [move.old_slot_id for move in moves],
                    "new_slots": [move.new_slot_id for move in moves],
                },
            )
        if takes:
            holders, slots = zip(*takes, strict=True)
            await self.session.execute(_HOLD, {"holders": list(holders), "slots": list(slots)})
        if not releases:
            return []
        released = await self.session.scalars(
            _RELEASE,
            {
                "holders": [change.holder_id for change in releases],
                "slots": [change.slot_id for change in releases],
            },
        )
        return list(released)

    async def recount(self, slot_ids: Iterable[UUID | None]) -> None:
        """Set ``booked_count`` of the slots to their number of unreleased holds.

        The slots' rows are locked first, in id order, by a statement of their own: two
        transactions recounting overlapping slots then wait for each other instead of locking
        them in different orders (a deadlock), and the count, taken by the next statement once
        the rows are locked, sees the holds of the transaction it waited for.
        """
        ids = bindparam("ids", sorted({s for s in slot_ids if s is not None}), type_=_UUIDS)
        locked = (
            select(timeslots.c.id)
            .where(timeslots.c.id == any_(ids))
            .order_by(timeslots.c.id)
            .with_for_update()
        )
        await self.session.execute(locked)
        held = (
            select(func.count())
            .select_from(slot_holds)
            .where(slot_holds.c.slot_id == timeslots.c.id, slot_holds.c.released.is_(False))
            .scalar_subquery()
        )
        statement = (
            update(timeslots)
            .where(timeslots.c.id == any_(ids))
            .values(booked_count=held, updated_at=func.now())
        )
        await self.session.execute(statement)

    async def search(
        self,
        *,
        room_id: UUID | None,
        room_type: RoomType | None,
        date_from: date,
        date_to: date,
        min_duration: timedelta | None,
        now: datetime,
        after: tuple[datetime, UUID] | None,
        limit: int,
    ) -> list[Available]:
        """Open future slots with places left whose start lies on the local dates given.

        With ``min_duration``, only starts from which back-to-back free slots of the same room
        cover at least that long (runs may continue past the last date).
        """
        statement = _PLAIN_SEARCH if min_duration is None else _RUNS_SEARCH
        after_start, after_id = after or _NO_CURSOR
        params = {
            "room_id": room_id,
            "room_type": room_type.value if room_type else None,
            "date_from": date_from,
            "date_to": date_to,
            "now": now,
            "run_reach": min_duration or timedelta(0),
            "min_duration": min_duration or timedelta(0),
            "after_start": after_start,
            "after_id": after_id,
            "limit": limit,
        }
        return [
            Available(
                slot_id=row.id,
                room_id=row.room_id,
                room_name=row.room_name,
                time_zone=row.time_zone,
                starts_at=row.starts_at,
                ends_at=row.ends_at,
                price=Money.of(row.price, row.currency),
                places_left=row.places_left,
                free_minutes=row.free_minutes,
            )
            for row in await self.session.execute(statement, params)
        ]
