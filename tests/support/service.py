"""Run a service's FastAPI app, lifespan included, and talk to it over HTTP in-process."""

from __future__ import annotations

import asyncio
import json
import runpy
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Generic, TypeVar

import asyncpg
import httpx
import pytest
from fastapi import FastAPI

from platform_runtime.db import asyncpg_dsn
from platform_runtime.http.context import runtime_of
from platform_runtime.migrations import upgrade
from platform_runtime.service import jwt_verifier
from platform_runtime.settings import DEV_JWT_SECRET, Role, ServiceSettings
from platform_runtime.tokens import issue_token
from tests.support.fixtures import CreateDatabase
from tests.support.threads import in_thread

S = TypeVar("S", bound=ServiceSettings)


@dataclass(frozen=True)
class ServiceKit(Generic[S]):
    """What the checks every service passes need of it: its name, its migrations, how its
    settings and its app are made."""

    name: str
    alembic_ini: Path
    settings: Callable[..., S]
    create_app: Callable[[S], FastAPI]

    async def migrated(self, create_database: CreateDatabase) -> str:
        """The URL of a new database of this service's, migrated to head."""
        url = await create_database(self.name)
        await in_thread(upgrade, self.alembic_ini, url)
        return url


@asynccontextmanager
async def running(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """Start the app's lifespan (DB, broker, consumers, loops) and yield a client for it."""
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://service") as client:
            yield client


def bearer(
    subject: str = "user-1", roles: Iterable[str] = (), *, secret: str = DEV_JWT_SECRET
) -> dict[str, str]:
    """An ``Authorization`` header with a real HS256 token for ``subject``."""
    token = issue_token(
        secret_or_private_key=secret,
        subject=subject,
        roles=list(roles),
        email=f"{subject}@example.com",
    )
    return {"Authorization": f"Bearer {token}"}


async def check_service_starts_ready(app: FastAPI) -> None:
    """A migrated service answers live and ready (database and Kafka), serves metrics, and
    answers an unknown path with a problem-details 404."""
    async with running(app) as client:
        live = await client.get("/health/live")
        ready = await client.get("/health/ready")
        metrics = await client.get("/metrics")
        missing = await client.get("/no-such-thing", headers=bearer())

    assert live.status_code == 200
    assert ready.status_code == 200, ready.text
    assert ready.json()["checks"] == {"database": "ok", "kafka": "ok"}
    assert "outbox_backlog" in metrics.text
    assert missing.status_code == 404
    assert missing.headers["content-type"].startswith("application/problem+json")


def check_cli_prints_openapi(
    module: str, title: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """``python -m <module> openapi`` prints the service's OpenAPI document and exits 0."""
    monkeypatch.setattr(sys, "argv", [module, "openapi"])
    with pytest.raises(SystemExit) as exit_info:
        runpy.run_module(module, run_name="__main__")

    assert exit_info.value.code == 0
    document = json.loads(capsys.readouterr().out)
    assert document["info"]["title"] == title
    assert {"/health/live", "/health/ready"} <= set(document["paths"])


def check_cli_prints_a_token(
    module: str,
    settings_factory: Callable[[], ServiceSettings],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """``python -m <module> token alice --role admin`` prints a token the service accepts on a
    development machine, and refuses (exit 2, no token) where development is off."""
    prefix = str(settings_factory().model_config.get("env_prefix", ""))
    monkeypatch.setenv(f"{prefix}DEVELOPMENT", "true")
    monkeypatch.setattr(sys, "argv", [module, "token", "alice", "--role", "admin"])
    with pytest.raises(SystemExit) as exit_info:
        runpy.run_module(module, run_name="__main__")
    principal = jwt_verifier(settings_factory()).verify(capsys.readouterr().out.strip())
    monkeypatch.setenv(f"{prefix}DEVELOPMENT", "false")
    with pytest.raises(SystemExit) as refused:
        runpy.run_module(module, run_name="__main__")
    out, err = capsys.readouterr()

    assert exit_info.value.code == 0
    assert (principal.subject, principal.is_admin) == ("alice", True)
    assert (refused.value.code, out) == (2, "")
    assert f"{prefix}DEVELOPMENT=true" in err


async def check_worker_purges_old_inbox_rows(app: FastAPI, database_url: str) -> None:
    """A migrated service's worker deletes the inbox rows of its consumer groups that are
    older than the retention, keeps the newer ones and counts what it deleted."""
    runtime = runtime_of(app)
    consumers = [consumer.name for consumer in runtime.consumers]
    retention = timedelta(days=runtime.settings.inbox_retention_days)
    now = datetime.now(UTC)
    old = {uuid.uuid4(): consumer for consumer in consumers}
    recent = {uuid.uuid4(): consumer for consumer in consumers}
    connection = await asyncpg.connect(asyncpg_dsn(database_url))
    try:
        await connection.executemany(
            "INSERT INTO inbox (consumer, event_id, event_type, processed_at) "
            "VALUES ($1, $2, 'Test.v1', $3)",
            [(c, i, now - retention - timedelta(hours=1)) for i, c in old.items()]
            + [(c, i, now - retention + timedelta(hours=1)) for i, c in recent.items()],
        )

        async def left() -> set[uuid.UUID]:
            rows = await connection.fetch(
                "SELECT event_id FROM inbox WHERE event_id = ANY($1::uuid[])", [*old, *recent]
            )
            return {row["event_id"] for row in rows}

        purged = f'inbox_rows_purged_total{{table="inbox"}} {float(len(old))}'
        async with running(app) as client:
            deadline = time.monotonic() + 20
            while True:
                metrics = (await client.get("/metrics")).text
                if purged in metrics or time.monotonic() > deadline:
                    break
                await asyncio.sleep(0.05)
        kept = await left()
    finally:
        await connection.close()

    assert consumers
    assert purged in metrics
    assert kept == set(recent)


async def check_a_migrated_service_is_ready(
    kit: ServiceKit[S], create_database: CreateDatabase, kafka_bootstrap: str
) -> None:
    """``check_service_starts_ready`` for a service on a database migrated to head."""
    url = await kit.migrated(create_database)
    settings = kit.settings(
        database_url=url, kafka_bootstrap_servers=kafka_bootstrap, development=True
    )
    await check_service_starts_ready(kit.create_app(settings))


async def check_the_worker_purges_its_inbox(
    kit: ServiceKit[S], create_database: CreateDatabase, kafka_bootstrap: str
) -> None:
    """``check_worker_purges_old_inbox_rows`` for the service's worker role."""
    url = await kit.migrated(create_database)
    settings = kit.settings(
        database_url=url,
        kafka_bootstrap_servers=kafka_bootstrap,
        role=Role.WORKER,
        inbox_purge_interval_s=0.1,
    )
    await check_worker_purges_old_inbox_rows(kit.create_app(settings), url)
