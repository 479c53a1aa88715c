"""The services' HTTP server as it runs: uvicorn with our options, spoken to over raw sockets.

A request larger than the limits is refused by the server that actually runs (not an
in-process transport), and the process goes on serving the next one.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest
import uvicorn
from fastapi import FastAPI

from platform_runtime.http.app import create_service_app
from platform_runtime.http.auth import CurrentUser, JwtVerifier
from platform_runtime.http.metrics import Metrics
from platform_runtime.http.server import BoundedHeadHttpToolsProtocol, uvicorn_options
from platform_runtime.settings import ServiceSettings

SETTINGS = ServiceSettings(http_max_body_bytes=64 * 1024, http_max_header_bytes=8 * 1024)
TEN_MB = 10 * 1024 * 1024
GIVE_UP_S = 60


def _app(verifier: JwtVerifier) -> FastAPI:
    app = create_service_app(
        title="Notes",
        version="1",
        verifier=verifier,
        metrics=Metrics(),
        checks={},
        max_body_bytes=SETTINGS.http_max_body_bytes,
    )

    @app.post("/notes")
    async def add(note: dict[str, Any], user: CurrentUser) -> dict[str, Any]:
        return note

    return app


@asynccontextmanager
async def serving(app: FastAPI) -> AsyncIterator[int]:
    """``app`` served by uvicorn with the services' options on a free port."""
    options = uvicorn_options(SETTINGS) | {"lifespan": "off"}
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, **options))
    task = asyncio.create_task(server.serve())
    try:
        while not server.started:  # waits for start-up; asserts nothing on time
            assert not task.done(), "the server did not start"
            await asyncio.sleep(0.01)
        yield server.servers[0].sockets[0].getsockname()[1]
    finally:
        server.should_exit = True
        await task


async def _exchange(port: int, request: bytes) -> tuple[int, dict[str, str], bytes]:
    """Send ``request`` as it is and read the answer until the server closes.

    A server that waits for bytes never sent would never answer: the test then fails after
    ``GIVE_UP_S`` instead of hanging (a bound on a hang, not on how fast the answer is)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(request)
        await writer.drain()
        async with asyncio.timeout(GIVE_UP_S):
            answer = await reader.read(-1)  # the server closes the connection after answering
    finally:
        writer.close()
    head, _, body = answer.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.lower().split(": ", 1) for line in header_lines)
    return int(status_line.split()[1]), headers, body


async def _live(port: int) -> int:
    status, _, _ = await _exchange(
        port, b"GET /health/live HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n"
    )
    return status


async def test_a_10_mb_body_without_a_token_is_refused_before_it_is_sent(
    verifier: JwtVerifier,
) -> None:
    async with serving(_app(verifier)) as port:
        # Only the head and 1 KiB of the declared 10 MB are ever sent: the answer cannot
        # depend on the rest.
        request = (
            b"POST /notes HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n\r\n" % TEN_MB
        ) + b"[" * 1024
        status, headers, body = await _exchange(port, request)
        after = await _live(port)

    assert status == 413
    assert headers["content-type"] == "application/problem+json"
    assert headers["connection"] == "close"
    assert json.loads(body)["detail"] == (
        "The request body is larger than 65536 bytes, the most this service accepts."
    )
    assert after == 200  # the process goes on serving


async def _send_all_and_read(port: int, head: bytes, body: bytes) -> bytes:
    """Send ``head`` and keep sending ``body`` while reading the answer, as curl does; the
    answer as read until the server closes (a reset instead would raise)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)

    async def send() -> None:
        writer.write(head)
        with contextlib.suppress(ConnectionError):
            for start in range(0, len(body), 16 * 1024):
                writer.write(body[start : start + 16 * 1024])
                await writer.drain()

    sending = asyncio.create_task(send())
    try:
        async with asyncio.timeout(GIVE_UP_S):
            return await reader.read(-1)
    finally:
        sending.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await sending
        writer.close()


@pytest.mark.parametrize("declared", [True, False])
async def test_a_client_still_sending_a_refused_body_reads_the_413_rather_than_a_reset(
    verifier: JwtVerifier, make_token: Callable[..., str], declared: bool
) -> None:
    framing = b"Content-Length: %d" % TEN_MB if declared else b"Transfer-Encoding: chunked"
    head = (
        b"POST /notes HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n"
        b"Authorization: Bearer %b\r\n%b\r\n\r\n" % (make_token().encode(), framing)
    )
    chunk = b"[" * 16 * 1024
    body = chunk * (TEN_MB // len(chunk))
    if not declared:
        body = (b"%x\r\n%b\r\n" % (len(chunk), chunk)) * (TEN_MB // len(chunk))
    async with serving(_app(verifier)) as port:
        answers = [await _send_all_and_read(port, head, body) for _ in range(3)]
        after = await _live(port)

    for answer in answers:
        assert answer.startswith(b"HTTP/1.1 413 "), answer[:200]
    assert after == 200


async def test_a_request_head_over_the_limit_is_refused_with_431(verifier: JwtVerifier) -> None:
    async with serving(_app(verifier)) as port:
        padding = b"X-Padding: " + b"p" * (SETTINGS.http_max_header_bytes + 1) + b"\r\n"
        status, headers, body = await _exchange(
            port, b"GET /health/live HTTP/1.1\r\nHost: test\r\n" + padding + b"\r\n"
        )
        after = await _live(port)

    assert status == 431
    assert headers["content-type"] == "application/problem+json"
    assert json.loads(body) == {
        "type": "about:blank",
        "title": "Request Header Fields Too Large",
        "status": 431,
        "detail": "The request line and headers are longer than 8192 bytes, "
        "the most this service accepts.",
    }
    assert after == 200


async def test_a_head_that_has_not_ended_is_refused_once_it_passes_the_limit(
    verifier: JwtVerifier,
) -> None:
    async with serving(_app(verifier)) as port:
        # Header lines without the blank line that would end them: the server cannot wait
        # for the end of the head to judge it.
        lines = b"X-More: " + b"m" * 1000 + b"\r\n"
        unfinished = b"GET /health/live HTTP/1.1\r\nHost: test\r\n" + lines * 10
        status, headers, _ = await _exchange(port, unfinished)
        after = await _live(port)

    assert status == 431
    assert headers["connection"] == "close"
    assert after == 200


async def test_a_head_just_within_the_limit_and_a_body_with_it_are_served(
    verifier: JwtVerifier, make_token: Any
) -> None:
    token = make_token()
    async with serving(_app(verifier)) as port:
        fixed = b"POST /notes HTTP/1.1\r\nHost: test\r\nAuthorization: Bearer %s\r\n" % (
            token.encode()
        )
        content = json.dumps({"text": "n" * 30_000}).encode()
        tail = b"Content-Type: application/json\r\nContent-Length: %d\r\n" % len(content)
        tail += b"Connection: close\r\n\r\n"
        room = SETTINGS.http_max_header_bytes - len(fixed) - len(tail) - len(b"X-Pad: \r\n")
        padding = b"X-Pad: " + b"p" * room + b"\r\n"
        head = fixed + padding + tail
        assert len(head) == SETTINGS.http_max_header_bytes
        status, _, body = await _exchange(port, head + content)

    assert status == 200
    assert json.loads(body) == {"text": "n" * 30_000}


async def test_requests_on_one_kept_alive_connection_each_get_the_whole_bound(
    verifier: JwtVerifier,
) -> None:
    padding = b"X-Pad: " + b"p" * (SETTINGS.http_max_header_bytes - 100) + b"\r\n"
    one = b"GET /health/live HTTP/1.1\r\nHost: test\r\n" + padding + b"\r\n"
    async with serving(_app(verifier)) as port:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        statuses = []
        try:
            for _ in range(3):
                writer.write(one)
                await writer.drain()
                status_line = await reader.readline()
                statuses.append(int(status_line.split()[1]))
                length = 0
                while (line := await reader.readline()) != b"\r\n":
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":")[1])
                await reader.readexactly(length)
        finally:
            writer.close()

    assert statuses == [200, 200, 200]


def test_uvicorn_runs_with_the_settings_limits_and_a_keep_alive_above_load_balancers() -> None:
    options = uvicorn_options(ServiceSettings())

    assert options["timeout_keep_alive"] == 75  # above the 60 s idle timeout of most LBs
    assert options["h11_max_incomplete_event_size"] == 16 * 1024
    config = uvicorn.Config(FastAPI(), **options)
    config.load()
    assert config.http_protocol_class is BoundedHeadHttpToolsProtocol


@pytest.mark.parametrize("keep_alive", [1, 650])
def test_the_keep_alive_follows_the_settings(keep_alive: int) -> None:
    settings = ServiceSettings(http_keep_alive_s=keep_alive)

    assert uvicorn_options(settings)["timeout_keep_alive"] == keep_alive
