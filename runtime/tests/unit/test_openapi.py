"""OpenAPI documents of the services, generated from their apps and checked in."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fastapi import FastAPI

from platform_runtime import openapi
from platform_runtime.cli import service_main
from platform_runtime.db import service_metadata
from platform_runtime.inbox import inbox_table
from platform_runtime.outbox import outbox_table
from platform_runtime.service import ServiceRuntime
from platform_runtime.settings import ServiceSettings


def test_rendering_is_stable_sorted_json_ending_in_a_newline() -> None:
    text = openapi.render({"paths": {"/b": {}, "/a": {}}, "info": {"title": "Ü"}})

    assert text.endswith("}\n")
    assert text.index('"info"') < text.index('"paths"')
    assert text.index('"/a"') < text.index('"/b"')
    assert json.loads(text) == {"paths": {"/b": {}, "/a": {}}, "info": {"title": "Ü"}}


metadata = service_metadata()
outbox_table(metadata)
inbox_table(metadata)


def app_factory(settings: ServiceSettings) -> FastAPI:
    runtime = ServiceRuntime(settings, metadata=metadata, source="/svc")
    return runtime.create_app(title="Svc", version="2.0")


@pytest.mark.usefixtures("root_logger")
def test_the_file_holds_what_the_cli_prints(capsys: pytest.CaptureFixture[str]) -> None:
    code = service_main(
        settings_factory=lambda: ServiceSettings(service_name="svc"),
        app_factory=app_factory,
        alembic_ini=Path("unused.ini"),
        argv=["openapi"],
    )

    assert code == 0
    printed = capsys.readouterr().out
    assert printed == openapi.render(openapi.document_of(app_factory(ServiceSettings())))
