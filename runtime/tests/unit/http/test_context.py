"""Routes get the runtime, the service's rules and its clock from one dependency."""

from __future__ import annotations

from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Annotated, Any

import httpx
from fastapi import Depends, FastAPI

from platform_runtime.http.context import RequestContext, install_context, request_context

NOW = datetime(2030, 1, 2, 3, 4, tzinfo=UTC)


class _Sessions:
    def begin(self) -> str:
        return "a transaction"


async def test_a_route_sees_the_config_clock_and_transactions_of_its_app() -> None:
    app = FastAPI()
    runtime: Any = SimpleNamespace(sessions=_Sessions())
    install_context(
        app, RequestContext(runtime=runtime, config={"hold_minutes": 15}, clock=lambda: NOW)
    )

    @app.get("/probe")
    async def probe(
        ctx: Annotated[RequestContext[dict[str, int]], Depends(request_context)],
    ) -> dict[str, Any]:
        return {
            "config": ctx.config,
            "now": ctx.clock().isoformat(),
            "transaction": ctx.transaction(),
        }

    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        body = (await client.get("/probe")).json()

    assert body == {
        "config": {"hold_minutes": 15},
        "now": "2030-01-02T03:04:00+00:00",
        "transaction": "a transaction",
    }
