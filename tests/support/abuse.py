"""What the services' abuse tests share: a body that counts how much of it was read, the
check that an answer is the problem it should be, and requests to an app built with other
settings."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
from fastapi import FastAPI

from platform_runtime.http.context import runtime_of
from platform_runtime.http.problems import PROBLEM_MEDIA_TYPE

TEN_MB = 10 * 1024 * 1024
CHUNK = 16 * 1024


class CountedBody:
    """A request body of ``size`` bytes streamed in chunks; ``read`` counts the bytes the
    service took. A service that waited for all of it would take all of it."""

    def __init__(self, size: int = TEN_MB) -> None:
        self.size = size
        self.read = 0

    async def __aiter__(self) -> AsyncIterator[bytes]:
        while self.read < self.size:
            chunk = b"[" * min(CHUNK, self.size - self.read)
            self.read += len(chunk)
            yield chunk


def problem(response: httpx.Response, status: int) -> dict[str, Any]:
    """The body of ``response``, which must be a ``status`` RFC 9457 problem."""
    assert response.status_code == status, response.text[:500]
    assert response.headers["content-type"] == PROBLEM_MEDIA_TYPE
    body: dict[str, Any] = response.json()
    assert body["status"] == status
    assert body["title"]
    assert body["detail"]
    return body


JSON: dict[str, str] = {"Content-Type": "application/json"}


def loose_json(data: Any) -> str:
    """``data`` as JSON text that may hold NaN and Infinity, which JSON does not allow and
    Python's JSON parser takes all the same (send it with the ``JSON`` headers)."""
    return json.dumps(data, allow_nan=True)


def nested(levels: int) -> dict[str, Any]:
    """An object ``levels`` deep: ``{"a": {"a": ... {}}}``."""
    value: dict[str, Any] = {}
    for _ in range(levels - 1):
        value = {"a": value}
    return value


async def fetch_from(app: FastAPI, *paths: str) -> list[httpx.Response]:
    """``GET`` each of ``paths`` from ``app`` in process (its background work not started),
    then close its database pool."""
    transport = httpx.ASGITransport(app=app)
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://service") as http:
            return [await http.get(path) for path in paths]
    finally:
        await runtime_of(app).engine.dispose()
