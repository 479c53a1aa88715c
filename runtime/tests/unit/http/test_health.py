"""Health probes: live always answers, ready tells whether dependencies are usable."""

from __future__ import annotations

import asyncio
import time
from contextlib import asynccontextmanager
from typing import Any

import pytest
from fastapi import FastAPI
from sqlalchemy.ext.asyncio import create_async_engine

from platform_runtime.http.health import Check, database_check, health_router, kafka_check


def _app(checks: dict[str, Check], **options: Any) -> FastAPI:
    app = FastAPI()
    app.include_router(health_router(checks, **options))
    return app


async def _passes() -> None:
    return None


async def _refuses() -> None:
    raise ConnectionRefusedError("connection refused by 10.0.0.5:5432")


async def _hangs() -> None:
    await asyncio.sleep(3600)


async def test_live_answers_ok_even_when_dependencies_are_down(client: Any) -> None:
    async with client(_app({"database": _refuses})) as http:
        response = await http.get("/health/live")

    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


async def test_ready_answers_200_when_every_check_passes(client: Any) -> None:
    async with client(_app({"database": _passes, "kafka": _passes})) as http:
        response = await http.get("/health/ready")

    assert response.status_code == 200
    assert response.json() == {"status": "ok", "checks": {"database": "ok", "kafka": "ok"}}


async def test_ready_answers_503_naming_the_failing_check_and_logging_why(
    client: Any, caplog: pytest.LogCaptureFixture
) -> None:
    async with client(_app({"database": _refuses, "kafka": _passes})) as http:
        response = await http.get("/health/ready")

    assert response.status_code == 503
    assert response.json() == {
        "status": "unavailable",
        "checks": {"database": "failed", "kafka": "ok"},
    }
    assert "10.0.0.5" not in response.text  # the probe answers anyone
    [record] = [r for r in caplog.records if r.name == "platform_runtime.http.health"]
    assert record.levelname == "WARNING"
    assert "database" in record.getMessage()
    assert record.exc_info is not None
    assert "connection refused by 10.0.0.5:5432" in str(record.exc_info[1])


async def test_a_hanging_check_is_cut_by_the_timeout(client: Any) -> None:
    started = time.perf_counter()
    async with client(_app({"kafka": _hangs, "database": _passes}, timeout_s=0.05)) as http:
        response = await http.get("/health/ready")

    assert time.perf_counter() - started < 2
    assert response.status_code == 503
    assert response.json()["checks"] == {"kafka": "timed_out", "database": "ok"}


async def test_checks_run_concurrently(client: Any) -> None:
    # Each check can only finish once the other has started: run one after the other,
    # they would both time out.
    first_started, second_started = asyncio.Event(), asyncio.Event()

    async def first() -> None:
        first_started.set()
        await second_started.wait()

    async def second() -> None:
        second_started.set()
        await first_started.wait()

    async with client(_app({"first": first, "second": second}, timeout_s=1.0)) as http:
        response = await http.get("/health/ready")

    assert response.status_code == 200


async def test_ready_without_checks_is_ready(client: Any) -> None:
    async with client(_app({})) as http:
        response = await http.get("/health/ready")

    assert response.json() == {"status": "ok", "checks": {}}


def test_a_non_positive_timeout_is_refused() -> None:
    with pytest.raises(ValueError, match="timeout_s"):
        health_router({}, timeout_s=0)


def test_health_endpoints_are_documented_under_the_health_tag() -> None:
    paths = _app({}).openapi()["paths"]

    assert paths["/health/live"]["get"]["tags"] == ["health"]
    assert paths["/health/ready"]["get"]["tags"] == ["health"]
    assert "503" in paths["/health/ready"]["get"]["responses"]


class _FakeConnection:
    def __init__(self, statements: list[str]) -> None:
        self.statements = statements

    async def execute(self, statement: Any) -> None:
        self.statements.append(str(statement))


class _FakeEngine:
    def __init__(self) -> None:
        self.statements: list[str] = []

    @asynccontextmanager
    async def connect(self) -> Any:
        yield _FakeConnection(self.statements)


async def test_the_database_check_runs_select_1_on_a_pooled_connection() -> None:
    engine = _FakeEngine()

    await database_check(engine)()  # type: ignore[arg-type]

    assert engine.statements == ["SELECT 1"]


async def test_the_database_check_fails_when_the_database_is_unreachable() -> None:
    engine = create_async_engine("postgresql+asyncpg://nobody:nothing@127.0.0.1:1/none")
    try:
        with pytest.raises(ConnectionRefusedError):
            await database_check(engine)()
    finally:
        await engine.dispose()


async def test_the_kafka_check_passes_when_the_broker_answers_the_ping() -> None:
    timeouts: list[float] = []

    async def ping(timeout_s: float) -> bool:
        timeouts.append(timeout_s)
        return True

    await kafka_check(ping, timeout_s=0.5)()

    assert timeouts == [0.5]


async def test_the_kafka_check_fails_when_the_ping_goes_unanswered(client: Any) -> None:
    async def ping(timeout_s: float) -> bool:
        return False

    async with client(_app({"kafka": kafka_check(ping)})) as http:
        response = await http.get("/health/ready")

    assert response.status_code == 503
    assert response.json()["checks"] == {"kafka": "failed"}
