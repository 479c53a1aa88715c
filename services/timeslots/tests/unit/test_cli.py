"""The ``timeslots`` console command an operator runs."""

from __future__ import annotations

import pytest

from tests.support.service import check_cli_prints_openapi


@pytest.mark.usefixtures("root_logger")
def test_openapi_prints_the_service_api_document(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    check_cli_prints_openapi("timeslots", "Timeslots service", monkeypatch, capsys)
