"""The generators of the checked-in AsyncAPI and OpenAPI documents: a service found by its
package name; its documents written, checked, stale."""

from __future__ import annotations

import json
import sys
import textwrap
import uuid
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

from platform_runtime import openapi as openapi_document
from platform_tooling import asyncapi, openapi
from platform_tooling.documents import service_app

FAKE_SERVICE = """
from fastapi import APIRouter

from booking_contracts import topics
from platform_runtime.db import service_metadata
from platform_runtime.http.auth import CurrentUser
from platform_runtime.inbox import inbox_table
from platform_runtime.outbox import outbox_table
from platform_runtime.service import ServiceRuntime
from platform_runtime.settings import ServiceSettings

metadata = service_metadata()
outbox_table(metadata)
inbox_table(metadata)

router = APIRouter()


@router.get("/things/{thing_id}", tags=["things"])
async def get_thing(thing_id: int, user: CurrentUser) -> dict[str, int]:
    return {"id": thing_id}


def create_app():
    runtime = ServiceRuntime(
        ServiceSettings(service_name="fake"),
        metadata=metadata,
        source="/fake",
        produces=[topics.BOOKING_EVENTS],
    )
    app = runtime.create_app(title="Fake service", version="0.0.1", description="Things.")
    app.include_router(router)
    return app
"""


@pytest.fixture
def fake_service(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A service package ``<name>`` on sys.path whose ``main.create_app()`` serves things and
    publishes booking events."""
    name = f"fake_service_{uuid.uuid4().hex[:8]}"
    package = tmp_path / "packages" / name
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "main.py").write_text(textwrap.dedent(FAKE_SERVICE))
    monkeypatch.syspath_prepend(str(tmp_path / "packages"))
    yield name
    for module in [m for m in sys.modules if m.startswith(name)]:
        del sys.modules[module]


@pytest.mark.parametrize(
    ("generator", "what"),
    [(asyncapi, "AsyncAPI"), (openapi, "OpenAPI")],
    ids=["asyncapi", "openapi"],
)
def test_export_then_check_passes_and_a_stale_document_fails(
    generator: ModuleType,
    what: str,
    fake_service: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Both generators of checked-in documents (one entry point, ``services_main``)."""
    directory = tmp_path / "docs"
    document = directory / f"{fake_service}.json"
    module = generator.__name__

    assert generator.main([str(directory), fake_service]) == 0
    assert json.loads(document.read_text())["info"]["title"] == "Fake service"
    assert generator.main([str(directory), fake_service, "--check"]) == 0

    document.write_text(document.read_text().replace('"Fake service"', '"Stale service"'))
    (directory / "other-service.json").write_text("{}")
    assert generator.main([str(directory), fake_service, "--check"]) == 1
    err = capsys.readouterr().err
    assert f"{what} documents out of date in {directory}: {fake_service}.json\n" in err
    assert f"python -m {module} {directory} {fake_service}" in err

    assert generator.main([str(directory), fake_service]) == 0
    assert (directory / "other-service.json").read_text() == "{}", "not ours to remove"
    assert generator.main([str(directory), fake_service, "--check"]) == 0
    assert generator.main([str(tmp_path / "empty"), fake_service, "--check"]) == 1


def test_the_document_is_the_apps_own_with_its_routes_and_health(fake_service: str) -> None:
    app = service_app(fake_service)
    document = openapi_document.document_of(app)

    assert document == app.openapi()
    assert document["info"] == {
        "title": "Fake service",
        "version": "0.0.1",
        "description": "Things.",
    }
    assert {"/things/{thing_id}", "/health/live", "/health/ready"} <= set(document["paths"])
    assert "bearerAuth" in document["components"]["securitySchemes"]
