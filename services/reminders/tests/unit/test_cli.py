"""The ``reminders`` console command an operator runs."""

from __future__ import annotations

import runpy
import sys

import pytest

from reminders.settings import RemindersSettings
from tests.support.service import check_cli_prints_a_token, check_cli_prints_openapi


@pytest.mark.usefixtures("root_logger")
def test_openapi_prints_the_service_api_document(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    check_cli_prints_openapi("reminders", "Reminders service", monkeypatch, capsys)


@pytest.mark.usefixtures("root_logger")
def test_the_worker_command_is_listed(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(sys, "argv", ["reminders", "--help"])
    with pytest.raises(SystemExit) as exit_info:
        runpy.run_module("reminders", run_name="__main__")

    assert exit_info.value.code == 0
    assert "worker" in capsys.readouterr().out


def test_token_prints_a_token_the_service_accepts_on_a_development_machine_only(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    check_cli_prints_a_token("reminders", RemindersSettings, monkeypatch, capsys)
