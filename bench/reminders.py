"""Delivery benchmark of the reminders service (``make bench-reminders``).

Against the local PostgreSQL and Kafka (``TEST_POSTGRES_DSN`` / ``TEST_KAFKA_BOOTSTRAP``, else
the ``deploy/local`` defaults), in a database of its own that is created, migrated and
dropped again:

* one dispatcher process (``reminders serve`` with the scheduler and the workers off) and
  two worker processes (``reminders worker``), as they would run in production;
* an SMTP sink (aiosmtpd, in this process) that records the arrival time and Message-ID of
  every message;
* run 1, the reference: 1,000 reminders inserted directly (one set-based ``INSERT``), all
  scheduled for the same second, with a dispatcher that hands out only what is already due
  (``REMINDERS_DISPATCH_AHEAD_S=0``, as the service did before jobs were dispatched ahead);
  run 2: the same with the dispatcher restarted with its defaults, for the lateness target;
  run 3: 10,000 likewise.

``delivered`` counts distinct Message-IDs at the sink, ``duplicates`` the messages beyond one
per Message-ID; lateness is the arrival at the sink minus the scheduled time. Writes
``bench/results/reminders.json`` and ``bench/results/reminders.png`` and prints a summary.
Every figure is measured in this run; a missed target is reported as missed.

Jobs travel on the fixed topic ``reminders.jobs`` with the fixed group ``reminders-delivery``
(the service's own), which resumes at its committed offsets: records left by earlier runs or
by tests are read too, and dropped cheaply (their reminders are not in this database).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import httpx
from aiokafka.admin import AIOKafkaAdminClient
from aiosmtpd.controller import Controller

import reminders
from platform_runtime.migrations import upgrade
from reminders.delivery import CONSUMER
from tests.support.ports import free_port

RESULTS = Path(__file__).resolve().parent / "results"
ALEMBIC_INI = Path(reminders.__file__).resolve().parents[2] / "alembic.ini"
DEFAULT_DSN = "postgresql://platform:platform@127.0.0.1:55432"
DEFAULT_KAFKA = "127.0.0.1:9092"

BATCH = 10_000
SMALL_BATCH = 1_000
WORKERS = 2
CONCURRENCY = 32
LEAD_S = 3.0
"""The reminders fall due this long after they are inserted (all processes are ready)."""
TARGET_BATCH_S = 60.0
TARGET_P99_S = 2.0
SETTLE_S = 5.0

MESSAGE_ID = re.compile(rb"^Message-ID:\s*(\S+)", re.MULTILINE | re.IGNORECASE)


# --- the SMTP sink ---------------------------------------------------------------------


@dataclass
class Sink:
    """Accepts everything; keeps (arrival time, Message-ID) of each message."""

    port: int = field(default_factory=free_port)
    arrivals: list[tuple[float, str]] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        arrived = time.time()
        found = MESSAGE_ID.search(envelope.content)
        message_id = found.group(1).decode() if found else "?"
        with self._lock:
            self.arrivals.append((arrived, message_id))
        return "250 OK"

    def take(self) -> list[tuple[float, str]]:
        with self._lock:
            taken, self.arrivals = self.arrivals, []
        return taken


# --- the processes ---------------------------------------------------------------------


def service_env(database_url: str, kafka: str, sink_port: int) -> dict[str, str]:
    return os.environ | {
        "REMINDERS_DATABASE_URL": database_url,
        "REMINDERS_KAFKA_BOOTSTRAP_SERVERS": kafka,
        "REMINDERS_SMTP_HOST": "127.0.0.1",
        "REMINDERS_SMTP_PORT": str(sink_port),
        "REMINDERS_LOG_LEVEL": "WARNING",
        "REMINDERS_DELIVERY_CONCURRENCY": str(CONCURRENCY),
        "REMINDERS_DISPATCH_INTERVAL_S": "0.1",
        "REMINDERS_DISPATCH_BATCH_SIZE": "500",
        "REMINDERS_OUTBOX_BATCH_SIZE": "1000",
        "REMINDERS_OUTBOX_POLL_INTERVAL_S": "0.2",
        "REMINDERS_KAFKA_FETCH_MAX_WAIT_MS": "20",
        "REMINDERS_DATABASE_POOL_SIZE": "10",
        "REMINDERS_DEVELOPMENT": "true",  # the API of the dispatcher uses the development secret
    }


def start(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as output:
        return subprocess.Popen(
            [sys.executable, "-m", "reminders", *args],
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
        )


def stop(processes: list[subprocess.Popen[bytes]]) -> None:
    for process in processes:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
    for process in processes:
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


async def wait_ready(http_port: int, kafka: str, workers: int, timeout_s: float = 120) -> None:
    """The dispatcher answers ready, and the worker group is stable with every worker in."""
    deadline = time.monotonic() + timeout_s
    async with httpx.AsyncClient() as client:
        while True:
            try:
                response = await client.get(f"http://127.0.0.1:{http_port}/health/ready")
                if response.status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError("the dispatcher did not get ready")
            await asyncio.sleep(0.5)
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka)
    await admin.start()
    try:
        while True:
            (response,) = await admin.describe_consumer_groups([CONSUMER])
            _, _, state, _, _, members = response.groups[0]
            if state == "Stable" and len(members) == workers:
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"worker group is {state} with {len(members)} members")
            await asyncio.sleep(0.5)
    finally:
        await admin.close()


# --- one run ---------------------------------------------------------------------------

INSERT_DUE = """
INSERT INTO reminders (id, booking_id, user_id, kind, scheduled_for, due_at, status,
                       contact_email, starts_at, ends_at, room_name, room_time_zone)
SELECT gen_random_uuid(), gen_random_uuid(), 'bench-user-' || n, 'email_1h', $1::timestamptz,
       $1::timestamptz, 'pending',
       'guest-' || n || '@bench.example', $1::timestamptz + interval '1 hour',
       $1::timestamptz + interval '2 hours',
       'Room ' || (n % 50), 'Europe/Berlin'
FROM generate_series(1, $2) AS n
"""


def environment() -> dict[str, Any]:
    """The machine a benchmark ran on (part of every results document)."""
    return {
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "system": platform.platform(),
    }


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    k = (len(ordered) - 1) * p / 100
    low = int(k)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (k - low)


async def run(db: asyncpg.Connection, sink: Sink, due: int, timeout_s: float) -> dict[str, Any]:
    sink.take()
    scheduled = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=LEAD_S + 1)
    inserted_at = time.time()
    await db.execute(INSERT_DUE, scheduled, due)
    insert_s = time.time() - inserted_at
    expected = {
        f"<reminder-{r['id']}.{scheduled:%Y%m%dT%H%M%SZ}@reminders.booking-platform>"
        for r in await db.fetch(
            "SELECT id FROM reminders WHERE scheduled_for = $1 AND status <> 'sent'", scheduled
        )
    }
    assert len(expected) == due, (len(expected), due)
    print(f"  {due} reminders inserted in {insert_s:.2f}s, due at {scheduled:%H:%M:%S}")
    arrivals: list[tuple[float, str]] = []
    deadline = time.time() + LEAD_S + timeout_s
    while time.time() < deadline:
        await asyncio.sleep(0.2)
        arrivals += sink.take()
        if len({m for _, m in arrivals} & expected) >= due:
            break
    await asyncio.sleep(SETTLE_S)  # anything arriving twice arrives now
    arrivals += sink.take()
    ours = [(t, m) for t, m in arrivals if m in expected]
    distinct = {m for _, m in ours}
    first_arrival: dict[str, float] = {}
    for t, m in sorted(ours):
        first_arrival.setdefault(m, t)
    lateness = sorted(t - scheduled.timestamp() for t in first_arrival.values())
    batch_s = lateness[-1] if lateness else float("nan")
    statuses = {
        r["status"]: r["count"]
        for r in await db.fetch(
            "SELECT status, count(*) FROM reminders WHERE scheduled_for = $1 GROUP BY status",
            scheduled,
        )
    }
    result = {
        "due": due,
        "delivered": len(distinct),
        "duplicates": len(ours) - len(distinct),
        "foreign_messages": len(arrivals) - len(ours),
        "batch_s": round(batch_s, 3),
        "delivered_per_s": round(len(distinct) / batch_s, 1) if lateness else 0.0,
        "lateness_p50_s": round(percentile(lateness, 50), 3),
        "lateness_p90_s": round(percentile(lateness, 90), 3),
        "lateness_p99_s": round(percentile(lateness, 99), 3),
        "lateness_max_s": round(batch_s, 3),
        "first_arrival_s": round(lateness[0], 3) if lateness else None,
        "statuses_in_database": statuses,
        "insert_s": round(insert_s, 3),
        "lateness_s": [round(x, 4) for x in lateness],
    }
    print(
        f"  delivered {result['delivered']}/{due}, duplicates {result['duplicates']}, "
        f"batch {result['batch_s']}s, {result['delivered_per_s']}/s, "
        f"lateness p50 {result['lateness_p50_s']}s p99 {result['lateness_p99_s']}s"
    )
    return result


# --- the plot --------------------------------------------------------------------------


def plot(big: dict[str, Any], small: dict[str, Any], reference: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(13, 4.8))
    for ax, result, target in ((left, big, TARGET_BATCH_S), (right, small, TARGET_P99_S)):
        lateness = result["lateness_s"]
        width = 0.5 if result["due"] >= 5000 else 0.1
        top = max(lateness) if lateness else 1.0
        bins = [i * width for i in range(int(top / width) + 2)]
        ax.hist(lateness, bins=bins, color="#3a7dce", label="dispatched ahead (default)")
        if result is small:
            ax.hist(
                reference["lateness_s"],
                bins=[i * width for i in range(int(max(reference["lateness_s"]) / width) + 2)],
                histtype="step",
                color="#ff7f0e",
                linewidth=1.5,
                label=f"reference, nothing ahead: p99 {reference['lateness_p99_s']:.2f}s",
            )
        ax.axvline(result["lateness_p50_s"], color="#555", linestyle=":", label="p50")
        ax.axvline(result["lateness_p99_s"], color="#d62728", linestyle="--", label="p99")
        if result["due"] < 5000:
            ax.axvline(target, color="#2ca02c", label=f"p99 target {target:g}s")
        ax.set_xlabel("arrival at the SMTP sink - scheduled time (s)")
        ax.set_ylabel(f"messages per {width:g}s")
        ax.set_title(
            f"{result['due']:,} due at once: {result['delivered']:,} delivered, "
            f"{result['duplicates']} duplicates\n"
            f"all in {result['batch_s']:.1f}s ({result['delivered_per_s']:.0f}/s), "
            f"p99 {result['lateness_p99_s']:.2f}s"
        )
        ax.legend()
    fig.suptitle(f"Reminder delivery: 1 dispatcher, {WORKERS} worker processes, real Kafka + SMTP")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


# --- main ------------------------------------------------------------------------------


async def main(batch: int, small_batch: int) -> dict[str, Any]:
    dsn = os.environ.get("TEST_POSTGRES_DSN", DEFAULT_DSN).rstrip("/")
    kafka = os.environ.get("TEST_KAFKA_BOOTSTRAP", DEFAULT_KAFKA)
    name = f"bench_reminders_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(f"{dsn}/postgres")
    await admin.execute(f'CREATE DATABASE "{name}"')
    url = f"{dsn.replace('postgresql://', 'postgresql+asyncpg://', 1)}/{name}"
    sink = Sink()
    controller = Controller(sink, hostname="127.0.0.1", port=sink.port)
    controller.start()
    processes: list[subprocess.Popen[bytes]] = []
    logs = Path(tempfile.gettempdir()) / "bench-reminders-logs"
    logs.mkdir(parents=True, exist_ok=True)
    print(f"process logs in {logs}")
    try:
        await asyncio.to_thread(upgrade, ALEMBIC_INI, url)
        env = service_env(url, kafka, sink.port)
        http_port = free_port()
        dispatcher_env = env | {
            "REMINDERS_WORKER_ENABLED": "false",
            "REMINDERS_SCHEDULER_ENABLED": "false",
        }
        processes.append(
            start(
                ["serve", "--port", str(http_port)],
                dispatcher_env | {"REMINDERS_DISPATCH_AHEAD_S": "0"},
                logs / "reminders-dispatcher-no-ahead.log",
            )
        )
        for i in range(WORKERS):
            processes.append(
                start(
                    ["worker", "--port", str(free_port())],
                    env,
                    logs / f"reminders-worker-{i + 1}.log",
                )
            )
        started = time.monotonic()
        await wait_ready(http_port, kafka, WORKERS)
        print(f"dispatcher and {WORKERS} workers ready in {time.monotonic() - started:.1f}s")
        db = await asyncpg.connect(f"{dsn}/{name}")
        try:
            print(f"run 1 (reference): {small_batch:,} due at once, nothing dispatched ahead")
            reference = await run(db, sink, small_batch, timeout_s=60)
            stop(processes[:1])
            processes[0] = start(
                ["serve", "--port", str(http_port)],
                dispatcher_env,
                logs / "reminders-dispatcher.log",
            )
            await wait_ready(http_port, kafka, WORKERS)
            print(f"run 2: {small_batch:,} due at once")
            small = await run(db, sink, small_batch, timeout_s=60)
            print(f"run 3: {batch:,} due at once")
            big = await run(db, sink, batch, timeout_s=180)
        finally:
            await db.close()
    finally:
        stop(processes)
        controller.stop()
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()

    targets = {
        "delivered_exactly_due": {"target": big["due"], "measured": big["delivered"]},
        "duplicates": {"target": 0, "measured": big["duplicates"] + small["duplicates"]},
        "batch_s": {"target": f"< {TARGET_BATCH_S:g}", "measured": big["batch_s"]},
        "lateness_p99_s_with_1000_due": {
            "target": f"< {TARGET_P99_S:g}",
            "measured": small["lateness_p99_s"],
        },
    }
    met = {
        "delivered_exactly_due": big["delivered"] == big["due"],
        "duplicates": big["duplicates"] + small["duplicates"] == 0,
        "batch_s": big["batch_s"] < TARGET_BATCH_S,
        "lateness_p99_s_with_1000_due": small["lateness_p99_s"] < TARGET_P99_S,
    }
    for key, ok in met.items():
        targets[key]["met"] = ok
    summary = {k: v for k, v in big.items() if k != "lateness_s"}
    document = {
        "benchmark": "reminders delivery",
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        **summary,
        "lateness_p99_s_with_1000_due": small["lateness_p99_s"],
        "reference_lateness_p99_s_with_1000_due_no_dispatch_ahead": reference["lateness_p99_s"],
        "lateness_p99_ratio_to_reference": round(
            small["lateness_p99_s"] / reference["lateness_p99_s"], 3
        ),
        "targets": targets,
        "all_targets_met": all(met.values()),
        "runs": [
            {k: v for k, v in reference.items() if k != "lateness_s"} | {"dispatch_ahead_s": 0},
            {k: v for k, v in small.items() if k != "lateness_s"} | {"dispatch_ahead_s": 10},
            {k: v for k, v in big.items() if k != "lateness_s"} | {"dispatch_ahead_s": 10},
        ],
        "setup": {
            "dispatcher_processes": 1,
            "worker_processes": WORKERS,
            "senders_per_worker": CONCURRENCY,
            "reminders_jobs_partitions": "12 (the service's default, REMINDERS_JOBS_PARTITIONS)",
            "dispatch_ahead_s": "0 in the reference run, 10 (the service's default) after",
            "smtp_sink": "aiosmtpd in the benchmark process, one connection per sender",
            "lead_s": LEAD_S,
            "settle_s": SETTLE_S,
        },
        "environment": environment(),
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "reminders.json").write_text(json.dumps(document, indent=2) + "\n")
    plot(big, small, reference, RESULTS / "reminders.png")
    print(json.dumps({"targets": targets}, indent=2))
    print("wrote bench/results/reminders.json and bench/results/reminders.png")
    return document


def cli() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--due", type=int, default=BATCH)
    parser.add_argument("--small", type=int, default=SMALL_BATCH)
    args = parser.parse_args()
    document = asyncio.run(main(args.due, args.small))
    # A missed time target is a result; a reminder lost or sent twice makes it no benchmark.
    exactly_once = document["targets"]["delivered_exactly_due"]["met"]
    sys.exit(0 if exactly_once and document["targets"]["duplicates"]["met"] else 1)


if __name__ == "__main__":
    cli()
