"""The service app factory: everything a service needs is wired, in an order that works."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest
from fastapi import APIRouter, FastAPI

from platform_runtime.http.app import create_service_app
from platform_runtime.http.auth import CurrentUser, JwtVerifier
from platform_runtime.http.metrics import Metrics
from platform_runtime.http.problems import PROBLEM_RESPONSES, UNEXPECTED_ERROR_DETAIL
from platform_runtime.observability import configure_logging

EXPOSABLE = ("/docs", "/redoc", "/openapi.json", "/metrics", "/docs/assets/swagger-ui-bundle.js")


class SlotTakenError(Exception):
    pass


async def _database_down() -> None:
    raise ConnectionRefusedError("database down")


def _service(verifier: JwtVerifier, metrics: Metrics, **options: Any) -> FastAPI:
    app = create_service_app(
        title="Bookings",
        version="1.2.3",
        description="Books time slots.",
        verifier=verifier,
        metrics=metrics,
        checks={"database": _database_down},
        problem_mapping={SlotTakenError: 409},
        **options,
    )
    router = APIRouter(prefix="/bookings", tags=["bookings"], responses=PROBLEM_RESPONSES)

    @router.post("/{slot_id}", status_code=201)
    async def book(slot_id: int, user: CurrentUser) -> dict[str, Any]:
        if slot_id == 7:
            raise SlotTakenError(f"slot {slot_id} is already booked")
        if slot_id == 13:
            raise RuntimeError("unlucky internals")
        return {"slot_id": slot_id, "booked_by": user.subject}

    app.include_router(router)
    return app


async def test_an_authenticated_request_reaches_a_service_route(
    verifier: JwtVerifier, make_token: Callable[..., str], client: Any
) -> None:
    app = _service(verifier, Metrics())

    async with client(app) as http:
        response = await http.post(
            "/bookings/3", headers={"Authorization": f"Bearer {make_token(subject='erin')}"}
        )

    assert response.status_code == 201
    assert response.json() == {"slot_id": 3, "booked_by": "erin"}
    assert response.headers["x-correlation-id"]


async def test_a_service_refuses_anonymous_callers(verifier: JwtVerifier, client: Any) -> None:
    async with client(_service(verifier, Metrics())) as http:
        response = await http.post("/bookings/3")

    assert response.status_code == 401
    assert response.headers["content-type"] == "application/problem+json"


async def test_a_mapped_domain_error_becomes_its_problem(
    verifier: JwtVerifier, make_token: Callable[..., str], client: Any
) -> None:
    async with client(_service(verifier, Metrics())) as http:
        response = await http.post(
            "/bookings/7", headers={"Authorization": f"Bearer {make_token()}"}
        )

    assert response.status_code == 409
    assert response.json()["type"] == "urn:problem:slot_taken_error"
    assert response.json()["detail"] == "slot 7 is already booked"


async def test_a_crash_is_a_500_problem_that_quotes_the_correlation_id_and_is_counted(
    verifier: JwtVerifier,
    make_token: Callable[..., str],
    client: Any,
    root_logger: logging.Logger,
    capsys: pytest.CaptureFixture[str],
) -> None:
    configure_logging("booking")
    metrics = Metrics()

    async with client(_service(verifier, metrics)) as http:
        response = await http.post(
            "/bookings/13",
            headers={"Authorization": f"Bearer {make_token()}", "X-Correlation-ID": "req-13"},
        )

    assert response.status_code == 500
    assert response.headers["x-correlation-id"] == "req-13"
    assert response.json()["detail"] == UNEXPECTED_ERROR_DETAIL
    assert response.json()["correlation_id"] == "req-13"
    assert "unlucky" not in response.text
    labels = {"method": "POST", "route": "/bookings/{slot_id}", "status": "500"}
    assert metrics.registry.get_sample_value("http_requests_total", labels) == 1
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    [error] = [line for line in lines if line["level"] == "ERROR"]
    assert error["correlation_id"] == "req-13"
    assert "RuntimeError: unlucky internals" in error["exception"]


async def test_health_and_metrics_are_served(verifier: JwtVerifier, client: Any) -> None:
    async with client(_service(verifier, Metrics(), health_timeout_s=0.5)) as http:
        live = await http.get("/health/live")
        ready = await http.get("/health/ready")
        exposition = await http.get("/metrics")

    assert live.status_code == 200
    assert ready.status_code == 503
    assert ready.json()["checks"] == {"database": "failed"}
    assert 'route="/health/ready",status="503"' in exposition.text
    assert exposition.headers["x-correlation-id"]


async def test_docs_and_metrics_are_served_by_default(verifier: JwtVerifier, client: Any) -> None:
    async with client(_service(verifier, Metrics())) as http:
        answers = [(await http.get(path)).status_code for path in EXPOSABLE]

    assert answers == [200, 200, 200, 200, 200]


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
async def test_the_documentation_pages_load_every_script_and_style_from_the_service(
    verifier: JwtVerifier, client: Any, page: str
) -> None:
    async with client(_service(verifier, Metrics())) as http:
        html = (await http.get(page)).text
        local = re.findall(r'(?:src|href)="(/[^"]*)"', html)
        assets = [await http.get(url) for url in local]

    assert re.findall(r"https?://", html) == []  # nothing from a CDN or a font service
    assert any(url.endswith(".js") for url in local)
    assert [a.status_code for a in assets] == [200] * len(local)
    assert all(len(a.content) > 1000 for a in assets)
    assert "/openapi.json" in html


async def test_docs_and_metrics_can_be_switched_off(verifier: JwtVerifier, client: Any) -> None:
    metrics = Metrics()
    app = _service(verifier, metrics, expose_docs=False, expose_metrics=False)

    async with client(app) as http:
        answers = [(await http.get(path)).status_code for path in EXPOSABLE]
        live = await http.get("/health/live")

    assert answers == [404, 404, 404, 404, 404]
    assert live.status_code == 200
    labels = {"method": "GET", "route": "/health/live", "status": "200"}
    assert metrics.registry.get_sample_value("http_requests_total", labels) == 1  # still counted
    assert "/bookings/{slot_id}" in app.openapi()["paths"]  # the documents are still generated


async def test_the_lifespan_given_is_the_one_the_app_runs(verifier: JwtVerifier) -> None:
    events: list[str] = []

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        events.append("started")
        yield
        events.append("stopped")

    app = _service(verifier, Metrics(), lifespan=lifespan)
    async with app.router.lifespan_context(app):
        assert events == ["started"]

    assert events == ["started", "stopped"]


def test_the_openapi_document_describes_the_service(verifier: JwtVerifier) -> None:
    document = _service(verifier, Metrics()).openapi()

    assert document["info"] == {
        "title": "Bookings",
        "version": "1.2.3",
        "description": "Books time slots.",
    }
    assert "bearerAuth" in document["components"]["securitySchemes"]
    assert {"/bookings/{slot_id}", "/health/live", "/health/ready"} <= set(document["paths"])
    assert "/metrics" not in document["paths"]
    responses = document["paths"]["/bookings/{slot_id}"]["post"]["responses"]
    assert "application/problem+json" in responses["409"]["content"]


def test_the_app_exposes_its_metrics_for_routes_to_use(verifier: JwtVerifier) -> None:
    metrics = Metrics()

    assert _service(verifier, metrics).state.metrics is metrics
