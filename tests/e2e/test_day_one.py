"""Day one: what a checkout's ``make up``, ``make status`` and ``make down`` say when the Kafka
broker or the PostgreSQL server on their ports belongs to another checkout, how far behind the
consumer groups are (``deploy/local``, run as a developer runs it), and API documentation that
renders without internet access."""

from __future__ import annotations

import asyncio
import os
import re
import smtplib
import subprocess
import time
from pathlib import Path

from platform_tooling.standins import MailSink
from tests.support.broker import KAFKA_SH, POSTGRES_SH, REPO, PrivateBroker, PrivatePostgres
from tests.support.chromium import render
from tests.support.platform import Platform
from tests.support.ports import free_port
from tests.support.threads import in_thread

SERVICES_SH = REPO / "deploy" / "local" / "services.sh"


def _run(script: Path, action: str, state: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(script), action],
        env=os.environ | {"PLATFORM_STATE_DIR": str(state)} | env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_a_broker_another_checkout_started_is_named_reused_loudly_and_left_running(
    broker: PrivateBroker, tmp_path: Path
) -> None:
    ports = {"KAFKA_PORT": str(broker.port), "KAFKA_CONTROLLER_PORT": str(broker.controller_port)}
    owner = f"the checkout in {REPO}, state in {broker.state_dir}"

    up = _run(KAFKA_SH, "up", tmp_path, **ports)
    status = _run(KAFKA_SH, "status", tmp_path, **ports)
    down = _run(KAFKA_SH, "down", tmp_path, **ports)
    still = _run(KAFKA_SH, "status", broker.state_dir, **ports)

    assert up.returncode == 0
    assert f"WARNING: a Kafka broker this checkout did not start answers at {broker.bootstrap}" in (
        up.stderr
    )
    assert owner in up.stderr
    assert f"cd {REPO} && PLATFORM_STATE_DIR={broker.state_dir} make down" in up.stderr
    assert "make status" in up.stderr
    assert f"not this checkout's: {owner}" in status.stderr
    assert "left running" in down.stderr
    assert owner in down.stderr
    assert still.returncode == 0
    assert "this checkout's" in still.stderr  # its own checkout still has it


def test_a_database_server_another_checkout_started_is_named_reused_loudly_and_left_running(
    database: PrivatePostgres, tmp_path: Path
) -> None:
    port = {"PG_PORT": str(database.port)}
    owner = f"the checkout in {REPO}, state in {database.state_dir}"

    up = _run(POSTGRES_SH, "up", tmp_path, **port)
    status = _run(POSTGRES_SH, "status", tmp_path, **port)
    down = _run(POSTGRES_SH, "down", tmp_path, **port)

    assert up.returncode == 0
    assert "WARNING: a PostgreSQL server this checkout did not start answers at" in up.stderr
    assert owner in up.stderr
    assert f"not this checkout's: {owner}" in status.stderr
    assert "left running" in down.stderr
    assert not (tmp_path / "postgres" / "data").exists()  # no cluster of its own was made


async def test_status_shows_how_far_behind_each_consumer_group_is(
    platform: Platform, tmp_path: Path
) -> None:
    ports = " ".join(  # a replica without a role serves the API and the background work
        f"{replica.service}-{role}={replica.port}"
        for replicas in platform.replicas.values()
        for replica in replicas
        for role in ([replica.role] if replica.role else ["api", "worker"])
    )
    expected = {
        "timeslots-booking-counts": "booking.events",
        "booking-inventory": "timeslots.events",
        "booking-payments": "payments.events",
        "reminders-bookings": "booking.events",
    }
    out = ""
    deadline = time.monotonic() + 60  # each worker measures its groups' lag every 15 s
    while time.monotonic() < deadline:
        result = await in_thread(_run, SERVICES_SH, "status", tmp_path, SERVICE_PORTS=ports)
        out = result.stdout + result.stderr
        if all(f"consumer group {group}:" in out for group in expected):
            break
        await asyncio.sleep(1)

    for service in ("timeslots", "booking", "reminders"):
        assert re.search(rf"^{service}-worker \(port \d+\): ready$", out, re.M), out
    for group, topic in expected.items():
        assert re.search(rf"consumer group {group}: [\d,]+ behind \({topic}: [\d,]+", out), out
    assert "infrastructure:" in out


def test_the_api_documentation_renders_the_operations_without_internet_access(
    platform: Platform, tmp_path: Path
) -> None:
    shot = tmp_path / "docs.png"

    dom = render(f"{platform.api_url('booking')}/docs", screenshot=shot)
    redoc = render(f"{platform.api_url('booking')}/redoc", screenshot=tmp_path / "redoc.png")

    operations = re.findall(r'class="opblock-summary-path"[^>]*data-path="([^"]+)"', dom)
    assert {"/bookings", "/bookings/{booking_id}/cancel"} <= set(operations), dom[-2000:]
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert shot.stat().st_size > 20_000  # a rendered page, not a blank one
    assert "POST /bookings" in redoc or "/bookings/{booking_id}/cancel" in redoc


def test_the_mail_stand_in_keeps_the_messages_of_earlier_runs_and_numbers_on(
    tmp_path: Path,
) -> None:
    for number in (1, 2, 7):
        (tmp_path / f"{number:05d}.eml").write_text(f"Subject: earlier {number}\n\nkept\n")
    sink = MailSink(port=free_port(), directory=tmp_path)
    sink.start()
    try:
        with smtplib.SMTP("127.0.0.1", sink.port, timeout=10) as smtp:
            for subject in ("first", "second"):
                smtp.sendmail("a@example.com", ["b@example.com"], f"Subject: {subject}\n\nhi\n")
    finally:
        sink.stop()

    files = {p.name: p.read_text() for p in sorted(tmp_path.glob("*.eml"))}
    assert list(files) == ["00001.eml", "00002.eml", "00007.eml", "00008.eml", "00009.eml"]
    assert "earlier 1" in files["00001.eml"]
    assert "Subject: first" in files["00008.eml"]
    assert "Subject: second" in files["00009.eml"]


README = REPO / "README.md"
WALK_THROUGH = "## A walk through the API"
MAKE_UP_URLS = "TS=http://127.0.0.1:8001 BK=http://127.0.0.1:8002 RM=http://127.0.0.1:8003"


def _walk_through() -> tuple[str, list[str]]:
    """The README's walk-through: its bash blocks as one script, and the outputs it shows
    (the comment lines that start with ``{`` or ``[``; ``…`` stands for anything)."""
    text = README.read_text()
    section = text[text.index(WALK_THROUGH) :]
    section = section[: section.index("\n## ", 1)]
    blocks = re.findall(r"```bash\n(.*?)```", section, re.S)
    script = "\n".join(blocks)
    shown = [
        line.removeprefix("# ")
        for block in blocks
        for line in block.splitlines()
        if line.startswith(("# {", "# ["))
    ]
    return script, shown


async def test_the_readme_walk_through_runs_top_to_bottom_with_the_outputs_it_shows(
    platform: Platform, tmp_path: Path
) -> None:
    script, shown = _walk_through()
    assert MAKE_UP_URLS in script
    urls = " ".join(
        f"{name}={platform.api_url(service)}"
        for name, service in (("TS", "timeslots"), ("BK", "booking"), ("RM", "reminders"))
    )

    result = await in_thread(
        subprocess.run,
        ["bash", "-euo", "pipefail", "-c", script.replace(MAKE_UP_URLS, urls)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )

    assert result.returncode == 0, result.stderr[-3000:]
    lines = result.stdout.splitlines()
    missing = [
        expected
        for expected in shown
        if not any(
            re.fullmatch(".*".join(map(re.escape, expected.split("…"))), line) for line in lines
        )
    ]
    assert len(shown) >= 6
    assert missing == [], result.stdout
