"""Operator tasks run from the ``timeslots`` command: straight to the database, no HTTP.

:func:`generate_slots` fills the slots of many rooms, each room in its own transaction, so
one room that cannot be filled (unknown, inactive, without a schedule) neither stops nor
undoes the others. Its ``SlotsGenerated`` events go to the outbox like those of the HTTP
API; the running service's relay publishes them, so no Kafka connection is needed here.

:func:`sync_rules` publishes the booking rules in force of every room whose rules differ from
those it last published, a page of rooms per transaction; the worker runs it when it starts,
so that a deploy that changes the defaults (settings) republishes exactly the rooms it changes.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import Any, Protocol, TextIO
from uuid import UUID

from booking_contracts.money import Money
from platform_runtime import progress
from platform_runtime.db import make_engine, make_session_factory
from platform_runtime.outbox import Outbox
from platform_runtime.transactions import SqlTransactions, Stores
from timeslots import domain, handlers, models
from timeslots.handlers import Store
from timeslots.settings import TimeslotsSettings
from timeslots.store import SqlStore

SOURCE = "/timeslots"
_REASON_MAX_CHARS = 500

# --- results ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RoomResult:
    """What generation did for one room: slots created and skipped, or why it failed."""

    room_id: UUID
    created: int = 0
    skipped: int = 0
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


@dataclass(frozen=True, slots=True)
class GenerationReport:
    date_from: date
    date_to: date
    price_override: Decimal | None
    results: tuple[RoomResult, ...]
    seconds: float

    @property
    def created(self) -> int:
        return sum(r.created for r in self.results)

    @property
    def skipped(self) -> int:
        return sum(r.skipped for r in self.results)

    @property
    def failed(self) -> list[RoomResult]:
        return [r for r in self.results if not r.ok]

    @property
    def slots_per_second(self) -> float:
        return self.created / self.seconds if self.seconds > 0 else 0.0

    @property
    def exit_code(self) -> int:
        """0 when every room was filled, 1 when any failed."""
        return 1 if self.failed else 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "date_from": self.date_from.isoformat(),
            "date_to": self.date_to.isoformat(),
            "price_override": None if self.price_override is None else str(self.price_override),
            "rooms": len(self.results),
            "rooms_failed": len(self.failed),
            "slots_created": self.created,
            "slots_skipped": self.skipped,
            "seconds": round(self.seconds, 3),
            "slots_per_second": round(self.slots_per_second, 1),
            "failed": [{"room_id": str(r.room_id), "reason": r.error} for r in self.failed],
            "results": [
                {"room_id": str(r.room_id), "created": r.created, "skipped": r.skipped}
                for r in self.results
                if r.ok
            ],
        }

    def render_text(self) -> str:
        failed = self.failed
        price = "" if self.price_override is None else f", price override {self.price_override}"
        lines = [
            f"Slot generation {self.date_from.isoformat()}..{self.date_to.isoformat()}{price}",
            f"  rooms:          {len(self.results)} "
            f"({len(self.results) - len(failed)} ok, {len(failed)} failed)",
            f"  slots created:  {self.created}",
            f"  slots skipped:  {self.skipped} (already existed)",
            f"  seconds:        {self.seconds:.2f}",
            f"  slots/s:        {self.slots_per_second:.1f}",
        ]
        if failed:
            lines.append("Failed rooms:")
            lines.extend(f"  {r.room_id}: {r.error}" for r in failed)
        return "\n".join(lines) + "\n"


# --- progress --------------------------------------------------------------------------


class Progress(Protocol):
    def start(self, total: int) -> None: ...

    def advance(self, result: RoomResult) -> None: ...

    def close(self) -> None: ...


class ProgressBar:
    """Rooms done of all and slots created so far: the kernel's progress line
    (:class:`platform_runtime.progress.ProgressBar`), redrawn in place on a terminal, a plain line
    every ``log_interval_s`` seconds and a final one anywhere else."""

    def __init__(
        self,
        stream: TextIO,
        *,
        interactive: bool | None = None,
        clock: Callable[[], float] = time.monotonic,
        redraw_interval_s: float = 0.1,
        log_interval_s: float = 30.0,
    ) -> None:
        self._bar = progress.ProgressBar(
            stream,
            label="generate rooms",
            interactive=interactive,
            clock=clock,
            redraw_interval_s=redraw_interval_s,
            log_interval_s=log_interval_s,
        )
        self.total = 0
        self.done = 0
        self.created = 0
        self.failed = 0

    @property
    def interactive(self) -> bool:
        return self._bar.interactive

    def start(self, total: int) -> None:
        self.total = total
        self._bar.update(0, total, self._detail())

    def advance(self, result: RoomResult) -> None:
        self.done += 1
        self.created += result.created
        self.failed += 0 if result.ok else 1
        self._bar.update(self.done, self.total, self._detail())

    def close(self) -> None:
        self._bar.close()

    def line(self) -> str:
        """The progress as text, without any control character."""
        return self._bar.line()

    def _detail(self) -> str:
        failed = f"{self.failed} failed, " if self.failed else ""
        return f"{failed}{self.created} slots created"


# --- generation ------------------------------------------------------------------------


async def generate_slots(
    stores: Stores[Any, Store],
    outbox: Outbox,
    room_ids: Sequence[UUID] | None,
    *,
    date_from: date,
    date_to: date,
    price_override: Decimal | None = None,
    limits: handlers.Limits = handlers.Limits(),
    progress: Progress,
    jobs: int = 1,
    clock: Callable[[], float] = time.perf_counter,
) -> GenerationReport:
    """Generate the slots of ``room_ids`` (``None``: every active room), room by room.

    ``price_override`` is an amount in each room's own currency. A room that fails is
    reported with the reason and the others go on; ``progress`` hears of every room done.
    ``jobs`` rooms are generated at once, each in its own transaction (on a connection of
    its own), so the database writes one room while Python expands the next.
    """
    started = clock()
    if room_ids is None:
        async with stores.begin() as store:
            room_ids = await store.active_room_ids()
    progress.start(len(room_ids))
    pending = iter(room_ids)
    results: dict[UUID, RoomResult] = {}

    async def worker() -> None:
        for room_id in pending:  # the workers share one iterator: each room once
            result = await _generate_room(
                stores,
                outbox,
                room_id,
                date_from=date_from,
                date_to=date_to,
                price_override=price_override,
                limits=limits,
            )
            results[room_id] = result
            progress.advance(result)

    try:
        await asyncio.gather(*(worker() for _ in range(max(1, min(jobs, len(room_ids))))))
    finally:
        progress.close()
    return GenerationReport(
        date_from=date_from,
        date_to=date_to,
        price_override=price_override,
        results=tuple(results[room_id] for room_id in room_ids if room_id in results),
        seconds=clock() - started,
    )


async def _generate_room(
    stores: Stores[Any, Store],
    outbox: Outbox,
    room_id: UUID,
    *,
    date_from: date,
    date_to: date,
    price_override: Decimal | None,
    limits: handlers.Limits,
) -> RoomResult:
    try:
        async with stores.begin() as store:
            price = None
            if price_override is not None:
                room = await store.get_room(room_id)
                price = override_price(price_override, room.hourly_rate.currency)
            generation = await handlers.generate(
                store,
                outbox,
                room_id,
                date_from=date_from,
                date_to=date_to,
                price_override=price,
                limits=limits,
            )
    except domain.TimeslotError as exc:
        return RoomResult(room_id, error=_reason(str(exc)))
    except Exception as exc:  # reported with the room; the other rooms go on
        return RoomResult(room_id, error=_reason(f"{type(exc).__name__}: {exc}"))
    return RoomResult(room_id, created=generation.created, skipped=generation.skipped)


def override_price(amount: Decimal, currency: str) -> Money:
    """``amount`` in ``currency``; refused (not rounded) if finer than the currency allows."""
    price = Money.of(amount, currency)
    if price.amount != amount:
        raise domain.InvalidSlot(
            f"price override {amount} has more decimal places than {currency} allows"
        )
    return price


def _reason(text: str) -> str:
    """The first line of an error, short enough for a summary."""
    first = text.strip().splitlines()[0] if text.strip() else "unknown error"
    return first if len(first) <= _REASON_MAX_CHARS else first[: _REASON_MAX_CHARS - 1] + "…"


async def generate_with_settings(
    settings: TimeslotsSettings,
    room_ids: Sequence[UUID] | None,
    *,
    date_from: date,
    date_to: date,
    price_override: Decimal | None,
    limits: handlers.Limits,
    progress: Progress,
    jobs: int = 1,
) -> GenerationReport:
    """:func:`generate_slots` on the database of ``settings``, with an engine of its own."""
    engine = make_engine(
        settings.database_url,
        pool_size=max(1, jobs),
        max_overflow=0,
        application_name=f"{settings.service_name}-generate",
    )
    try:
        return await generate_slots(
            Stores(SqlTransactions(make_session_factory(engine), models.inbox), SqlStore),
            Outbox(models.outbox, source=SOURCE),
            room_ids,
            date_from=date_from,
            date_to=date_to,
            price_override=price_override,
            limits=limits,
            progress=progress,
            jobs=jobs,
        )
    finally:
        await engine.dispose()


# --- booking rules ---------------------------------------------------------------------

RULES_PAGE = 200
"""Rooms locked and compared per transaction by :func:`sync_rules`."""


@dataclass(frozen=True, slots=True)
class RulesSync:
    """What :func:`sync_rules` did: rooms compared, rooms whose rules it published, and rooms
    whose own rules contradict the defaults (their rules in force stay as last published)."""

    rooms: int
    published: tuple[UUID, ...]
    invalid: dict[UUID, str]


async def sync_rules(
    stores: Stores[Any, Store],
    outbox: Outbox,
    defaults: domain.RuleDefaults,
    *,
    page: int = RULES_PAGE,
    stop: asyncio.Event | None = None,
) -> RulesSync:
    """Publish the rules in force of every room, in id order, that differ from those it last
    published (:func:`timeslots.handlers.publish_rules_of_rooms`, one page a transaction).

    Safe to run in several processes at once: each page's rooms are locked before they are
    compared, so a room's change is published by whichever process locks it first, and the
    others find it published. ``stop`` ends it between two pages."""
    after: UUID | None = None
    rooms = 0
    published: list[UUID] = []
    invalid: dict[UUID, str] = {}
    while stop is None or not stop.is_set():
        async with stores.begin() as store:
            done = await handlers.publish_rules_of_rooms(
                store, outbox, after=after, limit=page, defaults=defaults
            )
        rooms += done.rooms
        published += done.published
        invalid |= done.invalid
        if done.rooms < page:
            break
        after = done.last_room_id
    return RulesSync(rooms, tuple(published), invalid)
