"""Liveness and readiness endpoints for the orchestrator.

*Live* answers "is the process able to serve at all?" and never touches a dependency, so a
database outage does not get every pod restarted. *Ready* answers "should traffic be sent
here?" by running the dependency checks concurrently, each bounded by a timeout so a hung
dependency turns into a prompt 503 instead of a hung probe.

The probes answer anyone, so *ready* names each check and its state only (``ok``, ``failed``,
``timed_out``): why a check failed (an exception text can name the database's user, host
and port) goes to the log, with the exception.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Final, Literal

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

Check = Callable[[], Awaitable[None]]
"""A readiness check: returns when the dependency is usable, raises otherwise."""

CheckState = Literal["ok", "failed", "timed_out"]
OK: Final = "ok"

_logger = logging.getLogger(__name__)


class LiveStatus(BaseModel):
    status: Literal["ok"] = "ok"


class ReadyStatus(BaseModel):
    status: Literal["ok", "unavailable"]
    checks: dict[str, CheckState]
    """Per check: ``ok``, ``failed`` (it raised) or ``timed_out``; the reason is logged."""


async def _run_check(name: str, check: Check, timeout_s: float) -> CheckState:
    try:
        async with asyncio.timeout(timeout_s) as deadline:
            await check()
    except Exception as exc:
        if deadline.expired():
            _logger.warning("Readiness check %s timed out after %gs", name, timeout_s)
            return "timed_out"
        _logger.warning("Readiness check %s failed", name, exc_info=exc)
        return "failed"
    return OK


def health_router(checks: Mapping[str, Check], *, timeout_s: float = 2.0) -> APIRouter:
    """``GET /health/live`` and ``GET /health/ready``, tagged ``health``, without auth.

    Ready answers 200 when every check passes and 503 otherwise; the body names each check
    with its state, never why it failed (that is logged).
    """
    if timeout_s <= 0:
        raise ValueError("timeout_s must be positive")
    registered = dict(checks)
    router = APIRouter(prefix="/health", tags=["health"])

    @router.get("/live", response_model=LiveStatus, summary="Liveness probe")
    async def live() -> LiveStatus:
        """Whether the process can serve at all: 200 whenever it answers. It touches no
        dependency, so an outage of the database or the broker does not get it restarted."""
        return LiveStatus()

    @router.get(
        "/ready",
        response_model=ReadyStatus,
        summary="Readiness probe",
        responses={503: {"model": ReadyStatus, "description": "A dependency is unavailable"}},
    )
    async def ready() -> JSONResponse:
        """Whether to send this instance traffic: 200 when every dependency check passes
        (each bounded by a timeout), 503 otherwise. The body names each check and its state
        (`ok`, `failed` or `timed_out`), never why it failed."""
        outcomes = await asyncio.gather(
            *(_run_check(name, check, timeout_s) for name, check in registered.items())
        )
        results = dict(zip(registered, outcomes, strict=True))
        healthy = all(outcome == OK for outcome in outcomes)
        body = ReadyStatus(status="ok" if healthy else "unavailable", checks=results)
        return JSONResponse(body.model_dump(), status_code=200 if healthy else 503)

    return router


def database_check(engine: AsyncEngine) -> Check:
    """A check that opens a connection from ``engine``'s pool and runs ``SELECT 1``."""

    async def check() -> None:
        async with engine.connect() as connection:
            await connection.execute(text("SELECT 1"))

    return check


def kafka_check(ping: Callable[[float], Awaitable[bool]], *, timeout_s: float = 1.0) -> Check:
    """A check around a broker ping such as FastStream's ``broker.ping(timeout)``.

    ``timeout_s`` is handed to ``ping``; keep it below the readiness timeout so a slow broker
    is reported as a failed ping rather than a cut check.
    """

    async def check() -> None:
        if not await ping(timeout_s):
            raise ConnectionError("the Kafka broker did not answer the ping")

    return check
