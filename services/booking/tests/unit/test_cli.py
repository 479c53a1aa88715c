"""The ``booking`` console command an operator runs."""

from __future__ import annotations

import json
import logging
import runpy
import sys
from collections.abc import Iterator

import pytest


@pytest.fixture(autouse=True)
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def test_openapi_prints_the_service_api_document(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(sys, "argv", ["booking", "openapi"])
    with pytest.raises(SystemExit) as exit_info:
        runpy.run_module("booking", run_name="__main__")

    assert exit_info.value.code == 0
    document = json.loads(capsys.readouterr().out)
    assert document["info"]["title"] == "Booking service"
    assert {"/health/live", "/health/ready"} <= set(document["paths"])
