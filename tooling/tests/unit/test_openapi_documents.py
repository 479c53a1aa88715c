"""A service's OpenAPI document as the generator finds it: by the service's package name."""

from __future__ import annotations

import sys
import textwrap
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from platform_tooling.documents import service_app
from shared import openapi

FAKE_SERVICE = """
from fastapi import APIRouter

from shared.db import service_metadata
from shared.http.auth import CurrentUser
from shared.inbox import inbox_table
from shared.outbox import outbox_table
from shared.service import ServiceRuntime
from shared.settings import ServiceSettings

metadata = service_metadata()
outbox_table(metadata)
inbox_table(metadata)

router = APIRouter()


@router.get("/things/{thing_id}", tags=["things"])
async def get_thing(thing_id: int, user: CurrentUser) -> dict[str, int]:
    return {"id": thing_id}


def create_app():
    runtime = ServiceRuntime(ServiceSettings(service_name="fake"), metadata=metadata, source="/f")
    app = runtime.create_app(title="Fake service", version="0.0.1", description="Things.")
    app.include_router(router)
    return app
"""


@pytest.fixture
def fake_service(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A service package ``<name>`` on sys.path whose ``main.create_app()`` serves things."""
    name = f"fake_service_{uuid.uuid4().hex[:8]}"
    package = tmp_path / "packages" / name
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "main.py").write_text(textwrap.dedent(FAKE_SERVICE))
    monkeypatch.syspath_prepend(str(tmp_path / "packages"))
    yield name
    for module in [m for m in sys.modules if m.startswith(name)]:
        del sys.modules[module]


def test_the_document_is_the_apps_own_with_its_routes_and_health(fake_service: str) -> None:
    app = service_app(fake_service)
    document = openapi.document_of(app)

    assert document == app.openapi()
    assert document["info"] == {
        "title": "Fake service",
        "version": "0.0.1",
        "description": "Things.",
    }
    assert {"/things/{thing_id}", "/health/live", "/health/ready"} <= set(document["paths"])
    assert "bearerAuth" in document["components"]["securitySchemes"]
