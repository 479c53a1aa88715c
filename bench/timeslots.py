"""Slot generation and search benchmark of the timeslots service (``make bench-timeslots``).

Runs against the local PostgreSQL (``TEST_POSTGRES_DSN``, else the ``deploy/local`` default)
in a database of its own that is created, migrated to head and dropped again. Measures:

1. **ours**: the operator bulk path, ``operations.generate_slots(..., jobs=2)`` (what
   ``timeslots generate --all-rooms`` runs), for 100 rooms x 365 days of 30-minute slots
   09:00-17:00 Monday-Friday (417,600 slots), with the ``SlotsGenerated`` outbox events it
   writes; the same with ``jobs=1`` is reported too, and where the time goes;
2. **raw SQL**: the same rows (checked by an md5 over the sorted rows) written by one
   ``INSERT ... SELECT`` over ``generate_series`` into the same, emptied table;
3. **naive**: one overlap ``SELECT`` and one single-row ``INSERT`` per slot, for 20 rooms x
   90 days (rates are compared, not times);
4. **search**: ``store.search`` latency for one room and one day, with and without
   ``min_duration``, in a table of more than 1,000,000 slots.

Writes ``bench/results/timeslots.json`` and ``bench/results/timeslots.png`` and prints a
table. Every figure is measured in this run; a missed target is reported as missed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import statistics
import sys
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from datetime import time as clock
from pathlib import Path
from typing import Any

import asyncpg
import sqlalchemy
from sqlalchemy import bindparam, text
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession, async_sessionmaker

import timeslots
from booking_contracts.catalogue import RoomType, SlotsGenerated
from booking_contracts.envelope import Envelope
from booking_contracts.money import Money
from platform_runtime.db import make_engine, make_session_factory
from platform_runtime.migrations import upgrade
from platform_runtime.outbox import Outbox
from platform_runtime.transactions import SqlTransactions, Stores
from timeslots import domain, handlers, models, operations, schemas, store
from timeslots.store import SqlStore

RESULTS = Path(__file__).resolve().parent / "results"
# As ``timeslots.cli.ALEMBIC_INI``, without importing the CLI (and the whole app with it).
ALEMBIC_INI = Path(timeslots.__file__).resolve().parents[2] / "alembic.ini"
DEFAULT_DSN = "postgresql://platform:platform@127.0.0.1:55432"
SOURCE = "/timeslots"

# --- the workload ----------------------------------------------------------------------

ROOMS = 100
DATE_FROM = date(2027, 1, 4)  # a Monday
DATE_TO = date(2028, 1, 3)  # a Monday: 365 days, 261 of them weekdays
SLOTS_PER_DAY = 16  # 09:00-17:00 in 30-minute slots
TIME_ZONE = "Europe/Berlin"
HOURLY_RATE = Money.of("30.00", "EUR")
JOBS = 2  # as ``timeslots generate --jobs`` defaults to; the pool has as many connections
LIMITS = handlers.Limits()

NAIVE_ROOMS = 20
NAIVE_DATE_TO = date(2027, 4, 3)  # 90 days from DATE_FROM, 65 of them weekdays

SEARCH_ROOMS = 240  # x 261 weekdays x 16 = 1,002,240 slots
SEARCH_CALLS = 1000
SEARCH_WARMUP = 100
SEARCH_MIN_DURATION = timedelta(minutes=90)
SEARCH_NOW = datetime(2026, 12, 1, tzinfo=UTC)  # before every slot: none is in the past
SEED = 20270104

TARGET_SPEEDUP_VS_NAIVE = 30.0
TARGET_RATIO_VS_RAW_SQL = 2 / 3


def weekdays(date_from: date, date_to: date) -> list[date]:
    days = (date_to - date_from).days + 1
    every = (date_from + timedelta(days=n) for n in range(days))
    return [day for day in every if day.isoweekday() <= 5]


SLOTS = ROOMS * len(weekdays(DATE_FROM, DATE_TO)) * SLOTS_PER_DAY
NAIVE_SLOTS = NAIVE_ROOMS * len(weekdays(DATE_FROM, NAIVE_DATE_TO)) * SLOTS_PER_DAY
SEARCH_SLOTS = SEARCH_ROOMS * len(weekdays(DATE_FROM, DATE_TO)) * SLOTS_PER_DAY
assert SLOTS == 417_600, SLOTS
assert SEARCH_SLOTS >= 1_000_000, SEARCH_SLOTS


# --- SQL of the references -------------------------------------------------------------

# The same rows as the service generates, computed by PostgreSQL alone: every room with a
# schedule, every day of the range that is an open weekday, 09:00-17:00 local time cut
# into slots of the schedule's length, converted to UTC with the room's time zone. One
# statement, so the table's statement-level trigger (timeslots_check) runs once.
RAW_SQL_GENERATE = text(
    """
    INSERT INTO timeslots (room_id, starts_at, ends_at, price, currency, max_bookings)
    SELECT r.id,
           (d.day + make_interval(mins => 540 + s.slot_minutes * i)) AT TIME ZONE r.time_zone,
           (d.day + make_interval(mins => 540 + s.slot_minutes * (i + 1)))
               AT TIME ZONE r.time_zone,
           round(r.hourly_rate * s.slot_minutes / 60, 2),
           r.currency,
           s.max_bookings
    FROM rooms r
    JOIN schedules s ON s.room_id = r.id
    CROSS JOIN generate_series(
        CAST(:date_from AS date)::timestamp, CAST(:date_to AS date)::timestamp, interval '1 day'
    ) AS d(day)
    CROSS JOIN generate_series(0, 480 / s.slot_minutes - 1) AS i
    WHERE r.id = ANY(CAST(:room_ids AS uuid[]))
      AND CAST(extract(isodow FROM d.day) AS smallint) = ANY(s.open_weekdays)
    """
)

FINGERPRINT = text(
    """
    SELECT count(*),
           md5(string_agg(
               concat_ws('|', room_id, extract(epoch FROM starts_at),
                         extract(epoch FROM ends_at), price, currency, max_bookings,
                         booked_count, status, revision),
               ',' ORDER BY room_id, starts_at))
    FROM timeslots
    """
)

# The SlotsGenerated events against the table: how many slots they carry, how many distinct
# ones, and which slots are announced but not in the table (or announced with another span,
# or in the table but never announced). Exact coverage: all counts but the first two are 0.
OUTBOX_COVERAGE = text(
    """
    WITH announced AS (
        SELECT CAST(s ->> 'slot_id' AS uuid) AS slot_id,
               CAST(s ->> 'room_id' AS uuid) AS room_id,
               CAST(s ->> 'starts_at' AS timestamptz) AS starts_at,
               CAST(s ->> 'ends_at' AS timestamptz) AS ends_at
        FROM outbox o
        CROSS JOIN LATERAL jsonb_array_elements(o.payload -> 'data' -> 'slots') AS s
        WHERE o.event_type = :event_type
    )
    SELECT (SELECT count(*) FROM outbox WHERE event_type = :event_type) AS events,
           (SELECT coalesce(sum(jsonb_array_length(payload -> 'data' -> 'slots')), 0)
            FROM outbox WHERE event_type = :event_type) AS slots,
           (SELECT coalesce(sum(pg_column_size(payload)), 0)
            FROM outbox WHERE event_type = :event_type) AS payload_bytes,
           (SELECT count(DISTINCT slot_id) FROM announced) AS distinct_slots,
           count(*) FILTER (WHERE t.id IS NULL) AS not_in_table,
           count(*) FILTER (WHERE a.slot_id IS NULL) AS not_announced,
           count(*) FILTER (
               WHERE a.slot_id IS NOT NULL AND t.id IS NOT NULL
                 AND (a.room_id, a.starts_at, a.ends_at) <> (t.room_id, t.starts_at, t.ends_at)
           ) AS different_span
    FROM announced a
    FULL JOIN timeslots t ON t.id = a.slot_id
    """
)

NAIVE_OVERLAP = text(
    """
    SELECT 1 FROM timeslots
    WHERE room_id = :room_id AND starts_at < :ends_at AND ends_at > :starts_at
    LIMIT 1
    """
)

NAIVE_INSERT = text(
    """
    INSERT INTO timeslots (room_id, starts_at, ends_at, price, currency, max_bookings)
    VALUES (:room_id, :starts_at, :ends_at, :price, :currency, :max_bookings)
    """
)

# For the breakdown only: the slots of one room from the same arrays as the service passes,
# without the events (what ``store.insert_generated`` did before it wrote the events too).
SLOTS_ONLY_INSERT = text(
    """
    INSERT INTO timeslots (room_id, starts_at, ends_at, price, currency, max_bookings)
    SELECT :room_id, span.starts_at, span.ends_at, :price, :currency, :max_bookings
    FROM unnest(:starts, :ends) AS span(starts_at, ends_at)
    ON CONFLICT (room_id, starts_at) DO NOTHING
    """
).bindparams(
    bindparam("starts", type_=ARRAY(sqlalchemy.DateTime(timezone=True))),
    bindparam("ends", type_=ARRAY(sqlalchemy.DateTime(timezone=True))),
)


# --- helpers ---------------------------------------------------------------------------


def percentile(samples: Sequence[float], q: int) -> float:
    """The ``q``-th percentile (1-99), interpolated like numpy's default."""
    return statistics.quantiles(samples, n=100, method="inclusive")[q - 1]


def rate(slots: int, seconds: float) -> float:
    return slots / seconds if seconds > 0 else float("inf")


class Quiet:
    """An ``operations.Progress`` that shows nothing (the benchmark prints its own lines)."""

    def start(self, total: int) -> None:
        pass

    def advance(self, result: operations.RoomResult) -> None:
        pass

    def close(self) -> None:
        pass


_TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _process_cpu_s(pid: int) -> float | None:
    """User + system CPU seconds of a process on this machine (None if not visible)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return (int(fields[11]) + int(fields[12])) / _TICK  # utime, stime


def _machine_cpu_s() -> tuple[float, float] | None:
    """CPU seconds of all cores since boot: busy (not idle, iowait or steal), and stolen by
    the hypervisor (other virtual machines on the host)."""
    try:
        ticks = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    except (OSError, ValueError):
        return None
    user, nice, system, _idle, _iowait, irq, softirq, steal = ticks[:8]
    return (user + nice + system + irq + softirq) / _TICK, steal / _TICK


@dataclass
class CpuMeter:
    """Where the CPU went during a measurement (``with CpuMeter(pids) as cpu: ...``).

    This process (Python, asyncpg included), the PostgreSQL backends of the pool, and the
    whole machine; ``other`` is the rest (other tests, PostgreSQL's background processes,
    the kernel), ``steal`` what the hypervisor gave to other machines. Read from ``/proc``:
    the backends of a PostgreSQL in a container are not visible (``None``).
    """

    backend_pids: Sequence[int]
    wall_s: float = 0.0
    python_s: float = 0.0
    postgres_s: float | None = None
    machine_s: float | None = None
    steal_s: float | None = None
    _wall: float = 0.0
    _python: float = 0.0
    _backends: list[float | None] = field(default_factory=list)
    _machine: tuple[float, float] | None = None

    def __enter__(self) -> CpuMeter:
        self._backends = [_process_cpu_s(pid) for pid in self.backend_pids]
        self._machine = _machine_cpu_s()
        self._python = time.process_time()
        self._wall = time.perf_counter()
        return self

    def __exit__(self, *_: object) -> None:
        self.wall_s = time.perf_counter() - self._wall
        self.python_s = time.process_time() - self._python
        machine = _machine_cpu_s()
        if machine is not None and self._machine is not None:
            self.machine_s = machine[0] - self._machine[0]
            self.steal_s = machine[1] - self._machine[1]
        spent = [
            None if before is None or after is None else after - before
            for before, after in zip(
                self._backends, (_process_cpu_s(pid) for pid in self.backend_pids), strict=True
            )
        ]
        known = [seconds for seconds in spent if seconds is not None]
        self.postgres_s = sum(known) if spent and len(known) == len(spent) else None

    def as_dict(self) -> dict[str, float | None]:
        others = None
        if self.machine_s is not None:
            others = self.machine_s - self.python_s - (self.postgres_s or 0.0)
        return {
            "wall_s": self.wall_s,
            "python_cpu_s": self.python_s,
            "postgres_backends_cpu_s": self.postgres_s,
            "machine_busy_cpu_s": self.machine_s,
            "other_cpu_s": others,
            "steal_s": self.steal_s,
        }


@dataclass
class SlowPlans:
    """Plans of the statements (nested ones included: the trigger's queries) that ran longer
    than ``threshold`` on the pool's connections, by ``auto_explain`` without ANALYZE (no
    per-row cost). Empty if the server refuses ``LOAD`` (not a superuser)."""

    threshold: str = "5s"
    phase: str = "setup"
    enabled: bool = False
    plans: list[dict[str, str]] = field(default_factory=list)

    def listen(self, _connection: object, message: Any) -> None:
        text_ = str(getattr(message, "message", message))
        if text_.startswith("duration:"):
            self.plans.append({"during": self.phase, "plan": text_})

    async def watch(self, connection: AsyncConnection) -> None:
        try:
            for statement in (
                "LOAD 'auto_explain'",
                f"SET auto_explain.log_min_duration = '{self.threshold}'",
                "SET auto_explain.log_nested_statements = on",
                "SET client_min_messages = log",
            ):
                await connection.execute(text(statement))
            await connection.commit()
        except DBAPIError:
            await connection.rollback()
            return
        raw = await connection.get_raw_connection()
        raw.driver_connection.add_log_listener(self.listen)  # type: ignore[union-attr]
        self.enabled = True


# --- the database ----------------------------------------------------------------------


def admin_dsn() -> str:
    return (os.environ.get("TEST_POSTGRES_DSN") or DEFAULT_DSN).rstrip("/")


async def create_database(dsn: str, name: str) -> None:
    admin = await asyncpg.connect(f"{dsn}/postgres")
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()


async def drop_database(dsn: str, name: str) -> None:
    admin = await asyncpg.connect(f"{dsn}/postgres")
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


async def checkpoint(engine: AsyncEngine) -> None:
    """Flush dirty pages before a write measurement, so that it does not pay for the last one.

    Needs a superuser (or ``pg_checkpoint``); without one the measurement just runs.
    """
    try:
        async with engine.connect() as connection:
            await connection.execute(text("CHECKPOINT"))
    except DBAPIError:
        pass


async def truncate(engine: AsyncEngine) -> None:
    async with engine.begin() as connection:
        await connection.execute(text("TRUNCATE timeslots, outbox"))
    await checkpoint(engine)


async def fingerprint(engine: AsyncEngine) -> tuple[int, str]:
    async with engine.connect() as connection:
        count, digest = (await connection.execute(FINGERPRINT)).one()
    return int(count), str(digest)


async def pool_pids(
    engine: AsyncEngine, size: int, slow_plans: SlowPlans | None = None
) -> list[int]:
    """Open all ``size`` connections of the pool at once; their backends' process ids.

    With ``slow_plans``, each connection also reports the plans of its slow statements.
    """
    connections = [await engine.connect() for _ in range(size)]
    try:
        pids = []
        for connection in connections:
            pids.append(
                int((await connection.execute(text("SELECT pg_backend_pid()"))).scalar_one())
            )
            if slow_plans is not None:
                await slow_plans.watch(connection)
        return pids
    finally:
        for connection in connections:
            await connection.close()


TABLE_STATE = text(
    """
    SELECT c.relpages, c.reltuples, s.n_live_tup, s.n_mod_since_analyze,
           s.last_analyze, s.last_autoanalyze, s.autoanalyze_count,
           (SELECT n_distinct FROM pg_stats
            WHERE tablename = 'timeslots' AND attname = 'room_id') AS room_id_n_distinct
    FROM pg_class c
    JOIN pg_stat_user_tables s ON s.relid = c.oid
    WHERE c.oid = CAST('timeslots' AS regclass)
    """
)


async def table_state(engine: AsyncEngine) -> dict[str, Any]:
    """What the planner knows of ``timeslots`` (its statistics) before a measurement."""
    async with engine.connect() as connection:
        row = (await connection.execute(TABLE_STATE)).one()
    return {
        key: value.isoformat() if isinstance(value, datetime) else value
        for key, value in row._asdict().items()
    }


async def server_facts(engine: AsyncEngine) -> dict[str, str]:
    names = ("server_version", "shared_buffers", "fsync", "synchronous_commit", "max_wal_size")
    async with engine.connect() as connection:
        return {
            name: str((await connection.execute(text(f"SHOW {name}"))).scalar_one())
            for name in names
        }


# --- setup -----------------------------------------------------------------------------


async def create_rooms(
    sessions: async_sessionmaker[AsyncSession], outbox: Outbox, count: int, first: int
) -> list[uuid.UUID]:
    """``count`` rooms with the 09:00-17:00 Monday-Friday 30-minute schedule, via the handlers."""
    schedule = schemas.ScheduleIn(hours=[schemas.Interval(start=clock(9), end=clock(17))])
    ids = []
    async with sessions() as session, session.begin():
        for number in range(first, first + count):
            body = schemas.RoomIn(
                name=f"Room {number:03d}",
                capacity=4,
                room_type=RoomType.MEETING,
                hourly_rate=HOURLY_RATE,
                time_zone=TIME_ZONE,
            )
            room = await handlers.create_room(
                SqlStore(session), outbox, body.command(), defaults=domain.RuleDefaults()
            )
            await handlers.put_schedule(SqlStore(session), room.id, schedule.command())
            ids.append(room.id)
    return ids


# --- the measurements ------------------------------------------------------------------


@dataclass
class Announced:
    """The ``SlotsGenerated`` events in the outbox, checked against the table."""

    events: int
    slots: int
    distinct_slots: int
    payload_bytes: int
    not_in_table: int
    not_announced: int
    different_span: int
    sample_event_valid: bool

    @property
    def exact(self) -> bool:
        """Every slot of the table announced once, with its span, and nothing else."""
        return (
            self.slots == self.distinct_slots == SLOTS
            and self.not_in_table == self.not_announced == self.different_span == 0
            and self.sample_event_valid
        )


async def announced(engine: AsyncEngine) -> Announced:
    async with engine.connect() as connection:
        row = (
            await connection.execute(OUTBOX_COVERAGE, {"event_type": SlotsGenerated.type_name()})
        ).one()
        # One event read back as the relay's consumers will: a valid envelope and event.
        payload = (
            await connection.execute(
                sqlalchemy.select(models.outbox.c.payload)
                .where(models.outbox.c.event_type == SlotsGenerated.type_name())
                .order_by(models.outbox.c.id)
                .limit(1)
            )
        ).scalar_one()
    event = SlotsGenerated.model_validate(Envelope.model_validate(payload).data)
    return Announced(
        events=int(row.events),
        slots=int(row.slots),
        distinct_slots=int(row.distinct_slots),
        payload_bytes=int(row.payload_bytes),
        not_in_table=int(row.not_in_table),
        not_announced=int(row.not_announced),
        different_span=int(row.different_span),
        sample_event_valid=len(event.slots) == LIMITS.slots_per_event,
    )


@dataclass
class Ours:
    jobs: int
    seconds: float
    report_seconds: float
    slots: int
    rows: int
    md5_rows: str
    announced: Announced
    cpu: CpuMeter
    load_1m: float


async def measure_ours(
    engine: AsyncEngine,
    sessions: async_sessionmaker[AsyncSession],
    room_ids: Sequence[uuid.UUID],
    *,
    jobs: int,
    backend_pids: Sequence[int],
) -> Ours:
    """``operations.generate_slots`` for all rooms into the emptied tables, untouched."""
    outbox = Outbox(models.outbox, source=SOURCE)
    await checkpoint(engine)
    load = os.getloadavg()[0]
    with CpuMeter(backend_pids) as cpu:
        report = await operations.generate_slots(
            Stores(SqlTransactions(sessions, models.inbox), SqlStore),
            outbox,
            room_ids,
            date_from=DATE_FROM,
            date_to=DATE_TO,
            limits=LIMITS,
            progress=Quiet(),
            jobs=jobs,
        )
    assert not report.failed, report.failed[:3]
    rows, digest = await fingerprint(engine)
    return Ours(
        jobs=jobs,
        seconds=cpu.wall_s,
        report_seconds=report.seconds,
        slots=report.created,
        rows=rows,
        md5_rows=digest,
        announced=await announced(engine),
        cpu=cpu,
        load_1m=load,
    )


@dataclass
class Breakdown:
    expand: CpuMeter
    reads: CpuMeter
    insert_generated: CpuMeter
    slots_only_insert: CpuMeter


async def measure_breakdown(
    engine: AsyncEngine,
    sessions: async_sessionmaker[AsyncSession],
    room_ids: Sequence[uuid.UUID],
    backend_pids: Sequence[int],
) -> Breakdown:
    """The parts of ``handlers.generate``, each measured alone for all rooms, one by one.

    1. ``domain.expand`` on the same input as ``handlers.generate`` gives it (Python only);
    2. the rest of ``handlers.generate`` before its INSERT, with the transaction around it:
       the room read ``FOR UPDATE``, the schedule, the span lists, ``store.spans_between``
       and ``store.without_overlaps``, the commit (on the empty table);
    3. ``store.insert_generated`` (slots and events in one statement, its ``pg_notify``,
       a session and transaction per room, the commit) on the spans expanded beforehand;
    4. the same spans by a plain ``INSERT ... SELECT FROM unnest(...)``, without events.

    The writes start from emptied tables and leave them empty.
    """
    async with sessions() as session:
        inputs = [
            (
                await SqlStore(session).get_room(room_id),
                await SqlStore(session).get_schedule(room_id),
            )
            for room_id in room_ids
        ]
    expanded = []
    with CpuMeter(backend_pids) as expand:
        for room, stored in inputs:
            assert stored is not None
            expanded.append(
                domain.expand(
                    stored.to_domain(room.time_zone),
                    date_from=DATE_FROM,
                    date_to=DATE_TO,
                    hourly_rate=room.hourly_rate,
                    max_days=LIMITS.generation_max_days,
                )
            )

    await truncate(engine)
    work = []
    with CpuMeter(backend_pids) as reads:
        for room_id, specs in zip(room_ids, expanded, strict=True):
            async with sessions() as session, session.begin():
                await SqlStore(session).get_room(room_id, lock=True)
                stored = await SqlStore(session).get_schedule(room_id)
                assert stored is not None
                starts = [spec.starts_at for spec in specs]
                ends = [spec.ends_at for spec in specs]
                existing = await SqlStore(session).spans_between(room_id, starts[0], ends[-1])
                starts, ends = domain.without_overlaps(existing, starts, ends)
            work.append((room_id, starts, ends, specs[0].price, stored.max_bookings))
    outbox = Outbox(models.outbox, source=SOURCE)

    await truncate(engine)
    created = 0
    with CpuMeter(backend_pids) as insert_generated:
        for room_id, starts, ends, price, max_bookings in work:
            async with sessions() as session, session.begin():
                inserted = await SqlStore(session).insert_generated(
                    outbox,
                    room_id=room_id,
                    starts=starts,
                    ends=ends,
                    price=price,
                    max_bookings=max_bookings,
                    slots_per_event=LIMITS.slots_per_event,
                )
            created += inserted.created
    assert created == SLOTS, created

    await truncate(engine)
    created = 0
    with CpuMeter(backend_pids) as slots_only_insert:
        for room_id, starts, ends, price, max_bookings in work:
            async with sessions() as session, session.begin():
                result = await session.execute(
                    SLOTS_ONLY_INSERT,
                    {
                        "room_id": room_id,
                        "starts": starts,
                        "ends": ends,
                        "price": price.amount,
                        "currency": price.currency,
                        "max_bookings": max_bookings,
                    },
                )
            created += result.rowcount  # type: ignore[attr-defined]
    assert created == SLOTS, created
    await truncate(engine)
    return Breakdown(expand, reads, insert_generated, slots_only_insert)


@dataclass
class Raw:
    seconds: float
    rows: int
    md5_rows: str
    cpu: CpuMeter
    load_1m: float
    table_before: dict[str, Any]


async def raw_sql_insert(engine: AsyncEngine, room_ids: Sequence[uuid.UUID]) -> float:
    """Seconds of the one-statement reference for ``room_ids``, its commit included."""
    async with engine.begin() as connection:
        started = time.perf_counter()
        result = await connection.execute(
            RAW_SQL_GENERATE,
            {"date_from": DATE_FROM, "date_to": DATE_TO, "room_ids": list(room_ids)},
        )
    seconds = time.perf_counter() - started
    expected = len(room_ids) * SLOTS // ROOMS
    assert result.rowcount == expected, (result.rowcount, expected)
    return seconds


async def measure_raw_sql(
    engine: AsyncEngine, room_ids: Sequence[uuid.UUID], backend_pids: Sequence[int]
) -> Raw:
    await checkpoint(engine)
    before = await table_state(engine)
    load = os.getloadavg()[0]
    with CpuMeter(backend_pids) as cpu:
        seconds = await raw_sql_insert(engine, room_ids)
    rows, digest = await fingerprint(engine)
    return Raw(
        seconds=seconds, rows=rows, md5_rows=digest, cpu=cpu, load_1m=load, table_before=before
    )


async def measure_naive(
    engine: AsyncEngine, sessions: async_sessionmaker[AsyncSession], room_ids: Sequence[uuid.UUID]
) -> tuple[list[float], int, list[str]]:
    """Expand in Python, then per slot: is there an overlapping slot? if not, insert it.

    Returns the seconds of each room, the slots created and the plan of the overlap check as
    the last slot of a room runs it. The check is planned for its values each time
    (``plan_cache_mode = force_custom_plan``: the driver prepares statements, and a generic
    plan may scan the whole table) on current statistics (``ANALYZE`` between rooms, off
    the clock: those of the empty table may lead to the same). Either would slow the naive
    side down by chance, and with it raise our ratio.
    """
    await checkpoint(engine)
    created = 0
    room_seconds = []
    for room_id in room_ids:
        started = time.perf_counter()
        async with sessions() as session, session.begin():
            await session.execute(text("SET LOCAL plan_cache_mode = force_custom_plan"))
            room = await SqlStore(session).get_room(room_id, lock=True)
            stored = await SqlStore(session).get_schedule(room_id)
            assert stored is not None
            specs = domain.expand(
                stored.to_domain(room.time_zone),
                date_from=DATE_FROM,
                date_to=NAIVE_DATE_TO,
                hourly_rate=room.hourly_rate,
            )
            for spec in specs:
                span = {"room_id": room_id, "starts_at": spec.starts_at, "ends_at": spec.ends_at}
                if (await session.execute(NAIVE_OVERLAP, span)).first() is None:
                    await session.execute(
                        NAIVE_INSERT,
                        span
                        | {
                            "price": spec.price.amount,
                            "currency": spec.price.currency,
                            "max_bookings": stored.max_bookings,
                        },
                    )
                    created += 1
        room_seconds.append(time.perf_counter() - started)
        async with engine.connect() as connection:
            await connection.execute(text("ANALYZE timeslots"))
            await connection.commit()
    async with engine.connect() as connection:
        last = (
            await connection.execute(
                text("SELECT max(ends_at) FROM timeslots WHERE room_id = :room_id"),
                {"room_id": room_ids[0]},
            )
        ).scalar_one()
        span = {"room_id": room_ids[0], "starts_at": last, "ends_at": last + timedelta(minutes=30)}
        explain = text("EXPLAIN (ANALYZE, BUFFERS, TIMING OFF) " + str(NAIVE_OVERLAP.text))
        naive_plan = [str(line) for line in (await connection.execute(explain, span)).scalars()]
    return room_seconds, created, naive_plan


@dataclass
class Latencies:
    plain_ms: list[float]
    min_duration_ms: list[float]
    fill_seconds: float
    fill_slots: int
    table_slots: int
    plan: list[str]


async def measure_search(
    engine: AsyncEngine,
    sessions: async_sessionmaker[AsyncSession],
    room_ids: Sequence[uuid.UUID],
    new_room_ids: Sequence[uuid.UUID],
) -> Latencies:
    """Search latency once the slots of ``new_room_ids`` joined those in the table."""
    fill_seconds = await raw_sql_insert(engine, new_room_ids)
    async with engine.connect() as connection:
        await connection.execution_options(isolation_level="AUTOCOMMIT")
        await connection.execute(text("VACUUM ANALYZE timeslots, rooms"))
        count = (await connection.execute(text("SELECT count(*) FROM timeslots"))).scalar_one()
        table_slots = int(count)
    assert table_slots == SEARCH_SLOTS, table_slots

    choice = random.Random(SEED)
    everyone = [*room_ids, *new_room_ids]
    days = weekdays(DATE_FROM, DATE_TO)

    async def one(min_duration: timedelta | None, expected: int) -> float:
        room_id, day = choice.choice(everyone), choice.choice(days)
        async with sessions() as session:
            await session.connection()  # pool checkout and pre-ping are not the search
            started = time.perf_counter()
            found = await SqlStore(session).search(
                room_id=room_id,
                room_type=None,
                date_from=day,
                date_to=day,
                min_duration=min_duration,
                now=SEARCH_NOW,
                after=None,
                limit=50,
            )
            elapsed = time.perf_counter() - started
        assert len(found) == expected, (room_id, day, min_duration, len(found))
        assert all(slot.room_id == room_id for slot in found)
        return elapsed * 1000

    # From a 90-minute minimum, a start at 15:30 is the last one: 14 of the 16 slots qualify.
    runs = {None: SLOTS_PER_DAY, SEARCH_MIN_DURATION: SLOTS_PER_DAY - 2}
    samples: dict[timedelta | None, list[float]] = {}
    for min_duration, expected in runs.items():
        for _ in range(SEARCH_WARMUP):
            await one(min_duration, expected)
        samples[min_duration] = [await one(min_duration, expected) for _ in range(SEARCH_CALLS)]

    search_sql = getattr(store, "_PLAIN", None)  # the plain search statement, if still there
    if not isinstance(search_sql, str):
        return Latencies(
            plain_ms=samples[None],
            min_duration_ms=samples[SEARCH_MIN_DURATION],
            fill_seconds=fill_seconds,
            fill_slots=len(new_room_ids) * SLOTS // ROOMS,
            table_slots=table_slots,
            plan=[],
        )
    async with engine.connect() as connection:
        params = {
            "room_id": room_ids[0],
            "room_type": None,
            "date_from": days[0],
            "date_to": days[0],
            "now": SEARCH_NOW,
            "run_reach": timedelta(0),
            "min_duration": timedelta(0),
            "after_start": datetime(1, 1, 1, tzinfo=UTC),
            "after_id": uuid.UUID(int=0),
            "limit": 50,
        }
        explain = text("EXPLAIN (ANALYZE, BUFFERS, TIMING OFF) " + search_sql)
        plan = [str(line) for line in (await connection.execute(explain, params)).scalars()]
    return Latencies(
        plain_ms=samples[None],
        min_duration_ms=samples[SEARCH_MIN_DURATION],
        fill_seconds=fill_seconds,
        fill_slots=len(new_room_ids) * SLOTS // ROOMS,
        table_slots=table_slots,
        plan=plan,
    )


# --- report ----------------------------------------------------------------------------


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def chart(report: dict[str, Any], latencies: Latencies, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (rates, search) = plt.subplots(
        1, 2, figsize=(13, 5.5), gridspec_kw={"width_ratios": [3, 2]}
    )
    names = [
        f"naive\n({report['naive']['rooms']} rooms x {report['naive']['days']} days)",
        "ours, jobs=1\ngenerate_slots\n(with outbox)",
        f"ours, jobs={report['jobs']}\ngenerate_slots\n(with outbox)",
        "raw SQL\nINSERT...SELECT\n(no outbox)",
    ]
    values = [
        report["naive_slots_per_s"],
        report["sequential_slots_per_s"],
        report["slots_per_s"],
        report["raw_sql_slots_per_s"],
    ]
    colours = ["#999999", "#aec7e8", "#1f77b4", "#2ca02c"]
    bars = rates.bar(names, values, color=colours)
    rates.set_yscale("log")
    rates.set_ylabel("slots per second (log scale)")
    rates.set_title(f"Slot generation, {report['slots']:,} slots ({ROOMS} rooms x 365 days)")
    naive_target = TARGET_SPEEDUP_VS_NAIVE * report["naive_slots_per_s"]
    raw_target = TARGET_RATIO_VS_RAW_SQL * report["raw_sql_slots_per_s"]
    rates.axhline(naive_target, color="#d62728", linestyle="--", linewidth=1)
    rates.axhline(raw_target, color="#ff7f0e", linestyle=":", linewidth=1.5)
    rates.text(
        -0.45, naive_target * 1.08, f"target: {TARGET_SPEEDUP_VS_NAIVE:.0f}x naive", fontsize=8
    )
    rates.text(-0.45, raw_target * 1.08, "target: 2/3 of raw SQL", fontsize=8)
    for bar, value in zip(bars, values, strict=True):
        rates.text(
            bar.get_x() + bar.get_width() / 2,
            value * 1.06,
            f"{value:,.0f}/s",
            ha="center",
            va="bottom",
            fontsize=9,
            fontweight="bold",
        )
    rates.set_ylim(min(values) / 2, max([*values, naive_target, raw_target]) * 2)
    rates.tick_params(axis="x", labelsize=8)

    search.boxplot(
        [latencies.plain_ms, latencies.min_duration_ms],
        whis=(1, 99),
        showfliers=True,
        flierprops={"markersize": 2},
    )
    search.set_xticks([1, 2], ["one room, one day", f"+ min_duration {SEARCH_MIN_DURATION}"])
    search.set_ylabel("ms (box: p25-p75, whiskers: p1-p99)")
    search.set_title(
        f"store.search over {latencies.table_slots:,} slots, {SEARCH_CALLS} calls each"
    )
    for position, key in ((1, "search"), (2, "search_min_duration")):
        p50, p99 = report[f"{key}_p50_ms"], report[f"{key}_p99_ms"]
        search.annotate(
            f"p50 {p50:.2f} ms\np99 {p99:.2f} ms",
            (position, p99),
            xytext=(position + 0.12, p99),
            fontsize=8,
        )
    search.set_ylim(bottom=0)
    load = report["machine"]["load_average_1m_before_after"]
    fig.suptitle(
        f"timeslots benchmark, {report['machine']['timestamp']}, "
        f"{report['machine']['cpu_count']} CPUs (load {load[0]:.1f} before, {load[1]:.1f} "
        f"after), PostgreSQL {report['machine']['postgres']['server_version'].split()[0]}",
        fontsize=10,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def yes_no(value: bool) -> str:
    return "yes" if value else "NO"


def table(report: dict[str, Any]) -> str:
    rows = [
        ("figure", "value", "reference", "ratio", "target met"),
        (f"generation, ours, jobs={report['jobs']} (slots/s)", f"{report['slots_per_s']:,.0f}"),
        (
            "  vs naive (slots/s)",
            "",
            f"{report['naive_slots_per_s']:,.0f}",
            f"{report['speedup_vs_naive']:.1f}x (>= {TARGET_SPEEDUP_VS_NAIVE:.0f}x)",
            yes_no(report["meets_naive_target"]),
        ),
        (
            "  vs raw SQL (slots/s)",
            "",
            f"{report['raw_sql_slots_per_s']:,.0f}",
            f"{report['ratio_vs_raw_sql']:.2f} (>= {TARGET_RATIO_VS_RAW_SQL:.2f})",
            yes_no(report["meets_raw_sql_target"]),
        ),
        (
            "generation, ours, jobs=1 (slots/s)",
            f"{report['sequential_slots_per_s']:,.0f}",
            "",
            f"{report['sequential_speedup_vs_naive']:.1f}x naive, "
            f"{report['sequential_ratio_vs_raw_sql']:.2f} of raw SQL",
        ),
        ("raw SQL vs naive (the ceiling)", "", "", f"{report['raw_sql_speedup_vs_naive']:.1f}x"),
        ("search p50 / p99 (ms)", f"{report['search_p50_ms']:.2f} / {report['search_p99_ms']:.2f}"),
        (
            f"  min_duration {SEARCH_MIN_DURATION} p50 / p99",
            f"{report['search_min_duration_p50_ms']:.2f} / "
            f"{report['search_min_duration_p99_ms']:.2f}",
        ),
    ]
    widths = [max(len(row[i]) if i < len(row) else 0 for row in rows) for i in range(5)]
    lines = [
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=False))
        for row in rows
    ]
    lines.insert(1, "-" * len(lines[0]))
    return "\n".join(line.rstrip() for line in lines)


BREAKDOWN = (
    ("expand", "domain.expand (Python)"),
    ("reads", "room lock, schedule, spans_between, without_overlaps"),
    ("insert_generated", "store.insert_generated + COMMIT (slots + events)"),
    ("slots_only_insert", "  of which the slots alone (INSERT ... unnest)"),
    ("events", "  of which building and writing the events"),
    ("sum_of_parts", "sum of the parts (not counting the two 'of which')"),
)


def seconds(value: float | None) -> str:
    return "     -" if value is None else f"{value:6.2f}"


def breakdown_table(report: dict[str, Any]) -> str:
    parts = report["breakdown"]["parts"]
    lines = [
        "where ours spends its time, each part measured alone for all rooms one by one",
        f"  {'part':<52} {'wall s':>6}  {'Python CPU s':>12}  {'PostgreSQL CPU s':>16}",
    ]
    for key, label in BREAKDOWN:
        part = parts[key]
        lines.append(
            f"  {label:<52} {seconds(part['wall_s'])}  {seconds(part['python_cpu_s']):>12}  "
            f"{seconds(part['postgres_backends_cpu_s']):>16}"
        )
    lines.append("and during the measured runs (CPU seconds from /proc):")
    for name, key in (
        (f"ours, jobs={report['jobs']}", "ours"),
        ("ours, jobs=1", "sequential"),
        ("raw SQL", "raw_sql"),
    ):
        cpu = report[key]["cpu"]
        lines.append(
            f"  {name:<48} {seconds(cpu['wall_s'])}  {seconds(cpu['python_cpu_s']):>12}  "
            f"{seconds(cpu['postgres_backends_cpu_s']):>16}  other {seconds(cpu['other_cpu_s'])}"
            f"  stolen {seconds(cpu['steal_s'])}"
        )
    return "\n".join(lines)


def ours_entry(ours: Ours, raw: Raw, path: str) -> dict[str, Any]:
    return {
        "path": path,
        "jobs": ours.jobs,
        "rooms": ROOMS,
        "slots": ours.slots,
        "seconds": ours.seconds,
        "operations_report_seconds": ours.report_seconds,
        "slots_per_s": rate(SLOTS, ours.seconds),
        "rows": ours.rows,
        "md5_rows": ours.md5_rows,
        "same_rows_as_raw_sql": (ours.rows, ours.md5_rows) == (raw.rows, raw.md5_rows),
        "outbox": {
            "slots_generated_events": ours.announced.events,
            "slots_in_events": ours.announced.slots,
            "distinct_slots_in_events": ours.announced.distinct_slots,
            "announced_not_in_table": ours.announced.not_in_table,
            "in_table_not_announced": ours.announced.not_announced,
            "announced_with_another_span": ours.announced.different_span,
            "first_event_is_a_valid_SlotsGenerated": ours.announced.sample_event_valid,
            "payload_bytes": ours.announced.payload_bytes,
            "covers_exactly_the_slots": ours.announced.exact,
        },
        "cpu": ours.cpu.as_dict(),
        "load_1m_at_start": ours.load_1m,
    }


# --- main ------------------------------------------------------------------------------


async def run() -> tuple[dict[str, Any], Latencies]:
    dsn = admin_dsn()
    name = f"bench_timeslots_{uuid.uuid4().hex[:10]}"
    url = f"{dsn.replace('postgresql://', 'postgresql+asyncpg://', 1)}/{name}"
    began = time.perf_counter()
    load_before = os.getloadavg()[0]  # other work on the machine skews every figure
    await create_database(dsn, name)
    # The pool holds one connection per job, as ``generate_with_settings`` sizes it.
    engine = make_engine(url, pool_size=JOBS, max_overflow=0, application_name="bench-timeslots")
    try:
        print(f"database {name}: migrating to head", flush=True)
        await asyncio.to_thread(upgrade, ALEMBIC_INI, url)
        sessions = make_session_factory(engine)
        outbox = Outbox(models.outbox, source=SOURCE)
        facts = await server_facts(engine)
        slow = SlowPlans()
        backend_pids = await pool_pids(engine, JOBS, slow)

        def phase(name: str, line: str) -> None:
            slow.phase = name
            print(line, flush=True)

        room_ids = await create_rooms(sessions, outbox, ROOMS, first=1)
        async with engine.connect() as connection:
            await connection.execution_options(isolation_level="AUTOCOMMIT")
            await connection.execute(text("TRUNCATE outbox"))  # the RoomUpserted events
            await connection.execute(text("VACUUM ANALYZE rooms, schedules"))

        phase("naive", f"naive: {NAIVE_ROOMS} rooms x 90 days, two statements per slot")
        naive_load = os.getloadavg()[0]
        with CpuMeter(backend_pids) as naive_cpu:
            naive_rooms, naive_slots, naive_plan = await measure_naive(
                engine, sessions, room_ids[:NAIVE_ROOMS]
            )
        naive_seconds = sum(naive_rooms)
        assert naive_slots == NAIVE_SLOTS, naive_slots
        print(f"  {rate(NAIVE_SLOTS, naive_seconds):,.0f} slots/s", flush=True)

        phase("breakdown", "breakdown: expand, reads, store.insert_generated, slots alone")
        breakdown = await measure_breakdown(engine, sessions, room_ids, backend_pids)

        phase("ours, jobs=1", f"ours: generate_slots, jobs=1, {ROOMS} rooms x 365 days")
        sequential = await measure_ours(
            engine, sessions, room_ids, jobs=1, backend_pids=backend_pids
        )
        await truncate(engine)
        print(f"  {rate(SLOTS, sequential.seconds):,.0f} slots/s", flush=True)

        phase(f"ours, jobs={JOBS}", f"ours: operations.generate_slots, jobs={JOBS}")
        ours = await measure_ours(engine, sessions, room_ids, jobs=JOBS, backend_pids=backend_pids)
        await truncate(engine)
        print(f"  {rate(SLOTS, ours.seconds):,.0f} slots/s", flush=True)

        phase("raw SQL", "raw SQL: one INSERT ... SELECT")
        raw = await measure_raw_sql(engine, room_ids, backend_pids)
        print(f"  {rate(SLOTS, raw.seconds):,.0f} slots/s", flush=True)
        # The CPU of the backends is read by process id: the pool must have kept them.
        assert sorted(backend_pids) == sorted(await pool_pids(engine, JOBS)), "pool changed"

        phase("search", f"search: {SEARCH_ROOMS} rooms x 365 days in the table")
        new_rooms = await create_rooms(sessions, outbox, SEARCH_ROOMS - ROOMS, first=ROOMS + 1)
        latencies = await measure_search(engine, sessions, room_ids, new_rooms)
    finally:
        await engine.dispose()
        await drop_database(dsn, name)

    for run_ in (sequential, ours):
        assert run_.slots == SLOTS, (run_.jobs, run_.slots)
    slots_per_s = rate(SLOTS, ours.seconds)
    sequential_per_s = rate(SLOTS, sequential.seconds)
    naive_per_s = rate(NAIVE_SLOTS, naive_seconds)
    raw_per_s = rate(SLOTS, raw.seconds)
    measured = {
        "expand": breakdown.expand,
        "reads": breakdown.reads,
        "insert_generated": breakdown.insert_generated,
        "slots_only_insert": breakdown.slots_only_insert,
    }
    parts: dict[str, dict[str, float | None]] = {
        name: meter.as_dict() for name, meter in measured.items()
    }
    parts["events"] = {
        key: None
        if value is None or parts["slots_only_insert"][key] is None
        else value - (parts["slots_only_insert"][key] or 0.0)
        for key, value in parts["insert_generated"].items()
    }
    parts["sum_of_parts"] = {
        key: sum((parts[name][key] or 0.0) for name in ("expand", "reads", "insert_generated"))
        for key in ("wall_s", "python_cpu_s", "postgres_backends_cpu_s")
    }
    report: dict[str, Any] = {
        "benchmark": "timeslots generation and search",
        "slots": SLOTS,
        "rooms": ROOMS,
        "days": (DATE_TO - DATE_FROM).days + 1,
        "date_from": DATE_FROM.isoformat(),
        "date_to": DATE_TO.isoformat(),
        "schedule": f"{TIME_ZONE}, Monday-Friday 09:00-17:00, 30-minute slots, 30.00 EUR/h",
        "jobs": JOBS,
        "seconds": ours.seconds,
        "slots_per_s": slots_per_s,
        "sequential_slots_per_s": sequential_per_s,
        "naive_slots_per_s": naive_per_s,
        "raw_sql_slots_per_s": raw_per_s,
        "speedup_vs_naive": slots_per_s / naive_per_s,
        "ratio_vs_raw_sql": slots_per_s / raw_per_s,
        "sequential_speedup_vs_naive": sequential_per_s / naive_per_s,
        "sequential_ratio_vs_raw_sql": sequential_per_s / raw_per_s,
        "raw_sql_speedup_vs_naive": raw_per_s / naive_per_s,
        "target_speedup_vs_naive": TARGET_SPEEDUP_VS_NAIVE,
        "target_ratio_vs_raw_sql": TARGET_RATIO_VS_RAW_SQL,
        "meets_naive_target": slots_per_s >= TARGET_SPEEDUP_VS_NAIVE * naive_per_s,
        "meets_raw_sql_target": slots_per_s >= TARGET_RATIO_VS_RAW_SQL * raw_per_s,
        "search_p50_ms": percentile(latencies.plain_ms, 50),
        "search_p99_ms": percentile(latencies.plain_ms, 99),
        "search_min_duration_p50_ms": percentile(latencies.min_duration_ms, 50),
        "search_min_duration_p99_ms": percentile(latencies.min_duration_ms, 99),
        "ours": ours_entry(
            ours,
            raw,
            f"operations.generate_slots(..., jobs={JOBS}) as `timeslots generate --all-rooms` "
            f"runs it: {JOBS} rooms at once, each in its own transaction on its own pooled "
            f"connection (pool_size={JOBS}), handlers.generate per room, SlotsGenerated "
            "events included, no instrumentation",
        ),
        "sequential": ours_entry(
            sequential, raw, "the same with jobs=1: one room after another, one connection"
        ),
        "breakdown": {
            "parts": parts,
            "note": (
                "each part measured alone, for all 100 rooms one by one (see "
                "measure_breakdown): expand = domain.expand on the same input (Python); "
                "reads = the rest of handlers.generate before its INSERT with the "
                "transaction around it (room FOR UPDATE, schedule, span lists, "
                "spans_between, without_overlaps, commit); insert_generated = "
                "store.insert_generated on the spans expanded beforehand, with its session, "
                "transaction, pg_notify and COMMIT; slots_only_insert = the same spans by "
                "INSERT ... SELECT FROM unnest(...) ON CONFLICT DO NOTHING, no events; "
                "events = insert_generated - slots_only_insert. Each part has its wall "
                "time and the CPU seconds of this process (Python) and of the PostgreSQL "
                "backends; sum_of_parts compares with ours, jobs=1 (the operations loop "
                "and the noise between separate measurements make the difference)"
            ),
        },
        "raw_sql": {
            "statement": " ".join(str(RAW_SQL_GENERATE.text).split()),
            "slots": SLOTS,
            "seconds": raw.seconds,
            "rows": raw.rows,
            "md5_rows": raw.md5_rows,
            "cpu": raw.cpu.as_dict(),
            "load_1m_at_start": raw.load_1m,
            "timeslots_statistics_before": raw.table_before,
            "note": (
                "one INSERT ... SELECT into the emptied table (TRUNCATE), its commit "
                "included; the statement-level trigger timeslots_check runs once for all "
                "rows; no outbox rows"
            ),
        },
        "naive": {
            "rooms": NAIVE_ROOMS,
            "days": (NAIVE_DATE_TO - DATE_FROM).days + 1,
            "date_to": NAIVE_DATE_TO.isoformat(),
            "slots": naive_slots,
            "seconds": naive_seconds,
            "overlap_check": " ".join(str(NAIVE_OVERLAP.text).split()),
            "cpu": naive_cpu.as_dict(),
            "load_1m_at_start": naive_load,
            "seconds_per_room": {
                "first": naive_rooms[0],
                "median": statistics.median(naive_rooms),
                "last": naive_rooms[-1],
                "max": max(naive_rooms),
            },
            "note": (
                "domain.expand, then per slot the overlap SELECT above and a one-row INSERT "
                "through SQLAlchemy, one transaction per room, no outbox rows; the check "
                "planned for its values each time (plan_cache_mode = force_custom_plan) on "
                "current statistics (ANALYZE between rooms, off the clock), so that it reads "
                "the room's slots and not the whole table (all of which only favours the "
                "naive side)"
            ),
            "overlap_check_plan": naive_plan,
            "overlap_check_plan_note": (
                "EXPLAIN ANALYZE of the check right after the run, for a slot following the "
                "last one of the first room: the worst case, the room's every earlier slot "
                "is read (the average check reads half as many)"
            ),
        },
        "search": {
            "table_slots": latencies.table_slots,
            "rooms": SEARCH_ROOMS,
            "fill": (
                f"the raw-SQL reference's {SLOTS:,} slots, plus the other rooms' slots by the "
                "same statement, VACUUM ANALYZE"
            ),
            "fill_slots_raw_sql": latencies.fill_slots,
            "fill_seconds_raw_sql": latencies.fill_seconds,
            "fill_slots_per_s_raw_sql": rate(latencies.fill_slots, latencies.fill_seconds),
            "calls": SEARCH_CALLS,
            "warmup_calls": SEARCH_WARMUP,
            "limit": 50,
            "expected_results": {"plain": SLOTS_PER_DAY, "min_duration": SLOTS_PER_DAY - 2},
            "min_duration_minutes": SEARCH_MIN_DURATION // timedelta(minutes=1),
            "what": (
                "await store.search(...) for a random room and a random weekday, one session "
                "per call, connection checked out before the clock starts"
            ),
            "plain_ms": {
                "p50": percentile(latencies.plain_ms, 50),
                "p90": percentile(latencies.plain_ms, 90),
                "p99": percentile(latencies.plain_ms, 99),
                "max": max(latencies.plain_ms),
                "mean": statistics.fmean(latencies.plain_ms),
            },
            "min_duration_ms": {
                "p50": percentile(latencies.min_duration_ms, 50),
                "p90": percentile(latencies.min_duration_ms, 90),
                "p99": percentile(latencies.min_duration_ms, 99),
                "max": max(latencies.min_duration_ms),
                "mean": statistics.fmean(latencies.min_duration_ms),
            },
            "plain_plan": latencies.plan,
        },
        "machine": {
            "timestamp": datetime.now(UTC).isoformat(timespec="seconds"),
            "cpu_count": os.cpu_count(),
            "load_average_1m_before_after": [load_before, os.getloadavg()[0]],
            "cpu_model": cpu_model(),
            "platform": platform.platform(),
            "python": platform.python_version(),
            "sqlalchemy": sqlalchemy.__version__,
            "asyncpg": asyncpg.__version__,
            "postgres": facts,
        },
        "slow_statement_plans": {
            "captured": slow.enabled,
            "threshold": slow.threshold,
            "how": (
                "auto_explain on the pool's connections, nested statements included (the "
                "trigger's queries), without ANALYZE: plans only, no per-row cost"
            ),
            "plans": slow.plans,
            # The trigger's queries read the transition table ``written``.
            "slow_trigger_queries_during": sorted(
                {plan["during"] for plan in slow.plans if "written" in plan["plan"]}
            ),
        },
        "total_run_seconds": time.perf_counter() - began,
    }
    return report, latencies


def checks_pass(report: dict[str, Any]) -> bool:
    """Same rows as the raw SQL, and events for exactly those rows, in both runs of ours."""
    return all(
        report[key]["same_rows_as_raw_sql"] and report[key]["outbox"]["covers_exactly_the_slots"]
        for key in ("ours", "sequential")
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--output", type=Path, default=RESULTS, help="folder of the results")
    args = parser.parse_args(argv)
    report, latencies = asyncio.run(run())
    args.output.mkdir(parents=True, exist_ok=True)
    (args.output / "timeslots.json").write_text(json.dumps(report, indent=2) + "\n")
    chart(report, latencies, args.output / "timeslots.png")
    print()
    print(table(report))
    print()
    print(breakdown_table(report))
    for key in ("ours", "sequential"):
        entry = report[key]
        print(
            f"\njobs={entry['jobs']}: same rows as the raw SQL: {entry['same_rows_as_raw_sql']}; "
            f"SlotsGenerated events cover exactly the {SLOTS:,} slots: "
            f"{entry['outbox']['covers_exactly_the_slots']} "
            f"({entry['outbox']['slots_generated_events']} events, "
            f"{entry['outbox']['slots_in_events']:,} slots in them)",
            end="",
        )
    slow_trigger = report["slow_statement_plans"]["slow_trigger_queries_during"]
    if slow_trigger:
        print(
            f"\nWARNING: a query of the trigger timeslots_check ran longer than "
            f"{report['slow_statement_plans']['threshold']} during: {', '.join(slow_trigger)}; "
            "its plan is in slow_statement_plans (the figures of that phase are not typical)"
        )
    print(f"\nresults: {args.output / 'timeslots.json'}, {args.output / 'timeslots.png'}")
    # A missed target is a result; rows or events that differ make it no benchmark.
    return 0 if checks_pass(report) else 1


if __name__ == "__main__":
    sys.exit(main())
