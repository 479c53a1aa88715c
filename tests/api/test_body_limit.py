"""A 10 MB request body, without a token, against each running service process: answered 413
at once, before the body is read, and the process's memory does not grow by it."""

from __future__ import annotations

import asyncio
import contextlib
import json
import statistics
import time
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from platform_runtime.http.problems import PROBLEM_MEDIA_TYPE
from tests.support.abuse import CHUNK, TEN_MB
from tests.support.platform import SERVICES, Platform

TRIES = 5
ANSWERED_WITHIN_S = 0.100
RSS_SLACK_BYTES = 2 * 1024 * 1024
"""Allocator noise; a service that read one of the bodies whole would grow by 10 MB."""

A_WRITE = {
    "timeslots": "/rooms",
    "booking": "/bookings",
    "reminders": "/bookings/00000000-0000-0000-0000-000000000000/reminders",
}
READS_BODIES = {"timeslots", "booking"}
"""Services with routes that read a body (reminders' API only reads): a chunked body, whose
length is not declared, is refused while such a route reads it."""


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmRSS for process {pid}")  # pragma: no cover


async def _refuse(url: str, *, declared: bool) -> float:
    """Seconds until the answer to a 10 MB POST, sent the way a client such as curl sends it:
    the body keeps flowing while the answer is awaited, and stops once the answer is there."""
    parts = urlsplit(url)
    assert parts.hostname is not None
    assert parts.port is not None
    reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
    framing = f"Content-Length: {TEN_MB}" if declared else "Transfer-Encoding: chunked"
    started = time.perf_counter()
    writer.write(
        f"POST {parts.path} HTTP/1.1\r\nHost: {parts.netloc}\r\n"
        f"Content-Type: application/json\r\n{framing}\r\n\r\n".encode()
    )

    async def send() -> None:
        chunk = b"[" * CHUNK
        with contextlib.suppress(ConnectionError):
            for _ in range(TEN_MB // CHUNK):
                writer.write(chunk if declared else b"%x\r\n%b\r\n" % (len(chunk), chunk))
                await writer.drain()

    sending = asyncio.create_task(send())
    try:
        head = await reader.readuntil(b"\r\n\r\n")
        elapsed = time.perf_counter() - started
        status_line, *header_lines = head.decode("latin-1").split("\r\n")
        headers = dict(
            (name.strip().lower(), value.strip())
            for name, value in (line.split(":", 1) for line in header_lines if ":" in line)
        )
        body = await reader.readexactly(int(headers["content-length"]))
    finally:
        sending.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await sending
        writer.close()
    assert status_line.split()[1] == "413", status_line
    assert headers["content-type"] == PROBLEM_MEDIA_TYPE
    assert json.loads(body)["status"] == 413
    return elapsed


@pytest.mark.parametrize("service", SERVICES)
async def test_a_10_mb_body_is_refused_at_once_and_costs_the_process_no_memory(
    platform: Platform, service: str
) -> None:
    (replica,) = platform.replicas[service]
    assert replica.process is not None
    url = platform.url(service) + A_WRITE[service]
    await _refuse(url, declared=True)  # warm: the first answers import and cache
    chunks = service in READS_BODIES
    if chunks:
        await _refuse(url, declared=False)
    before = rss_bytes(replica.process.pid)
    declared = [await _refuse(url, declared=True) for _ in range(TRIES)]
    chunked = [await _refuse(url, declared=False) for _ in range(TRIES if chunks else 0)]
    after = rss_bytes(replica.process.pid)

    medians = [statistics.median(times) for times in (declared, chunked) if times]
    print(  # the figures, for the record (pytest -s)
        f"{service}: 413 in {' / '.join(f'{m * 1000:.1f}' for m in medians)} ms (declared "
        f"length / chunked); RSS {before / 2**20:.1f} -> {after / 2**20:.1f} MiB"
    )
    assert all(median < ANSWERED_WITHIN_S for median in medians)
    assert after - before < RSS_SLACK_BYTES
