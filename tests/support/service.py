"""Run a service's FastAPI app, lifespan included, and talk to it over HTTP in-process."""

from __future__ import annotations

import json
import runpy
import sys
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager

import httpx
import pytest
from fastapi import FastAPI

from shared.http.auth import issue_token
from shared.settings import DEV_JWT_SECRET


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
