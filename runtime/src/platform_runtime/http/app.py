"""One call that turns a FastAPI app into a platform service.

Every service gets the same cross-cutting behaviour, wired in the same order: problem
details for every error, bounded request bodies, bearer authentication, ``/health/live`` and
``/health/ready``, Prometheus metrics on ``/metrics`` and a correlation id on every request and
log line. Services then include their own routers on the returned app.

``/metrics`` and the API documentation (``/docs``, ``/redoc``, ``/openapi.json``) are served
by default and can be switched off (``expose_metrics``, ``expose_docs``): they then answer 404.
The documentation pages load their scripts from the service, not from a CDN
(:mod:`platform_runtime.http.docs`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Final

from fastapi import FastAPI
from starlette.types import Lifespan

from platform_runtime.http.auth import JwtVerifier, install_auth
from platform_runtime.http.docs import install_offline_docs
from platform_runtime.http.guards import RequestGuardMiddleware
from platform_runtime.http.health import Check, health_router
from platform_runtime.http.metrics import Metrics, install_metrics
from platform_runtime.http.problems import install_problem_handlers
from platform_runtime.observability import CorrelationIdMiddleware
from platform_runtime.tracing import TracingMiddleware

DEFAULT_MAX_BODY_BYTES: Final = 64 * 1024


def create_service_app(
    *,
    title: str,
    version: str,
    verifier: JwtVerifier,
    metrics: Metrics,
    checks: Mapping[str, Check],
    lifespan: Lifespan[FastAPI] | None = None,
    problem_mapping: Mapping[type[Exception], int] = {},
    description: str | None = None,
    health_timeout_s: float = 2.0,
    unavailable: Callable[[BaseException], bool] | None = None,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    expose_docs: bool = True,
    expose_metrics: bool = True,
    traced: bool = False,
) -> FastAPI:
    """A FastAPI app with the platform's HTTP kit installed.

    Middleware, outermost first: correlation id (so everything below, including error
    logs, sees the id and every response echoes it), metrics (so 500s are counted with
    their route), the request guard (bodies over ``max_body_bytes`` and NUL in the URL are
    refused before any route runs), then the handler that turns unhandled exceptions into
    500 problems (503 for those ``unavailable`` accepts: a dependency is unreachable, retry).
    ``traced``: a span for every request around all of it (:mod:`platform_runtime.tracing`).
    """
    app = FastAPI(
        title=title,
        version=version,
        description=description or "",
        lifespan=lifespan,
        openapi_url="/openapi.json" if expose_docs else None,
        docs_url=None,  # served with their assets below, not from a CDN
        redoc_url=None,
    )
    if expose_docs:
        install_offline_docs(app)
    install_problem_handlers(app, mapping=problem_mapping, unavailable=unavailable)
    install_auth(app, verifier)
    app.include_router(health_router(checks, timeout_s=health_timeout_s))
    app.add_middleware(RequestGuardMiddleware, max_body_bytes=max_body_bytes)
    install_metrics(app, metrics, expose=expose_metrics)
    app.add_middleware(CorrelationIdMiddleware)
    if traced:  # outermost: the span covers everything, and its context is the request's
        app.add_middleware(TracingMiddleware)
    return app
