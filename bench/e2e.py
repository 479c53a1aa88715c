"""End-to-end benchmark of the platform at fixed offered rates (``make bench-e2e``).

The three services run as real processes on a Kafka broker and a PostgreSQL server of their
own (the ``deploy/local`` scripts on free ports), each as one API process
(``<service> serve --role api --workers 2``) and one or two worker processes
(``<service> serve --role worker``: outbox relay, consumers, sweepers), with the payment
service stand-in (``tooling/src/platform_tooling/standins.py``, a process of its own: it pays every
``BookingCreated`` as soon as it reads it) and its mail sink.

* **Offered load**: ``wrk`` (native, two threads) with ``bench/e2e.lua`` sends
  ``POST /bookings`` to the booking API at a fixed offered rate, ``RATES`` = 100, 300 and
  1,000 requests/s, for ``PHASE_S_DEFAULT`` = 60 s each (``BENCH_E2E_PHASE_S`` overrides
  it), every request by a user of its own for a slot of its own. wrk is closed-loop: the
  script hands out the send times of a fixed schedule, so the rate sent equals the rate
  offered only as long as enough connections are free; the rate actually sent is reported
  next to it.
* **Per phase**: bookings created (``201``), confirmed (``BookingConfirmed`` on
  ``booking.events`` for the phase's bookings, read by a consumer of the benchmark's own after
  the load, up to a drain deadline), confirmed per second within the load window, request to
  confirmed p50/p99 (from the ``BookingCreated`` event's time), and the consumer lag of every
  consumer group of the platform, sampled every second through the load and the drain.
* **Configurations**: ``1`` = per service the API process and one worker process; ``2`` = the
  same API process and two worker processes per service (their consumer groups share the
  partitions). Each configuration runs on a broker and a database server of its own, started
  for it, so that the backlog one leaves (1,000 offered/s is beyond this machine) cannot slow
  the other; within a configuration the phases run from the lowest rate up.
* **Paced latency** (first configuration, before the load): ``PACED`` bookings one every
  ``PACE_S`` seconds; ``PaymentSucceeded`` (the stand-in's event time) to ``BookingConfirmed``
  (the booking service's event time), and to the reminders' ``created_at``. Reference, same
  run: one produce-then-consume hop through the same broker (:func:`one_hop_s`).

Writes ``bench/results/e2e.json`` and ``bench/results/e2e.png`` and prints a table. Exits
with 1 when a run is broken (no booking created, bookings refused, a request line used
twice); a missed target is reported, not fatal.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from bench.cpu import CpuMeter, cpu_times, listening_pid
from bench.reminders import environment, percentile
from booking_contracts import topics
from platform_runtime.db import asyncpg_dsn
from platform_runtime.lag import consumer_lag
from platform_runtime.settings import DEV_JWT_SECRET
from platform_runtime.tokens import issue_token
from platform_tooling.client import Api, auth, connect
from tests.support.broker import private_broker, private_postgres
from tests.support.platform import CONSUMER_GROUPS, SERVICES, Platform
from tests.support.ports import free_port

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
RESULTS = BENCH / "results"
LUA = BENCH / "e2e.lua"

# --- the workload ----------------------------------------------------------------------

RATES = (100, 300, 1000)
"""Offered rates, bookings per second; each runs for the phase length in each configuration."""
PHASE_S_DEFAULT = 60
PHASE_ENV = "BENCH_E2E_PHASE_S"
CONFIGS = (1, 2)
"""Worker processes per service (each configuration also has one API process per service)."""
API_WORKERS = 2
"""uvicorn worker processes of each service's API process."""
WRK_THREADS = 2
LATENCY_BUDGET_S = 1.0
"""wrk connections = offered rate x this (at least ``MIN_CONNECTIONS``): the schedule keeps
its rate while answers take up to this long."""
MIN_CONNECTIONS = 16
WRK_TIMEOUT_S = 30
LINES_MARGIN_S = 0.5
"""Request lines beyond rate x phase, per phase (the schedule never sends more than that)."""
WARMUP_RATE = 50
WARMUP_S = 5
"""Before the phases of each configuration, not reported as a phase."""

ROOM_DAYS = 60
FIRST_DAY = 3
"""Slots start this many days ahead: no reminder falls due during the run."""
SLOT_MINUTES = 30
HOURS = {"start": "00:00", "end": "23:30"}
SLOTS_PER_DAY = 47
GENERATE_CONCURRENCY = 2

PACED = 40
PACE_S = 0.25
HOP_MESSAGES = 200

# --- measuring and judging -------------------------------------------------------------

SAMPLE_S = 1.0
"""Consumer lag sampling interval."""
DRAIN_S = 20.0
"""After the load: the longest wait for the lag to reach 0 and for the confirmations (the
whole run stays within about 15 minutes even when no phase drains)."""
SETTLE_S = 10.0
"""Before a phase: the longest wait for what earlier phases left (lag 0, outboxes relayed)."""
LAG_WINDOW_S = 3.0
"""The lag at a moment of the load is the mean of the samples in a window this long."""
LAG_MARGIN_S = 1.0
LAG_MARGIN_MIN = 50
"""The lag grew when it is higher at the end of the load than one third into it by more than
max(``LAG_MARGIN_MIN``, ``LAG_MARGIN_S`` x offered rate) records, for any group."""
LAG_DRAIN_BOUND_S = 10.0
"""... or when it has not been 0 for every group within this long after the load ended."""
TARGET_RATE = 300
TARGET_CONFIRMED_RATIO = 0.95
TARGET_IN_KAFKA_HOPS = 3.0

STANDIN_GROUP = "payment-standin"
"""The payment stand-in's group (on ``booking.events``): sampled and shown, but not the
platform's, so not part of the lag criterion."""
PRODUCTION_POLLS = {
    "OUTBOX_POLL_INTERVAL_S": "1.0",
    "KAFKA_FETCH_MAX_WAIT_MS": "50",
    "CONSUMER_BACKOFF_INITIAL_S": "0.2",
}
"""The service defaults of what ``tests/support/platform.py`` shortens for the tests."""
PREWARM = """
import timeslots.cli, timeslots.main, booking.cli, booking.main, reminders.cli, reminders.main
import platform_runtime.cli, platform_tooling.standins
import uvicorn.main, uvicorn.supervisors.multiprocess, uvicorn.lifespan.on
import uvicorn.protocols.http.auto, uvicorn.protocols.websockets.auto, uvicorn.loops.auto
timeslots.main.create_app(), booking.main.create_app(), reminders.main.create_app()
"""
"""What the processes import, compiled once into the run's bytecode cache before they start."""
CREATED = "BookingCreated.v1"
CONFIRMED = "BookingConfirmed.v1"
PAID = "PaymentSucceeded.v1"


def phase_s() -> int:
    raw = os.environ.get(PHASE_ENV, "")
    if not raw:
        return PHASE_S_DEFAULT
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if value < 3:
        raise SystemExit(f"{PHASE_ENV} must be a whole number of seconds, at least 3: {raw!r}")
    return value


def connections_for(rate: float) -> int:
    return max(MIN_CONNECTIONS, math.ceil(rate * LATENCY_BUDGET_S))


def lines_for(rate: float, duration_s: float) -> int:
    return math.ceil(rate * (duration_s + LINES_MARGIN_S)) + 2 * WRK_THREADS


def user_prefix(tag: str) -> str:
    """Users of one phase: ``e2e-<tag>-<n>`` (paid by the stand-in: not ``unpaid-…``)."""
    return f"e2e-{tag}-"


def token_of(user: str) -> str:
    return issue_token(
        secret_or_private_key=DEV_JWT_SECRET,
        subject=user,
        email=f"{user}@example.com",
        ttl=timedelta(hours=2),
    )


def write_lines(path: Path, tag: str, slots: list[str]) -> None:
    prefix = user_prefix(tag)
    with path.open("w") as output:
        for n, slot in enumerate(slots):
            output.write(f"{token_of(f'{prefix}{n}')} {slot}\n")


# --- wrk -------------------------------------------------------------------------------


async def wrk(url: str, lines: Path, rate: float, duration_s: int) -> dict[str, Any]:
    """One paced wrk run; its summary as ``e2e.lua``'s done() printed it, and figures."""
    connections = connections_for(rate)
    command = [
        "wrk",
        f"-t{WRK_THREADS}",
        f"-c{connections}",
        f"-d{duration_s}s",
        f"--timeout={WRK_TIMEOUT_S}s",
        "-s",
        str(LUA),
        url,
        "--",
        str(lines),
        str(WRK_THREADS),
        str(rate),
        "/bookings",
    ]
    process = await asyncio.create_subprocess_exec(
        *command, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    stdout, stderr = await process.communicate()
    found = [line for line in stdout.decode().splitlines() if line.startswith("BENCH-E2E ")]
    if process.returncode != 0 or not found:
        raise RuntimeError(f"wrk failed ({process.returncode}): {stderr.decode()[-2000:]}")
    raw: dict[str, Any] = json.loads(found[-1].removeprefix("BENCH-E2E "))
    seconds = raw["duration_us"] / 1e6
    statuses = {k: int(v) for k, v in sorted(raw["statuses"].items())}
    return {
        "connections": connections,
        "threads": WRK_THREADS,
        "duration_s": round(seconds, 3),
        "sent": int(raw["sent"]),
        "answered": int(raw["answered"]),
        "sent_per_s": round(raw["sent"] / seconds, 1),
        "statuses": statuses,
        "created": statuses.get("201", 0),
        "created_per_s": round(statuses.get("201", 0) / seconds, 1),
        "sample_bodies": {k: v[:300] for k, v in raw["samples"].items()},
        "socket_errors": raw["errors"],
        "http_p50_ms": round(raw["latency_us"]["p50"] / 1000, 1),
        "http_p99_ms": round(raw["latency_us"]["p99"] / 1000, 1),
        "http_max_ms": round(raw["latency_us"]["max"] / 1000, 1),
        "late_sends": int(raw["late_sends"]),
        "behind_schedule_max_ms": round(raw["behind_max_ms"], 1),
        "lines": int(raw["lines"]),
        "lines_wrapped": int(raw["wrapped"]),
    }


# --- Kafka -----------------------------------------------------------------------------


async def end_offsets(kafka: str, topic: str) -> dict[TopicPartition, int]:
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka)
    await admin.start()
    try:
        (described,) = await admin.describe_topics([topic])
    finally:
        await admin.close()
    if described["error_code"]:
        raise RuntimeError(f"topic {topic}: error {described['error_code']}")
    found = [TopicPartition(topic, p["partition"]) for p in described["partitions"]]
    consumer = AIOKafkaConsumer(bootstrap_servers=kafka, enable_auto_commit=False)
    await consumer.start()
    try:
        return dict(await consumer.end_offsets(found))
    finally:
        await consumer.stop()


async def partitions(kafka: str) -> dict[str, int]:
    """Partitions of every topic the platform uses (recorded with the results)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka)
    await admin.start()
    try:
        described = await admin.describe_topics()
    finally:
        await admin.close()
    return {
        t["topic"]: len(t["partitions"])
        for t in sorted(described, key=lambda t: t["topic"])
        if not t["topic"].startswith("__") and not t["topic"].endswith(".dlq")
    }


@dataclass
class TopicReader:
    """Reads ``topic`` from given offsets on, keeping its position between calls; returns the
    envelopes of the wanted event types (told by the ``ce_type`` header before parsing)."""

    kafka: str
    topic: str
    types: frozenset[str]
    positions: dict[TopicPartition, int]

    async def read(self, timeout_s: float = 120) -> list[dict[str, Any]]:
        """Up to the end offsets of now."""
        consumer = AIOKafkaConsumer(bootstrap_servers=self.kafka, enable_auto_commit=False)
        await consumer.start()
        found: list[dict[str, Any]] = []
        try:
            assigned = list(self.positions)
            consumer.assign(assigned)
            for tp, offset in self.positions.items():
                consumer.seek(tp, offset)
            ends = await consumer.end_offsets(assigned)
            deadline = time.monotonic() + timeout_s
            while pending := [tp for tp in assigned if self.positions[tp] < ends[tp]]:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"reading {self.topic} took over {timeout_s:g}s")
                batches = await consumer.getmany(*pending, timeout_ms=500, max_records=10_000)
                for records in batches.values():
                    for record in records:
                        kind = dict(record.headers).get("ce_type")
                        if kind is not None and kind.decode() not in self.types:
                            continue
                        envelope = json.loads(record.value or b"{}")
                        if envelope.get("type") in self.types:
                            found.append(envelope)
                for tp in pending:
                    self.positions[tp] = await consumer.position(tp)
        finally:
            await consumer.stop()
        return found


async def reader(kafka: str, topic: str, types: Iterable[str]) -> TopicReader:
    """A reader from the end of ``topic`` now."""
    return TopicReader(kafka, topic, frozenset(types), await end_offsets(kafka, topic))


def event_time(envelope: dict[str, Any]) -> float:
    return datetime.fromisoformat(envelope["time"]).timestamp()


async def one_hop_s(kafka: str) -> list[float]:
    """Produce, then consume, one message at a time: the broker's own round trip."""
    topic = f"bench-hop-{uuid.uuid4().hex[:8]}"
    producer = AIOKafkaProducer(bootstrap_servers=kafka, enable_idempotence=True)
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=kafka, fetch_max_wait_ms=20)
    await producer.start()
    await producer.send_and_wait(topic, b"warm-up")
    await consumer.start()
    await consumer.seek_to_end()
    hops = []
    try:
        for _ in range(HOP_MESSAGES):
            sent = time.time()
            await producer.send_and_wait(topic, b"x")
            while not (await consumer.getmany(timeout_ms=1000)):
                pass
            hops.append(time.time() - sent)
    finally:
        await consumer.stop()
        await producer.stop()
    return hops


# --- consumer lag ----------------------------------------------------------------------

GROUPS: dict[str, list[str]] = dict(CONSUMER_GROUPS) | {STANDIN_GROUP: [topics.BOOKING_EVENTS]}


@dataclass
class LagSampler:
    """``platform_runtime.lag.consumer_lag`` of every group every ``SAMPLE_S``, summed over the
    group's topics; times are seconds since ``origin`` (``time.monotonic()``)."""

    kafka: str
    origin: float = 0.0
    times: list[float] = field(default_factory=list)
    lags: dict[str, list[int | None]] = field(default_factory=lambda: {g: [] for g in GROUPS})
    failures: int = 0
    _clients: tuple[AIOKafkaAdminClient, AIOKafkaConsumer] | None = None

    async def start(self) -> None:
        admin = AIOKafkaAdminClient(bootstrap_servers=self.kafka)
        offsets = AIOKafkaConsumer(bootstrap_servers=self.kafka, enable_auto_commit=False)
        await admin.start()
        await offsets.start()
        self._clients = (admin, offsets)

    async def close(self) -> None:
        if self._clients is not None:
            admin, offsets = self._clients
            self._clients = None
            with contextlib.suppress(Exception):
                await offsets.stop()
            with contextlib.suppress(Exception):
                await admin.close()

    def reset(self, origin: float) -> None:
        self.origin = origin
        self.times = []
        self.lags = {g: [] for g in GROUPS}

    async def sample(self) -> dict[str, int | None]:
        assert self._clients is not None
        admin, offsets = self._clients
        at = time.monotonic()
        found: dict[str, int | None] = {}
        for group, group_topics in GROUPS.items():
            try:
                lag = await consumer_lag(admin, offsets, group=group, topics=group_topics)
                found[group] = sum(lag.values())
            except Exception:
                self.failures += 1
                found[group] = None
        self.times.append(round(at - self.origin, 2))
        for group, value in found.items():
            self.lags[group].append(value)
        return found

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            started = time.monotonic()
            await self.sample()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(
                    stop.wait(), max(0.0, SAMPLE_S - (time.monotonic() - started))
                )

    def latest(self) -> dict[str, int | None]:
        return {g: (values[-1] if values else None) for g, values in self.lags.items()}

    def series(self, load_s: float) -> dict[str, Any]:
        return {"t_s": list(self.times), "load_s": round(load_s, 2), "lag": dict(self.lags)}


def judge_lag(series: dict[str, Any], offered: float) -> dict[str, Any]:
    """Whether the lag grew during the load (see the module constants and the README)."""
    load_s = float(series["load_s"])
    times: list[float] = series["t_s"]
    margin = max(LAG_MARGIN_MIN, LAG_MARGIN_S * offered)

    def mean_in(values: list[int | None], start: float, end: float) -> float | None:
        inside = [
            v for t, v in zip(times, values, strict=True) if start <= t <= end and v is not None
        ]
        if not inside:  # no sample in the window: the nearest one
            known = [
                (abs(t - (start + end) / 2), v)
                for t, v in zip(times, values, strict=True)
                if v is not None
            ]
            return float(min(known)[1]) if known else None
        return sum(inside) / len(inside)

    groups: dict[str, Any] = {}
    for group, values in series["lag"].items():
        third = load_s / 3
        early = mean_in(values, third - LAG_WINDOW_S / 2, third + LAG_WINDOW_S / 2)
        late = mean_in(values, load_s - LAG_WINDOW_S, load_s)
        drained = next(
            (t - load_s for t, v in zip(times, values, strict=True) if t >= load_s and v == 0),
            None,
        )
        grew = early is None or late is None or late > early + margin
        groups[group] = {
            "at_one_third": None if early is None else round(early, 1),
            "at_end_of_load": None if late is None else round(late, 1),
            "max": max((v for v in values if v is not None), default=None),
            "grew_during_load": grew,
            "zero_after_load_s": None if drained is None else round(max(drained, 0.0), 2),
            "drained_within_bound": drained is not None and drained <= LAG_DRAIN_BOUND_S,
        }
    platform = {g: v for g, v in groups.items() if g in CONSUMER_GROUPS}
    grew = any(v["grew_during_load"] or not v["drained_within_bound"] for v in platform.values())
    return {"margin_records": margin, "groups": groups, "lag_grew": grew}


# --- processes and the database --------------------------------------------------------


@dataclass
class StandIns:
    """``python -m platform_tooling.standins``: the payment service and a mail sink, as a process
    of their own (not competing with the benchmark's own event loop)."""

    kafka: str
    log: Path
    smtp_port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    def spawn(self) -> None:
        with self.log.open("ab") as output:
            self.process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "platform_tooling.standins",
                    "--kafka",
                    self.kafka,
                    "--smtp-port",
                    str(self.smtp_port),
                ],
                cwd=ROOT,
                stdout=output,
                stderr=subprocess.STDOUT,
            )

    async def start(self, timeout_s: float = 90) -> None:
        """Start the process and wait until the payment stand-in has its partitions."""
        self.spawn()
        assert self.process is not None
        deadline = time.monotonic() + timeout_s
        while b"payment stand-in on" not in self.log.read_bytes():
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the stand-ins did not start; see {self.log}")
            await asyncio.sleep(0.3)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


async def fetch(url: str, query: str, *args: Any) -> list[asyncpg.Record]:
    db = await asyncpg.connect(asyncpg_dsn(url))
    try:
        return list(await db.fetch(query, *args))
    finally:
        await db.close()


async def relayed(platform: Platform) -> bool:
    """No outbox row of any service waits to be published."""
    for service in SERVICES:
        rows = await fetch(
            platform.database_url(service),
            "SELECT 1 FROM outbox WHERE published_at IS NULL LIMIT 1",
        )
        if rows:
            return False
    return True


def cpu_share(before: tuple[float, float, float]) -> dict[str, float]:
    after = cpu_times()
    total = max(after[1] - before[1], 1.0)
    return {
        "busy": round((after[0] - before[0]) / total, 3),
        "steal": round((after[2] - before[2]) / total, 3),
    }


def bytecode_cache(cache: Path) -> float:
    """Let every process of the run (this one's children) read and write compiled bytecode in
    ``cache``, and fill it once; seconds taken.

    Where ``PYTHONDONTWRITEBYTECODE`` is set, every process compiles every module it imports
    from source, each uvicorn worker again (seconds of CPU on a busy machine), and uvicorn's
    supervisor replaces an API worker that does not answer its ping in time. A deployed service
    runs from compiled bytecode: so do these, from ``PYTHONPYCACHEPREFIX`` (nothing is written
    into the checkout or the environment)."""
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
    os.environ["PYTHONPYCACHEPREFIX"] = str(cache)
    started = time.monotonic()
    subprocess.run([sys.executable, "-c", PREWARM], cwd=ROOT, check=True, capture_output=True)
    return round(time.monotonic() - started, 1)


def replaced_api_workers(platform: Platform) -> int:
    """uvicorn's supervisor replaced an API worker process ("Child process [pid] died")."""
    return sum(
        replica.log.read_text(errors="replace").count("Child process")
        for replicas in platform.replicas.values()
        for replica in replicas
        if replica.role == "api" and replica.log.exists()
    )


def cpu_seconds(before: resource.struct_rusage, who: int) -> float:
    """CPU seconds (user + system) of ``who`` since ``before``."""
    after = resource.getrusage(who)
    used = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    return round(used, 2)


# --- the run ---------------------------------------------------------------------------


@dataclass
class Bench:
    """One configuration: its platform, and what was measured on it."""

    platform: Platform
    api: Api
    kafka: str
    work: Path
    phase_s: int
    replicas: int
    with_paced: bool
    sampler: LagSampler
    began: float
    cpu_groups: dict[str, Callable[[], Iterable[int]]] = field(default_factory=dict)
    """Process groups whose CPU per booking each phase reports (:mod:`bench.cpu`)."""
    lines: dict[str, Path] = field(default_factory=dict)
    runs: list[dict[str, Any]] = field(default_factory=list)
    warmup: dict[str, Any] = field(default_factory=dict)
    inventory_figures: dict[str, Any] = field(default_factory=dict)

    # inventory ------------------------------------------------------------------------

    def tag(self, what: int | str) -> str:
        """A phase's name (also in its users' ids): ``1w-300``, ``2w-warmup``, ``paced``."""
        return what if what == "paced" else f"{self.replicas}w-{what}"

    def plan(self) -> dict[str, int]:
        """Request lines per tag: the warm-up, the paced bookings, and every phase."""
        plan: dict[str, int] = {self.tag("warmup"): lines_for(WARMUP_RATE, WARMUP_S)}
        if self.with_paced:
            plan["paced"] = PACED
        for rate in RATES:
            plan[self.tag(rate)] = lines_for(rate, self.phase_s)
        return plan

    async def inventory(self) -> dict[str, list[str]]:
        """Rooms, schedules and generated slots through the timeslots API, enough for every
        line of the plan; writes the lines files while the booking service learns the slots,
        and waits until it knows every one."""
        plan = self.plan()
        needed = sum(plan.values())
        rooms = math.ceil(needed / (ROOM_DAYS * SLOTS_PER_DAY))
        started = time.monotonic()
        today = datetime.now(UTC).date()
        gate = asyncio.Semaphore(GENERATE_CONCURRENCY)

        async def room(i: int) -> int:
            async with gate:
                made = await self.api.create_room(f"Bench e2e {i}", time_zone="UTC")
                await self.api.put_schedule(
                    made["id"],
                    open_weekdays=[1, 2, 3, 4, 5, 6, 7],
                    hours=[HOURS],
                    slot_minutes=SLOT_MINUTES,
                )
                generated = await self.api.generate(
                    made["id"],
                    today + timedelta(days=FIRST_DAY),
                    today + timedelta(days=FIRST_DAY + ROOM_DAYS - 1),
                )
                return int(generated["created"])

        created = sum(await asyncio.gather(*(room(i) for i in range(rooms))))
        generated_s = time.monotonic() - started
        rows = await fetch(
            self.platform.database_url("timeslots"),
            "SELECT id::text FROM timeslots ORDER BY starts_at, room_id",
        )
        slots = [r["id"] for r in rows]
        assert len(slots) == created >= needed, (len(slots), created, needed)
        chunks: dict[str, list[str]] = {}
        position = 0
        for tag, count in plan.items():
            chunks[tag] = slots[position : position + count]
            position += count
        print(f"  {created} slots in {rooms} rooms generated in {generated_s:.1f}s")

        def write_all() -> None:
            for tag, chunk in chunks.items():
                if tag != "paced":
                    path = self.work / f"{tag}.lines"
                    write_lines(path, tag, chunk)
                    self.lines[tag] = path

        writing = asyncio.create_task(asyncio.to_thread(write_all))
        await self.wait_known(created)
        known_s = time.monotonic() - started
        await writing
        print(f"  the booking service knows them after {known_s:.1f}s; request lines written")
        self.inventory_figures = {
            "rooms": rooms,
            "slots": created,
            "generated_s": round(generated_s, 1),
            "known_to_booking_s": round(known_s, 1),
            "lines_per_tag": plan,
        }
        return chunks

    async def wait_known(self, count: int, timeout_s: float = 600) -> None:
        deadline = time.monotonic() + timeout_s
        url = self.platform.database_url("booking")
        while True:
            (row,) = await fetch(url, "SELECT count(*) AS n FROM slots")
            if row["n"] >= count:
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"the booking service knows {row['n']} of {count} slots")
            await asyncio.sleep(1)

    # quiet, configurations -------------------------------------------------------------

    async def settle(self, what: str) -> dict[str, Any]:
        """Until every group's lag is 0 and every outbox relayed (at most ``SETTLE_S``)."""
        started = time.monotonic()
        self.sampler.reset(started)
        first: dict[str, int | None] | None = None
        while True:
            lag = await self.sampler.sample()
            first = first or lag
            if all(v == 0 for v in lag.values()) and await relayed(self.platform):
                quiet = True
                break
            if time.monotonic() - started > SETTLE_S:
                quiet = False
                print(f"  warning: not quiet after {SETTLE_S:g}s before {what}: {lag}")
                break
            await asyncio.sleep(SAMPLE_S)
        figures = {
            "before": what,
            "quiet": quiet,
            "waited_s": round(time.monotonic() - started, 1),
            "lag_at_start": first,
        }
        return figures

    # phases ----------------------------------------------------------------------------

    async def warm_up(self) -> None:
        tag = self.tag("warmup")
        result = await wrk(self.platform.api_url("booking"), self.lines[tag], WARMUP_RATE, WARMUP_S)
        self.lines.pop(tag).unlink()
        self.warmup = {"offered_per_s": WARMUP_RATE} | result
        print(
            f"  warm-up: {result['created']} created at {WARMUP_RATE}/s offered, "
            f"http p50 {result['http_p50_ms']} ms"
        )

    async def phase(self, rate: int) -> dict[str, Any]:
        replicas, tag = self.replicas, self.tag(rate)
        settled = await self.settle(f"{tag}/s")
        events = await reader(self.kafka, topics.BOOKING_EVENTS, (CREATED, CONFIRMED))
        load_1m = os.getloadavg()[0]
        cpu = cpu_times()
        own = resource.getrusage(resource.RUSAGE_SELF)
        children = resource.getrusage(resource.RUSAGE_CHILDREN)
        stop = asyncio.Event()
        origin = time.monotonic()
        started_at = time.time()
        self.sampler.reset(origin)
        sampling = asyncio.create_task(self.sampler.run(stop))
        meter = CpuMeter(self.cpu_groups)
        meter.start()
        try:
            result = await wrk(
                self.platform.api_url("booking"), self.lines[tag], rate, self.phase_s
            )
            cpu_by_group = meter.stop(bookings=result["created"])
            load_s = result["duration_s"]
            ended_at = started_at + load_s
            cpu_load = cpu_share(cpu) | {
                "benchmark_process_s": cpu_seconds(own, resource.RUSAGE_SELF),
                "wrk_s": cpu_seconds(children, resource.RUSAGE_CHILDREN),
            }
            # the drain: until every group's lag is 0 and the outboxes are relayed
            deadline = origin + load_s + DRAIN_S
            while time.monotonic() < deadline:
                await asyncio.sleep(SAMPLE_S)
                latest = self.sampler.latest()
                if all(v == 0 for v in latest.values()) and await relayed(self.platform):
                    break
        finally:
            stop.set()
            await sampling
        drained_s = time.monotonic() - origin - load_s
        self.lines.pop(tag).unlink()

        prefix = user_prefix(tag)
        created: dict[str, float] = {}
        confirmed: dict[str, float] = {}

        async def read() -> None:
            for envelope in await events.read():
                if not str(envelope["data"].get("user_id", "")).startswith(prefix):
                    continue
                at = event_time(envelope)
                target = created if envelope["type"] == CREATED else confirmed
                target.setdefault(envelope["subject"], at)

        await read()
        while set(created) - set(confirmed) and time.monotonic() < deadline:
            await asyncio.sleep(1)
            await read()

        series = self.sampler.series(load_s)
        lag = judge_lag(series, rate)
        to_confirmed = [(confirmed[b] - created[b]) * 1000 for b in confirmed if b in created]
        in_window = sum(1 for at in confirmed.values() if started_at <= at <= ended_at)
        confirmed_per_s = in_window / load_s
        run = {
            "replicas": replicas,
            "api_processes": 1,
            "api_workers": API_WORKERS,
            "worker_processes": replicas,
            "offered_per_s": rate,
            "sent_per_s": result["sent_per_s"],
            "sent_ratio_to_offered": round(result["sent_per_s"] / rate, 3),
            "created": result["created"],
            "created_per_s": result["created_per_s"],
            "created_events": len(created),
            "confirmed": len(confirmed),
            "confirmed_in_load_window": in_window,
            "confirmed_per_s": round(confirmed_per_s, 1),
            "confirmed_ratio_to_offered": round(confirmed_per_s / rate, 3),
            "unconfirmed_at_drain_deadline": len(set(created) - set(confirmed)),
            "request_to_confirmed_p50_ms": rounded(to_confirmed, 50, 1),
            "request_to_confirmed_p99_ms": rounded(to_confirmed, 99, 1),
            "lag_grew": lag["lag_grew"],
            "lag": lag,
            "lag_series": series,
            "drain_s": round(max(drained_s, 0.0), 1),
            "started_s": round(origin - self.began, 1),
            "wrk": result,
            "settled_before": settled,
            "machine": {"load_1m_at_start": round(load_1m, 2), "cpu_during_load": cpu_load},
            "cpu_by_process_group": cpu_by_group,
        }
        self.runs.append(run)
        spent = ", ".join(
            f"{name} {ms:.2f}"
            for name, ms in sorted(cpu_by_group["ms_per_booking"].items(), key=lambda kv: -kv[1])
        )
        print(f"  CPU ms per booking created: {spent}")
        others = {k: v for k, v in result["statuses"].items() if k != "201"}
        print(
            f"  {replicas} worker(s) {rate:5d}/s offered: sent {result['sent_per_s']:7.1f}/s, "
            f"created {result['created_per_s']:7.1f}/s, confirmed {confirmed_per_s:7.1f}/s "
            f"({run['confirmed_ratio_to_offered']:.2f} of offered), request to confirmed "
            f"p50 {run['request_to_confirmed_p50_ms']} ms p99 "
            f"{run['request_to_confirmed_p99_ms']} ms, lag grew: {lag['lag_grew']}, "
            f"http p99 {result['http_p99_ms']} ms, busy {cpu_load['busy']:.2f}"
            + (f", other statuses {others}" if others else "")
            + (f", {result['late_sends']} late sends" if result["late_sends"] else "")
        )
        return run

    # paced -----------------------------------------------------------------------------

    async def paced(self, slots: list[str]) -> dict[str, list[float]]:
        """``PACED`` bookings one every ``PACE_S`` s: latencies without a queue (ms)."""
        payments = await reader(self.kafka, topics.PAYMENT_EVENTS, (PAID,))
        bookings = await reader(self.kafka, topics.BOOKING_EVENTS, (CONFIRMED,))
        requested: dict[str, float] = {}
        prefix = user_prefix("paced")
        for n, slot in enumerate(slots):
            started = time.time()
            response = await self.api.booking.post(
                "/bookings", headers=auth(f"{prefix}{n}"), json={"slot_id": slot}
            )
            if response.status_code != 201:
                raise RuntimeError(f"paced booking failed: {response.status_code} {response.text}")
            requested[response.json()["id"]] = started
            await asyncio.sleep(PACE_S)
        ids = set(requested)
        paid: dict[str, float] = {}
        confirmed: dict[str, float] = {}
        deadline = time.monotonic() + 60
        while not ids <= set(paid) or not ids <= set(confirmed):
            if time.monotonic() > deadline:
                break
            for envelope in await payments.read():
                if envelope["subject"] in ids:
                    paid.setdefault(envelope["subject"], event_time(envelope))
            for envelope in await bookings.read():
                if envelope["subject"] in ids:
                    confirmed.setdefault(envelope["subject"], event_time(envelope))
            await asyncio.sleep(0.2)
        if not ids <= set(paid) or not ids <= set(confirmed):
            raise RuntimeError(
                f"paced: {len(ids - set(paid))} payments, {len(ids - set(confirmed))} "
                "confirmations missing"
            )
        scheduled = await reminders_created(self.platform, ids)
        return {
            "payment_to_confirmed_ms": [(confirmed[b] - paid[b]) * 1000 for b in ids],
            "payment_to_reminder_ms": [(scheduled[b] - paid[b]) * 1000 for b in ids],
            "request_to_confirmed_ms": [(confirmed[b] - requested[b]) * 1000 for b in ids],
        }


async def wait_groups(kafka: str, members: int, timeout_s: float = 120) -> None:
    """Every consumer group of the platform is stable with ``members`` members."""
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka)
    await admin.start()
    deadline = time.monotonic() + timeout_s
    try:
        for group in CONSUMER_GROUPS:
            while True:
                (response,) = await admin.describe_consumer_groups([group])
                _, _, state, _, _, found = response.groups[0]
                if state == "Stable" and len(found) == members:
                    break
                if time.monotonic() > deadline:
                    raise TimeoutError(f"group {group} is {state} with {len(found)} members")
                await asyncio.sleep(0.5)
    finally:
        await admin.close()


async def reminders_created(platform: Platform, ids: set[str]) -> dict[str, float]:
    deadline = time.monotonic() + 120
    while True:
        rows = await fetch(
            platform.database_url("reminders"),
            "SELECT booking_id::text, min(created_at) AS at FROM reminders"
            " WHERE booking_id = ANY($1::uuid[]) GROUP BY booking_id",
            [uuid.UUID(i) for i in ids],
        )
        if len(rows) == len(ids):
            return {r["booking_id"]: r["at"].timestamp() for r in rows}
        if time.monotonic() > deadline:
            raise TimeoutError(f"reminders of {len(ids) - len(rows)} bookings missing")
        await asyncio.sleep(0.5)


def check(runs: list[dict[str, Any]]) -> list[str]:
    """What makes a run broken rather than slow."""
    problems = []
    for run in runs:
        name = f"{run['replicas']} worker(s) at {run['offered_per_s']}/s"
        wrk_run = run["wrk"]
        if run["created"] == 0:
            problems.append(f"{name}: no booking created")
        refused = {k: v for k, v in wrk_run["statuses"].items() if k != "201"}
        if refused:
            problems.append(f"{name}: answers other than 201: {refused} {wrk_run['sample_bodies']}")
        if wrk_run["lines_wrapped"]:
            problems.append(f"{name}: request lines used twice")
    return problems


async def main() -> int:
    if shutil.which("wrk") is None:
        raise SystemExit("wrk not found: run bench/ensure-wrk.sh (make bench-e2e does)")
    seconds = phase_s()
    began = time.monotonic()
    state = Path(tempfile.mkdtemp(prefix="bench-e2e-"))
    print(f"bench-e2e: {len(RATES)} rates x {len(CONFIGS)} configurations, {seconds}s each")
    prewarm_s = await asyncio.to_thread(bytecode_cache, state / "pycache")
    configurations: list[dict[str, Any]] = []
    try:
        for replicas in CONFIGS:
            print(
                f"configuration {replicas}: per service 1 API process ({API_WORKERS} workers) "
                f"+ {replicas} worker process(es), on a fresh broker and database server"
            )
            configurations.append(
                await configuration(
                    state / f"{replicas}w", replicas, seconds, began, replicas == CONFIGS[0]
                )
            )
    finally:
        shutil.rmtree(state / "pycache", ignore_errors=True)
    document = assemble(configurations, seconds)
    document["setup"]["bytecode_cache_s"] = prewarm_s
    document["wall_s"] = round(time.monotonic() - began, 1)
    RESULTS.mkdir(parents=True, exist_ok=True)
    text = json.dumps(finite(document), indent=2, allow_nan=False)
    (RESULTS / "e2e.json").write_text(text + "\n")
    plot(document, RESULTS / "e2e.png")
    report(document)
    problems = check(document["runs"])
    for problem in problems:
        print(f"BROKEN: {problem}")
    return 1 if problems else 0


async def configuration(
    root: Path, replicas: int, seconds: int, began: float, with_paced: bool
) -> dict[str, Any]:
    """One configuration on a Kafka broker and a PostgreSQL server of its own (what one
    configuration leaves behind, e.g. a backlog after 1,000 offered/s, cannot slow the
    other): the platform, the stand-ins, the inventory, the warm-up, the paced bookings
    (``with_paced``), the Kafka hop and the phases."""
    logs, work = root / "logs", root / "work"
    logs.mkdir(parents=True)
    work.mkdir()
    started = time.monotonic()
    broker, database = private_broker(root / "kafka"), private_postgres(root / "postgres")
    standins = StandIns(broker.bootstrap, logs / "standins.log")
    platform = Platform(
        postgres_dsn=database.dsn,
        kafka=broker.bootstrap,
        logs=logs,
        settings={
            "reminders": PRODUCTION_POLLS
            | {"SMTP_HOST": "127.0.0.1", "SMTP_PORT": str(standins.smtp_port)},
            "booking": PRODUCTION_POLLS,
            "timeslots": PRODUCTION_POLLS,
        },
    )
    sampler = LagSampler(broker.bootstrap)
    try:
        await asyncio.to_thread(broker.start)
        await asyncio.to_thread(database.start)
        # the services first: they create their topics with their partition count
        await platform.start_roles(workers=replicas, api_workers=API_WORKERS)
        await standins.start()
        await wait_groups(broker.bootstrap, replicas)
        await sampler.start()
        ready_s = round(time.monotonic() - started, 1)
        print(f"  platform ready after {ready_s}s (logs in {logs})")
        async with connect(
            platform.api_url("timeslots"),
            platform.api_url("booking"),
            platform.api_url("reminders"),
        ) as api:
            bench = Bench(
                platform,
                api,
                broker.bootstrap,
                work,
                seconds,
                replicas,
                with_paced,
                sampler,
                began,
                cpu_groups=cpu_groups(platform, standins, broker.port, database.port),
            )
            chunks = await bench.inventory()
            topic_partitions = await partitions(broker.bootstrap)
            print(f"  partitions: {topic_partitions}")
            await bench.warm_up()
            paced: dict[str, list[float]] | None = None
            if with_paced:
                await bench.settle("paced")
                print(f"  paced: {PACED} bookings, one every {PACE_S}s")
                paced = await bench.paced(chunks["paced"])
            hops = await one_hop_s(broker.bootstrap)
            hop_ms = percentile(hops, 50) * 1000
            if paced is not None:
                print(
                    "  PaymentSucceeded to BookingConfirmed p50 "
                    f"{percentile(paced['payment_to_confirmed_ms'], 50):.1f} ms, to reminder "
                    f"{percentile(paced['payment_to_reminder_ms'], 50):.1f} ms; "
                    f"one Kafka hop {hop_ms:.2f} ms"
                )
            for rate in RATES:
                await bench.phase(rate)
        return {
            "replicas": replicas,
            "runs": bench.runs,
            "paced": paced,
            "hops": hops,
            "setup": {
                "replicas": replicas,
                "ready_s": ready_s,
                "inventory": bench.inventory_figures,
                "topic_partitions": topic_partitions,
                "warmup": bench.warmup,
                "kafka_roundtrip_p50_ms": round(hop_ms, 2),
                "lag_sample_failures": sampler.failures,
                "api_worker_processes_replaced": replaced_api_workers(platform),
            },
        }
    finally:
        await sampler.close()
        platform.stop()
        standins.stop()
        await asyncio.to_thread(broker.stop)
        await asyncio.to_thread(database.stop)
        await asyncio.to_thread(database.remove)
        shutil.rmtree(root / "kafka", ignore_errors=True)
        shutil.rmtree(work, ignore_errors=True)


def cpu_groups(
    platform: Platform, standins: StandIns, kafka_port: int, postgres_port: int
) -> dict[str, Callable[[], Iterable[int]]]:
    """The process groups of a configuration: each service's API and workers, the
    stand-ins, PostgreSQL and Kafka (found by the port each listens on)."""

    def role(service: str, api: bool) -> Callable[[], list[int]]:
        return lambda: [
            r.process.pid
            for r in platform.replicas.get(service, [])
            if r.process is not None and (r.role == "api") == api
        ]

    groups: dict[str, Callable[[], Iterable[int]]] = {}
    for service in ("booking", "timeslots", "reminders"):
        groups[f"{service} api"] = role(service, api=True)
        groups[f"{service} workers"] = role(service, api=False)
    groups["payment and mail stand-ins"] = lambda: (
        [standins.process.pid] if standins.process is not None else []
    )
    groups["postgresql"] = lambda: [p for p in [listening_pid(postgres_port)] if p]
    groups["kafka"] = lambda: [p for p in [listening_pid(kafka_port)] if p]
    return groups


def finite(value: Any) -> Any:
    """``value`` with every NaN or infinite float replaced by None (JSON has neither)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [finite(v) for v in value]
    return value


def rounded(values: list[float], p: float, digits: int) -> float | None:
    """A percentile, rounded; None when there are no values."""
    return round(percentile(values, p), digits) if values else None


def assemble(configurations: list[dict[str, Any]], seconds: int) -> dict[str, Any]:
    runs = [run for c in configurations for run in c["runs"]]
    (first,) = [c for c in configurations if c["paced"] is not None]
    paced: dict[str, list[float]] = first["paced"]
    hop_ms = percentile(first["hops"], 50) * 1000
    to_confirmed = paced["payment_to_confirmed_ms"]
    to_reminder = paced["payment_to_reminder_ms"]
    p50 = percentile(to_confirmed, 50)
    targets: dict[str, Any] = {}
    for run in runs:
        if run["offered_per_s"] != TARGET_RATE:
            continue
        targets[f"at_{TARGET_RATE}_per_s_{run['replicas']}_worker"] = {
            "target": f"confirmed >= {TARGET_CONFIRMED_RATIO:.0%} of {TARGET_RATE} offered/s, "
            "lag does not grow",
            "value": run["confirmed_ratio_to_offered"],
            "lag_grew": run["lag_grew"],
            "replicas": run["replicas"],
            "offered_per_s": TARGET_RATE,
            "met": run["confirmed_ratio_to_offered"] >= TARGET_CONFIRMED_RATIO
            and not run["lag_grew"],
        }
    targets["payment_to_confirmed_p50_ms"] = {
        "target": f"<= {TARGET_IN_KAFKA_HOPS:g} x kafka_roundtrip_p50_ms "
        f"({TARGET_IN_KAFKA_HOPS * hop_ms:.2f} ms)",
        "value": round(p50, 2),
        "met": p50 <= TARGET_IN_KAFKA_HOPS * hop_ms,
    }
    return {
        "benchmark": "end to end at fixed offered rates",
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "phase_s": seconds,
        "phase_s_default": PHASE_S_DEFAULT,
        "rates": list(RATES),
        "runs": runs,
        "payment_to_confirmed_p50_ms": round(p50, 2),
        "payment_to_confirmed_p99_ms": round(percentile(to_confirmed, 99), 2),
        "kafka_roundtrip_p50_ms": round(hop_ms, 2),
        "payment_to_confirmed_p50_in_kafka_roundtrips": round(p50 / hop_ms, 2),
        "payment_to_reminder_p50_ms": round(percentile(to_reminder, 50), 2),
        "payment_to_reminder_p99_ms": round(percentile(to_reminder, 99), 2),
        "payment_to_reminder_p50_in_kafka_roundtrips": round(
            percentile(to_reminder, 50) / hop_ms, 2
        ),
        "paced_request_to_confirmed_p50_ms": round(
            percentile(paced["request_to_confirmed_ms"], 50), 2
        ),
        "targets": targets,
        "paced": {"bookings": PACED, "pace_s": PACE_S, "replicas": first["replicas"]}
        | {k: sorted(round(v, 3) for v in values) for k, values in paced.items()},
        "kafka_roundtrip_ms": sorted(round(h * 1000, 3) for h in first["hops"]),
        "definitions": DEFINITIONS,
        "setup": {
            "configurations": [c["setup"] for c in configurations],
            "api": f"per service one `serve --role api --workers {API_WORKERS}` process",
            "workers": "per service `serve --role worker` processes: 1, then 2 (their consumer "
            "groups share the partitions)",
            "isolation": "each configuration on a Kafka broker and a PostgreSQL server of its "
            "own, started for it and deleted after it",
            "load": f"wrk, {WRK_THREADS} threads, bench/e2e.lua: connections = max("
            f"{MIN_CONNECTIONS}, offered x {LATENCY_BUDGET_S:g}s), fixed send schedule",
            "payment": "stand-in process: pays each BookingCreated as soon as it reads it",
            "service_settings": PRODUCTION_POLLS,
        },
        "environment": environment() | {"load_1m_at_end": round(os.getloadavg()[0], 2)},
    }


DEFINITIONS = {
    "sent_per_s": "requests wrk wrote / wrk's duration (wrk is closed-loop: below the offered "
    "rate when every connection waits for an answer)",
    "created": "201 answers counted by wrk",
    "confirmed": "the phase's bookings (told by their user ids) with a BookingConfirmed on "
    f"booking.events by the drain deadline ({DRAIN_S:g}s after the load)",
    "confirmed_per_s": "BookingConfirmed of the phase's bookings whose event time lies in the "
    "load window [wrk start, wrk start + wrk duration], / wrk duration",
    "confirmed_ratio_to_offered": "confirmed_per_s / offered_per_s",
    "request_to_confirmed": "BookingCreated event time (set in the transaction that inserts the "
    "booking, while the POST is handled) to BookingConfirmed event time, per booking confirmed "
    "by the drain deadline (the others are left out: under a backlog these understate); the "
    "HTTP time before the handler is not in it (wrk's http_p50_ms/http_p99_ms are)",
    "lag_series": "per consumer group, platform_runtime.lag.consumer_lag summed over its "
    f"topics, every {SAMPLE_S:g}s from the load start (t_s) through the drain; load_s = load end",
    "lag_grew": f"for some platform group (not the stand-in): the mean lag over the last "
    f"{LAG_WINDOW_S:g}s of the load exceeds the mean over the {LAG_WINDOW_S:g}s around one third "
    f"into the load by more than max({LAG_MARGIN_MIN}, {LAG_MARGIN_S:g}s x offered rate) "
    f"records, or the lag is not 0 within {LAG_DRAIN_BOUND_S:g}s after the load ended",
    "payment_to_confirmed": "PaymentSucceeded event time (the stand-in, when it publishes) to "
    "BookingConfirmed event time (the booking service, in the confirming transaction); "
    f"{PACED} bookings one every {PACE_S}s",
    "payment_to_reminder": "PaymentSucceeded event time to the reminders' created_at",
    "kafka_roundtrip_p50_ms": f"p50 of {HOP_MESSAGES} produce-then-consume round trips, one "
    "message at a time, through the same broker",
}


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}"


def report(document: dict[str, Any]) -> None:
    print()
    print(
        f"{'workers':>7} {'offered/s':>9} {'sent/s':>8} {'created/s':>9} {'confirmed/s':>11} "
        f"{'ratio':>6} {'p50 ms':>8} {'p99 ms':>8} {'lag grew':>8}"
    )
    for run in document["runs"]:
        print(
            f"{run['replicas']:>7} {run['offered_per_s']:>9} {run['sent_per_s']:>8.1f} "
            f"{run['created_per_s']:>9.1f} {run['confirmed_per_s']:>11.1f} "
            f"{run['confirmed_ratio_to_offered']:>6.2f} "
            f"{_ms(run['request_to_confirmed_p50_ms']):>8} "
            f"{_ms(run['request_to_confirmed_p99_ms']):>8} {run['lag_grew']!s:>8}"
        )
    print(
        "paced PaymentSucceeded -> BookingConfirmed p50 "
        f"{document['payment_to_confirmed_p50_ms']} ms "
        f"(p99 {document['payment_to_confirmed_p99_ms']} ms), one Kafka hop "
        f"{document['kafka_roundtrip_p50_ms']} ms: "
        f"{document['payment_to_confirmed_p50_in_kafka_roundtrips']} hops; to reminder p50 "
        f"{document['payment_to_reminder_p50_ms']} ms"
    )
    for name, target in document["targets"].items():
        print(
            f"  {name:34s} {target['value']!s:>8}  {target['target']}: "
            f"{'met' if target['met'] else 'MISSED'}"
        )
    print("wrote bench/results/e2e.json and bench/results/e2e.png")


def plot(document: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = document["runs"]
    configs = sorted({r["replicas"] for r in runs})
    rates = document["rates"]
    fig = plt.figure(figsize=(16, 4.2 * (1 + len(configs))))
    grid = fig.add_gridspec(1 + len(configs), len(rates))
    colours = {1: "#3a7dce", 2: "#2ca02c"}

    bars = fig.add_subplot(grid[0, : len(rates) - 1])
    width = 0.8 / len(configs)
    for k, replicas in enumerate(configs):
        mine = {r["offered_per_s"]: r for r in runs if r["replicas"] == replicas}
        xs = [i + (k - (len(configs) - 1) / 2) * width for i in range(len(rates))]
        values = [mine[rate]["confirmed_per_s"] for rate in rates]
        bars.bar(
            xs,
            values,
            width,
            color=colours.get(replicas),
            label=f"confirmed/s, {replicas} worker(s)",
        )
        bars.scatter(
            xs,
            [mine[rate]["sent_per_s"] for rate in rates],
            marker="_",
            s=400,
            color="black",
            zorder=3,
            label="sent/s" if k == 0 else None,
        )
        for x, rate in zip(xs, rates, strict=True):
            run = mine[rate]
            bars.annotate(
                f"{run['confirmed_ratio_to_offered']:.2f}"
                + (" lag grew" if run["lag_grew"] else ""),
                (x, run["confirmed_per_s"]),
                ha="center",
                va="bottom",
                fontsize=8,
            )
    for i, rate in enumerate(rates):
        bars.hlines(
            rate,
            i - 0.45,
            i + 0.45,
            colors="#d62728",
            linestyles="--",
            label="_" if i else "offered",
        )
    bars.set_xticks(range(len(rates)), [f"{r}/s offered" for r in rates])
    bars.set_ylabel("bookings per second")
    bars.set_title(
        f"Confirmed per second in the load window ({document['phase_s']} s per phase); "
        "label: ratio to offered"
    )
    bars.legend(fontsize=8, loc="upper left")

    paced = fig.add_subplot(grid[0, len(rates) - 1])
    data = [
        document["paced"]["payment_to_confirmed_ms"],
        document["paced"]["payment_to_reminder_ms"],
    ]
    paced.boxplot(data, whis=(1, 99))
    paced.set_xticks([1, 2], ["Payment -> Confirmed", "Payment -> reminder"])
    hop = document["kafka_roundtrip_p50_ms"]
    paced.axhline(hop, color="#d62728", linestyle="--", label=f"one Kafka hop p50 {hop:.1f} ms")
    paced.axhline(
        TARGET_IN_KAFKA_HOPS * hop,
        color="#ff7f0e",
        linestyle=":",
        label=f"target {TARGET_IN_KAFKA_HOPS:g} hops",
    )
    paced.set_ylabel("ms")
    paced.set_yscale("log")
    paced.set_title(f"Paced, {PACED} bookings one every {PACE_S}s")
    paced.legend(fontsize=8)

    for row, replicas in enumerate(configs, start=1):
        for col, rate in enumerate(rates):
            ax = fig.add_subplot(grid[row, col])
            (run,) = [r for r in runs if r["replicas"] == replicas and r["offered_per_s"] == rate]
            series = run["lag_series"]
            for group, values in series["lag"].items():
                points = [
                    (t, v) for t, v in zip(series["t_s"], values, strict=True) if v is not None
                ]
                if points:
                    ax.plot(
                        *zip(*points, strict=True),
                        label=group,
                        linestyle=":" if group == STANDIN_GROUP else "-",
                    )
            ax.axvline(series["load_s"], color="grey", linestyle="--")
            ax.set_title(
                f"{replicas} worker(s), {rate}/s offered: lag "
                + ("GREW" if run["lag_grew"] else "flat, drained"),
                fontsize=10,
            )
            ax.set_xlabel("s since the load started (dashed: load end)")
            ax.set_ylabel("records not committed")
            if row == 1 and col == 0:
                ax.legend(fontsize=7)
    fig.suptitle(
        "End to end at fixed offered rates: three services (API + worker processes), "
        "real Kafka and PostgreSQL, payment stand-in"
    )
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def cli() -> None:
    raise SystemExit(asyncio.run(main()))


if __name__ == "__main__":
    cli()
