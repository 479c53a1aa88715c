"""Prometheus metrics: requests are counted per route template, on a private registry."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from fastapi import APIRouter, FastAPI
from prometheus_client import CONTENT_TYPE_LATEST
from starlette.types import Message, Receive, Scope, Send

from platform_runtime.http.metrics import (
    Metrics,
    MetricsMiddleware,
    install_metrics,
    route_template,
)


def _app(metrics: Metrics) -> FastAPI:
    app = FastAPI()
    install_metrics(app, metrics)

    bookings = APIRouter(prefix="/bookings")

    @bookings.get("/{booking_id}")
    async def get_booking(booking_id: str) -> dict[str, str]:
        return {"id": booking_id}

    reminders = APIRouter(prefix="/{booking_id}/reminders")

    @reminders.get("/{reminder_id}")
    async def get_reminder(booking_id: str, reminder_id: int) -> dict[str, int]:
        return {"id": reminder_id}

    bookings.include_router(reminders)
    app.include_router(bookings, prefix="/v1")

    @app.get("/crash")
    async def crash() -> None:
        raise RuntimeError("boom")

    return app


def _sample(metrics: Metrics, name: str, **labels: str) -> float | None:
    return metrics.registry.get_sample_value(name, labels)


async def test_metrics_shows_a_request_counted_under_its_route_template(client: Any) -> None:
    metrics = Metrics()

    async with client(_app(metrics)) as http:
        assert (await http.get("/v1/bookings/b-42")).status_code == 200
        assert (await http.get("/v1/bookings/b-43")).status_code == 200
        response = await http.get("/metrics")

    assert response.status_code == 200
    assert response.headers["content-type"] == CONTENT_TYPE_LATEST
    assert (
        'http_requests_total{method="GET",route="/v1/bookings/{booking_id}",status="200"} 2.0'
        in response.text
    )
    assert "b-42" not in response.text, "raw paths must never become label values"
    assert (
        _sample(
            metrics,
            "http_request_duration_seconds_count",
            method="GET",
            route="/v1/bookings/{booking_id}",
        )
        == 2
    )


async def test_routes_of_nested_routers_are_labelled_with_their_full_template(
    client: Any,
) -> None:
    metrics = Metrics()

    async with client(_app(metrics)) as http:
        await http.get("/v1/bookings/b-1/reminders/7")

    route = "/v1/bookings/{booking_id}/reminders/{reminder_id}"
    assert _sample(metrics, "http_requests_total", method="GET", route=route, status="200") == 1


async def test_a_request_matching_no_route_is_labelled_unmatched(client: Any) -> None:
    metrics = Metrics()

    async with client(_app(metrics)) as http:
        await http.get("/wp-admin/login.php")

    labels = {"method": "GET", "route": "<unmatched>", "status": "404"}
    assert _sample(metrics, "http_requests_total", **labels) == 1


async def test_an_exotic_method_is_labelled_other(client: Any) -> None:
    metrics = Metrics()

    async with client(_app(metrics)) as http:
        await http.request("BREW", "/v1/bookings/b-1")

    labels = {"method": "OTHER", "route": "/v1/bookings/{booking_id}", "status": "405"}
    assert _sample(metrics, "http_requests_total", **labels) == 1


async def test_a_request_that_crashed_is_counted_as_a_500(client: Any) -> None:
    metrics = Metrics()

    async with client(_app(metrics), raise_app_exceptions=False) as http:
        await http.get("/crash")

    labels = {"method": "GET", "route": "/crash", "status": "500"}
    assert _sample(metrics, "http_requests_total", **labels) == 1


def test_the_metrics_endpoint_stays_out_of_the_openapi_document() -> None:
    assert "/metrics" not in _app(Metrics()).openapi()["paths"]


def test_two_apps_in_one_process_keep_separate_metrics() -> None:
    first, second = Metrics(), Metrics()
    first.counter("bookings_created_total", "Bookings created.").inc()

    assert _sample(first, "bookings_created_total") == 1
    assert _sample(second, "bookings_created_total") is None


def test_asking_twice_for_a_metric_returns_the_same_one() -> None:
    metrics = Metrics()

    lag = metrics.gauge("consumer_lag", "Messages behind.", ["topic"])

    assert metrics.gauge("consumer_lag", "Messages behind.", ("topic",)) is lag
    assert metrics.counter("dlq_total", "Dead letters.") is metrics.counter("dlq_total", "x")


def test_asking_for_an_existing_metric_with_another_kind_or_labels_is_refused() -> None:
    metrics = Metrics()
    metrics.gauge("outbox_backlog", "Unpublished events.")

    with pytest.raises(ValueError, match="already exists as a Gauge"):
        metrics.counter("outbox_backlog", "Unpublished events.")
    with pytest.raises(ValueError, match="already exists"):
        metrics.gauge("outbox_backlog", "Unpublished events.", ["service"])


def test_histograms_accept_their_own_buckets() -> None:
    metrics = Metrics()

    latency = metrics.histogram("relay_seconds", "Relay latency.", buckets=(0.1, 1.0))
    latency.observe(0.5)

    assert _sample(metrics, "relay_seconds_bucket", le="0.1") == 0
    assert _sample(metrics, "relay_seconds_bucket", le="1.0") == 1


def test_route_template_falls_back_to_the_route_in_scope() -> None:
    class Route:
        path_format = "/plain/{id}"

    assert route_template({"type": "http", "route": Route()}) == "/plain/{id}"
    assert route_template({"type": "http", "fastapi": {}}) == "<unmatched>"


async def test_the_middleware_ignores_non_http_traffic() -> None:
    metrics = Metrics()
    seen: list[str] = []

    async def inner(scope: Scope, receive: Receive, send: Send) -> None:
        seen.append(scope["type"])

    async def receive() -> Message:
        return {"type": "lifespan.startup"}

    async def send(message: Message) -> None:
        return None

    await MetricsMiddleware(inner, metrics=metrics)({"type": "lifespan"}, receive, send)

    assert seen == ["lifespan"]
    assert "lifespan" not in metrics.exposition().decode()


def test_the_worker_processes_of_one_server_are_scraped_as_one(tmp_path: Path) -> None:
    """``serve --workers N``: a scrape is answered by any one worker process and must count
    the requests of all of them."""
    script = (
        "import sys\n"
        "from platform_runtime.http.metrics import Metrics\n"
        "metrics = Metrics()\n"
        "for _ in range(int(sys.argv[1])):\n"
        "    metrics.observe_request('POST', '/bookings', 201, 0.01)\n"
        "sys.stdout.write(metrics.exposition().decode())\n"
    )
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    outputs = [
        subprocess.run(
            [sys.executable, "-c", script, str(n)], env=env, capture_output=True, check=True
        ).stdout.decode()
        for n in (2, 3)
    ]

    line = 'http_requests_total{method="POST",route="/bookings",status="201"}'
    assert f"{line} 2.0" in outputs[0]
    assert f"{line} 5.0" in outputs[1]  # the second process sees both
