"""Every request is served on the event loop: no dependency of any route of any service is
handed to FastAPI's thread pool (a thread hand-off, and lock contention, on every request)."""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Iterable, Iterator

import pytest
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute

from tests.support.platform import SERVICES


def api_routes(routes: Iterable[object]) -> Iterator[APIRoute]:
    """Every route, also those of included routers (FastAPI keeps them in their router)."""
    for route in routes:
        if isinstance(route, APIRoute):
            yield route
        included = getattr(route, "original_router", None)
        if included is not None:
            yield from api_routes(included.routes)


def dependencies(dependant: Dependant) -> Iterator[Dependant]:
    for sub in dependant.dependencies:
        yield sub
        yield from dependencies(sub)


def served_on_the_loop(call: object) -> bool:
    if inspect.isclass(call):
        return inspect.iscoroutinefunction(getattr(call, "__call__", None))  # noqa: B004
    return inspect.iscoroutinefunction(call) or inspect.iscoroutinefunction(
        getattr(call, "__call__", None)  # noqa: B004
    )


@pytest.mark.parametrize("service", SERVICES)
def test_no_route_dependency_runs_in_the_thread_pool(service: str) -> None:
    app = importlib.import_module(f"{service}.main").create_app()
    routes = list(api_routes(app.routes))
    assert any(route.path.startswith("/health") for route in routes)
    assert any(not route.path.startswith(("/health", "/metrics")) for route in routes)
    in_threads = {
        f"{route.path} {getattr(dep.call, '__name__', dep.call)}"
        for route in routes
        for dep in dependencies(route.dependant)
        if dep.call is not None and not served_on_the_loop(dep.call)
    }
    assert in_threads == set()
    for route in routes:  # the endpoints themselves too
        assert inspect.iscoroutinefunction(route.endpoint), route.path
