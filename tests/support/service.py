"""Run a service's FastAPI app, lifespan included, and talk to it over HTTP in-process."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager

import httpx
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
