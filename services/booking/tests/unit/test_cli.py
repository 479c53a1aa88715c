"""The ``booking`` console command an operator runs."""

from __future__ import annotations

import pytest

from booking.settings import BookingSettings
from tests.support.service import check_cli_prints_a_token, check_cli_prints_openapi


@pytest.mark.usefixtures("root_logger")
def test_openapi_prints_the_service_api_document(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    check_cli_prints_openapi("booking", "Booking service", monkeypatch, capsys)


def test_token_prints_a_token_the_service_accepts_on_a_development_machine_only(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    check_cli_prints_a_token("booking", BookingSettings, monkeypatch, capsys)
