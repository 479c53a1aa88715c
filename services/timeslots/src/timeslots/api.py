"""HTTP routes: request -> use case in one transaction -> response. Admins write, users read."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import Annotated
from uuid import UUID
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Depends, Query

from booking_contracts.catalogue import RoomType, SlotStatus
from platform_runtime.http.auth import AdminUser, CurrentUser
from platform_runtime.http.context import RequestContext, built_on_the_loop, request_context
from platform_runtime.http.inputs import CalendarDate
from platform_runtime.http.pagination import (
    IdCursor,
    TimeAndIdCursor,
    decode_id,
    decode_time_and_id,
    encode_cursor,
)
from platform_runtime.http.problems import PROBLEM_RESPONSES
from timeslots import domain, handlers, schemas
from timeslots.store import SqlStore

router = APIRouter(responses=PROBLEM_RESPONSES)

Ctx = Annotated[RequestContext[handlers.Limits], Depends(request_context)]
Limit = Annotated[int, Query(ge=1, le=500, description="Page size")]
From = Annotated[
    CalendarDate | None, Query(alias="from", description="First local date, inclusive")
]
To = Annotated[CalendarDate | None, Query(alias="to", description="Last local date, inclusive")]
On = Annotated[CalendarDate | None, Query(alias="date", description="One local date")]
MinDuration = Annotated[
    int | None,
    Query(ge=1, le=24 * 60, description="Minutes of consecutive free time needed from a start"),
]


@asynccontextmanager
async def _store(ctx: RequestContext[handlers.Limits]) -> AsyncIterator[SqlStore]:
    """The request's transaction, seen through the store."""
    async with ctx.transaction() as session:
        yield SqlStore(session)


# --- rooms -----------------------------------------------------------------------------


def _room_out(room: domain.Room) -> schemas.RoomOut:
    return schemas.RoomOut.model_validate(room, from_attributes=True)


@router.post("/rooms", status_code=201, tags=["rooms"])
async def create_room(body: schemas.RoomIn, ctx: Ctx, _: AdminUser) -> schemas.RoomOut:
    """Create an active room (admins); it has no schedule and no slots yet.

    Publishes `RoomUpserted`, then `RoomRulesSet` with its rules in force (the defaults of its
    type and of the platform)."""
    async with _store(ctx) as store:
        room = await handlers.create_room(
            store, ctx.runtime.outbox, body.command(), defaults=ctx.config.rule_defaults
        )
    return _room_out(room)


@router.get("/rooms", tags=["rooms"])
async def list_rooms(
    ctx: Ctx,
    _: CurrentUser,
    room_type: RoomType | None = None,
    active: bool | None = None,
    limit: Limit = 50,
    cursor: IdCursor = None,
) -> schemas.RoomPage:
    """Rooms in id order, of the type and active state if given; a page at a time."""
    after = decode_id(cursor)
    async with _store(ctx) as store:
        found = await store.list_rooms(
            room_type=room_type, active=active, after=after, limit=limit + 1
        )
    page = found[:limit]
    next_cursor = encode_cursor(page[-1].id) if len(found) > limit else None
    return schemas.RoomPage(items=[_room_out(room) for room in page], next_cursor=next_cursor)


@router.get("/rooms/{room_id}", tags=["rooms"])
async def get_room(room_id: UUID, ctx: Ctx, _: CurrentUser) -> schemas.RoomOut:
    """One room, active or not (404 if there is none of that id)."""
    async with _store(ctx) as store:
        return _room_out(await store.get_room(room_id))


@router.patch("/rooms/{room_id}", tags=["rooms"])
async def update_room(
    room_id: UUID, body: schemas.RoomPatch, ctx: Ctx, _: AdminUser
) -> schemas.RoomOut:
    """Change the room's fields present in the body (admins); an empty body changes nothing.

    Slots already generated keep their price and times; a new time zone or hourly rate
    applies to slots generated afterwards. Publishes `RoomUpserted` when something changed,
    and `RoomRulesSet` when a new room type changes the rules in force. A room type whose
    defaults contradict the room's own rules is a 422 `urn:problem:invalid_rules`."""
    async with _store(ctx) as store:
        room = await handlers.update_room(
            store,
            ctx.runtime.outbox,
            room_id,
            body.command(),
            defaults=ctx.config.rule_defaults,
        )
    return _room_out(room)


@router.post("/rooms/{room_id}/deactivate", tags=["rooms"])
async def deactivate_room(room_id: UUID, ctx: Ctx, _: AdminUser) -> schemas.RoomOut:
    """No new bookings or slots for the room; existing bookings stay."""
    async with _store(ctx) as store:
        room = await handlers.set_room_active(store, ctx.runtime.outbox, room_id, active=False)
    return _room_out(room)


@router.post("/rooms/{room_id}/activate", tags=["rooms"])
async def activate_room(room_id: UUID, ctx: Ctx, _: AdminUser) -> schemas.RoomOut:
    """Reactivate a deactivated room (admins): it takes new bookings and slots again. An
    active room stays as it is. Publishes `RoomUpserted` when the room was inactive."""
    async with _store(ctx) as store:
        room = await handlers.set_room_active(store, ctx.runtime.outbox, room_id, active=True)
    return _room_out(room)


# --- booking rules ---------------------------------------------------------------------


def _rules_out(view: handlers.RoomRulesView) -> schemas.RoomRulesOut:
    return schemas.RoomRulesOut(
        room_id=view.room_id,
        rules=view.rules,
        own=dict(view.own.values),
        room_version=view.room_version,
    )


@router.put("/rooms/{room_id}/rules", tags=["rules"])
async def put_room_rules(
    room_id: UUID, body: schemas.RoomRulesIn, ctx: Ctx, _: AdminUser
) -> schemas.RoomRulesOut:
    """Replace the booking rules the room sets itself (admins): a rule left out is inherited
    from its type's defaults or else the platform's; `{}` makes it inherit every rule.
    Publishes `RoomRulesSet` when the rules in force change; the same rules again change
    nothing.

    Beyond the schema: the rules in force (these over the defaults) have a horizon longer
    than the notice to book, at most one quota per window and scope and at most one refund
    tier per notice; otherwise a 422 `urn:problem:invalid_rules`."""
    async with _store(ctx) as store:
        view = await handlers.set_room_rules(
            store, ctx.runtime.outbox, room_id, body.command(), defaults=ctx.config.rule_defaults
        )
    return _rules_out(view)


@router.get("/rooms/{room_id}/rules", tags=["rules"])
async def get_room_rules(room_id: UUID, ctx: Ctx, _: CurrentUser) -> schemas.RoomRulesOut:
    """The booking rules in force for the room, as last published (those bookings follow),
    and the rules it sets itself."""
    async with _store(ctx) as store:
        view = await handlers.get_room_rules(store, room_id, defaults=ctx.config.rule_defaults)
    return _rules_out(view)


# --- schedules -------------------------------------------------------------------------


def _schedule_out(schedule: domain.StoredSchedule, time_zone: str) -> schemas.ScheduleOut:
    return schemas.ScheduleOut(
        room_id=schedule.room_id,
        time_zone=time_zone,
        open_weekdays=list(schedule.open_weekdays),
        weekday_hours={
            weekday: [schemas.Interval(start=start, end=end) for start, end in spans]
            for weekday, spans in schedule.weekday_hours.items()
        },
        slot_minutes=schedule.slot_minutes,
        buffer_minutes=schedule.buffer_minutes,
        max_bookings=schedule.max_bookings,
        excluded_dates=list(schedule.excluded_dates),
        blackouts=[schemas.Blackout(starts_at=s, ends_at=e) for s, e in schedule.blackouts],
        updated_at=schedule.updated_at,
    )


@router.put("/rooms/{room_id}/schedule", tags=["schedules"])
async def put_schedule(
    room_id: UUID, body: schemas.ScheduleIn, ctx: Ctx, _: AdminUser
) -> schemas.ScheduleOut:
    """Replace the room's working hours; slots already generated stay as they are.

    Beyond the schema: each working interval ends after it starts and intervals of a day do
    not overlap, each blackout ends after it starts, every open weekday has hours, and a slot
    plus its buffer fits a day; otherwise a 422 `urn:problem:invalid_schedule`."""
    async with _store(ctx) as store:
        schedule, time_zone = await handlers.put_schedule(store, room_id, body.command())
    return _schedule_out(schedule, time_zone)


@router.get("/rooms/{room_id}/schedule", tags=["schedules"])
async def get_schedule(room_id: UUID, ctx: Ctx, _: CurrentUser) -> schemas.ScheduleOut:
    """The room's working hours, in its local time (409 while the room has no schedule)."""
    async with _store(ctx) as store:
        schedule, time_zone = await handlers.get_schedule(store, room_id)
    return _schedule_out(schedule, time_zone)


# --- slots -----------------------------------------------------------------------------


def _slot_out(slot: domain.Slot) -> schemas.SlotOut:
    return schemas.SlotOut.model_validate(slot, from_attributes=True)


@router.post("/rooms/{room_id}/slots/generate", tags=["slots"])
async def generate_slots(
    room_id: UUID, body: schemas.GenerateIn, ctx: Ctx, _: AdminUser
) -> schemas.GenerationOut:
    """Create the schedule's slots on the local dates given; existing slots are kept.

    Beyond the schema: `date_to` is not before `date_from`, and the range has at most
    `generation_max_days` (default 366) days; otherwise a 422 `urn:problem:invalid_range`."""
    async with _store(ctx) as store:
        result = await handlers.generate(
            store,
            ctx.runtime.outbox,
            room_id,
            date_from=body.date_from,
            date_to=body.date_to,
            price_override=body.price_override,
            limits=ctx.config,
        )
    return schemas.GenerationOut(
        room_id=result.room_id,
        date_from=result.date_from,
        date_to=result.date_to,
        created=result.created,
        skipped=result.skipped,
        first_starts_at=result.first_starts_at,
        last_starts_at=result.last_starts_at,
    )


@router.post("/rooms/{room_id}/slots", status_code=201, tags=["slots"])
async def add_custom_slots(
    room_id: UUID, body: schemas.CustomSlotsIn, ctx: Ctx, _: AdminUser
) -> list[schemas.SlotOut]:
    """Add explicit slots: all or none (409 if one overlaps a slot of the room).

    Beyond the schema: each slot starts and ends on whole minutes, ends after it starts, is
    at most `custom_slot_max_minutes` long, starts in the future and at most
    `custom_slot_horizon_days` (default 732) days ahead, is priced in the room's currency and
    does not overlap another slot of the request; at most `custom_slots_max` slots per
    request. Otherwise a 422 `urn:problem:invalid_slot`."""
    async with _store(ctx) as store:
        created = await handlers.add_custom_slots(
            store,
            ctx.runtime.outbox,
            room_id,
            [slot.command() for slot in body.slots],
            now=ctx.clock(),
            limits=ctx.config,
        )
    return [_slot_out(slot) for slot in created]


@router.get("/rooms/{room_id}/slots", tags=["slots"])
async def list_slots(
    room_id: UUID,
    ctx: Ctx,
    _: AdminUser,
    date_from: From = None,
    date_to: To = None,
    on: On = None,
    limit: Limit = 100,
    cursor: TimeAndIdCursor = None,
) -> schemas.SlotPage:
    """Every slot of the room starting on the local dates given, blocked and full ones too.

    Give `date`, or `from` and `to` at most `search_max_days` (default 31) days apart, `to`
    not before `from`; otherwise a 422 `urn:problem:invalid_range`."""
    first, last = handlers.search_range(
        on=on, date_from=date_from, date_to=date_to, max_days=ctx.config.search_max_days
    )
    after = decode_time_and_id(cursor)
    async with _store(ctx) as store:
        room = await store.get_room(room_id)
        start, end = domain.local_days(room.time_zone, first, last)
        found = await store.list_slots(room_id, start=start, end=end, after=after, limit=limit + 1)
    page = found[:limit]
    next_cursor = encode_cursor(page[-1].starts_at, page[-1].id) if len(found) > limit else None
    return schemas.SlotPage(items=[_slot_out(slot) for slot in page], next_cursor=next_cursor)


@router.get("/slots/{slot_id}", tags=["slots"])
async def get_slot(slot_id: UUID, ctx: Ctx, _: CurrentUser) -> schemas.SlotOut:
    """One slot, blocked and full ones too (404 if there is none of that id)."""
    async with _store(ctx) as store:
        return _slot_out(await store.get_slot(slot_id))


@router.post("/slots/{slot_id}/block", tags=["slots"])
async def block_slot(slot_id: UUID, ctx: Ctx, _: AdminUser) -> schemas.SlotOut:
    """Take the slot out of sale (maintenance); bookings it already has stay."""
    return await _set_status(ctx, slot_id, SlotStatus.BLOCKED)


@router.post("/slots/{slot_id}/unblock", tags=["slots"])
async def unblock_slot(slot_id: UUID, ctx: Ctx, _: AdminUser) -> schemas.SlotOut:
    """Put a blocked slot on sale again (admins); an open slot stays as it is."""
    return await _set_status(ctx, slot_id, SlotStatus.OPEN)


async def _set_status(
    ctx: RequestContext[handlers.Limits], slot_id: UUID, status: SlotStatus
) -> schemas.SlotOut:
    async with _store(ctx) as store:
        slot = await handlers.set_slot_status(store, ctx.runtime.outbox, slot_id, status)
    return _slot_out(slot)


# --- availability ----------------------------------------------------------------------


@dataclass(frozen=True)
class AvailabilityQuery:
    """The query of both availability searches: local dates, run length, page."""

    on: On = None
    date_from: From = None
    date_to: To = None
    min_duration: MinDuration = None
    limit: Limit = 50
    cursor: TimeAndIdCursor = None

    async def run(
        self,
        ctx: RequestContext[handlers.Limits],
        store: handlers.Store,
        *,
        room_id: UUID | None = None,
        room_type: RoomType | None = None,
    ) -> schemas.AvailabilityPage:
        first, last = handlers.search_range(
            on=self.on,
            date_from=self.date_from,
            date_to=self.date_to,
            max_days=ctx.config.search_max_days,
        )
        found = await store.search(
            room_id=room_id,
            room_type=room_type,
            date_from=first,
            date_to=last,
            min_duration=timedelta(minutes=self.min_duration) if self.min_duration else None,
            now=ctx.clock(),
            after=decode_time_and_id(self.cursor),
            limit=self.limit + 1,
        )
        page = found[: self.limit]
        next_cursor = (
            encode_cursor(page[-1].starts_at, page[-1].slot_id) if len(found) > self.limit else None
        )
        return schemas.AvailabilityPage(
            items=[_available_out(item) for item in page], next_cursor=next_cursor
        )


Search = Annotated[AvailabilityQuery, Depends(built_on_the_loop(AvailabilityQuery))]


@router.get("/rooms/{room_id}/availability", tags=["availability"])
async def room_availability(
    room_id: UUID, query: Search, ctx: Ctx, _: CurrentUser
) -> schemas.AvailabilityPage:
    """Free future slots of the room on local dates (the room's time zone), by start.

    Give `date`, or `from` and `to` at most `search_max_days` (default 31) days apart, `to`
    not before `from`; otherwise a 422 `urn:problem:invalid_range`."""
    async with _store(ctx) as store:
        await store.get_room(room_id)
        return await query.run(ctx, store, room_id=room_id)


@router.get("/availability", tags=["availability"])
async def availability_by_type(
    room_type: RoomType, query: Search, ctx: Ctx, _: CurrentUser
) -> schemas.AvailabilityPage:
    """Free future slots of every active room of a type, each on its own local dates.

    Give `date`, or `from` and `to` at most `search_max_days` (default 31) days apart, `to`
    not before `from`; otherwise a 422 `urn:problem:invalid_range`."""
    async with _store(ctx) as store:
        return await query.run(ctx, store, room_type=room_type)


def _available_out(item: domain.Available) -> schemas.AvailableSlot:
    zone = ZoneInfo(item.time_zone)
    return schemas.AvailableSlot(
        slot_id=item.slot_id,
        room_id=item.room_id,
        room_name=item.room_name,
        time_zone=item.time_zone,
        starts_at=item.starts_at,
        ends_at=item.ends_at,
        local_starts_at=item.starts_at.astimezone(zone),
        local_ends_at=item.ends_at.astimezone(zone),
        price=item.price,
        places_left=item.places_left,
        free_minutes=item.free_minutes,
    )
