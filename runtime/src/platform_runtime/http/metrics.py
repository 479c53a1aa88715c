"""Prometheus metrics: the HTTP RED metrics of a service, plus whatever else it registers.

Each :class:`Metrics` owns its registry instead of using prometheus_client's global one, so
several applications (or test cases) in one process never collide on metric names, and
``/metrics`` exposes exactly what that application registered.

Requests are labelled with the *route template* (``/bookings/{booking_id}``), never the raw
path: one time series per endpoint rather than one per booking id.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Mapping, Sequence
from typing import Any, Final, TypeVar

from fastapi import FastAPI
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest, multiprocess
from prometheus_client.metrics import Counter, Gauge, Histogram, MetricWrapperBase
from starlette.types import ASGIApp, Message, Receive, Scope, Send

MULTIPROCESS_DIR_ENV: Final = "PROMETHEUS_MULTIPROC_DIR"
"""Where the worker processes of one server keep their metrics (prometheus_client's own
variable, read when it is imported: set before the worker processes start)."""
UNMATCHED_ROUTE: Final = "<unmatched>"
OTHER_METHOD: Final = "OTHER"
_KNOWN_METHODS: Final = frozenset(
    {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE", "CONNECT"}
)

_M = TypeVar("_M", bound=MetricWrapperBase)


class Metrics:
    """A private Prometheus registry with the HTTP metrics already on it.

    ``http_requests_total{method,route,status}`` counts finished requests and
    ``http_request_duration_seconds{method,route}`` measures them. :meth:`counter`,
    :meth:`gauge` and :meth:`histogram` create further metrics on the same registry, or
    return the existing one when asked again with the same kind and labels, so independent
    components (Kafka consumers, the outbox relay) can ask for a metric without
    coordinating who creates it.
    """

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        self._lock = threading.Lock()
        self._metrics: dict[str, tuple[MetricWrapperBase, tuple[str, ...]]] = {}
        self.http_requests_total = self.counter(
            "http_requests_total",
            "HTTP requests served, by method, route template and status code.",
            ("method", "route", "status"),
        )
        self.http_request_duration_seconds = self.histogram(
            "http_request_duration_seconds",
            "Time to serve an HTTP request, by method and route template.",
            ("method", "route"),
        )

    def counter(self, name: str, documentation: str, labels: Sequence[str] = ()) -> Counter:
        return self._get_or_create(Counter, name, documentation, labels)

    def gauge(self, name: str, documentation: str, labels: Sequence[str] = ()) -> Gauge:
        return self._get_or_create(Gauge, name, documentation, labels)

    def histogram(
        self,
        name: str,
        documentation: str,
        labels: Sequence[str] = (),
        *,
        buckets: Sequence[float] = Histogram.DEFAULT_BUCKETS,
    ) -> Histogram:
        return self._get_or_create(Histogram, name, documentation, labels, buckets=buckets)

    def _get_or_create(
        self,
        kind: type[_M],
        name: str,
        documentation: str,
        labels: Sequence[str],
        **options: Any,
    ) -> _M:
        label_names = tuple(labels)
        with self._lock:
            existing = self._metrics.get(name)
            if existing is None:
                metric = kind(name, documentation, label_names, registry=self.registry, **options)
                self._metrics[name] = (metric, label_names)
                return metric
        metric_found, existing_labels = existing
        if not isinstance(metric_found, kind) or existing_labels != label_names:
            raise ValueError(
                f"metric {name!r} already exists as a {type(metric_found).__name__} "
                f"with labels {existing_labels}"
            )
        return metric_found

    def observe_request(self, method: str, route: str, status: int, seconds: float) -> None:
        """Record one finished HTTP request."""
        self.http_requests_total.labels(method=method, route=route, status=str(status)).inc()
        self.http_request_duration_seconds.labels(method=method, route=route).observe(seconds)

    def exposition(self) -> bytes:
        """The registry in the Prometheus text format (served with ``CONTENT_TYPE_LATEST``).

        In a process of ``serve --workers N`` (``PROMETHEUS_MULTIPROC_DIR`` set), the
        metrics of every worker process of the server, added up: a scrape answered by any
        one of them sees them all.
        """
        if os.environ.get(MULTIPROCESS_DIR_ENV):
            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
            return generate_latest(registry)
        return generate_latest(self.registry)


def route_template(scope: Scope) -> str:
    """The template of the route that handled the request, or ``"<unmatched>"``.

    FastAPI >= 0.137 no longer copies routes of included routers; ``scope["route"]`` then
    lacks the include-time prefixes and the full template lives in the route context FastAPI
    stores under ``scope["fastapi"]``. That is read first, ``scope["route"]`` otherwise.
    """
    fastapi_scope = scope.get("fastapi")
    if isinstance(fastapi_scope, Mapping):
        template = getattr(fastapi_scope.get("effective_route_context"), "path_format", None)
        if isinstance(template, str):
            return template
    template = getattr(scope.get("route"), "path_format", None)
    return template if isinstance(template, str) else UNMATCHED_ROUTE


class MetricsMiddleware:
    """Pure ASGI middleware timing and counting every HTTP request.

    A request whose handler raised without starting a response is counted as a 500.
    """

    def __init__(self, app: ASGIApp, *, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        status = 500
        started = time.perf_counter()

        async def recording_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, recording_send)
        finally:
            method = scope["method"] if scope["method"] in _KNOWN_METHODS else OTHER_METHOD
            self.metrics.observe_request(
                method, route_template(scope), status, time.perf_counter() - started
            )


def install_metrics(app: FastAPI, metrics: Metrics, *, expose: bool = True) -> None:
    """Count and time every request of ``app``, and serve ``GET /metrics`` (not in OpenAPI)
    unless ``expose`` is false (the metrics are counted all the same)."""
    app.state.metrics = metrics
    app.add_middleware(MetricsMiddleware, metrics=metrics)
    if not expose:
        return

    async def exposition() -> Response:
        return Response(metrics.exposition(), media_type=CONTENT_TYPE_LATEST)

    app.add_api_route("/metrics", exposition, methods=["GET"], include_in_schema=False)
