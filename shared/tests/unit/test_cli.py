"""A service's own subcommands beside ``serve | migrate | openapi | asyncapi``."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest
from fastapi import FastAPI

from shared.cli import Command, UsageError, service_main
from shared.settings import ServiceSettings

calls: list[tuple[str, int]] = []


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--times", type=int, required=True)


def run(settings: ServiceSettings, args: argparse.Namespace) -> int:
    if args.times < 1:
        raise UsageError("--times must be at least 1")
    calls.append((settings.service_name, args.times))
    return 3


REPEAT = Command[ServiceSettings](name="repeat", help="do it again", configure=configure, run=run)


def no_app(settings: ServiceSettings) -> FastAPI:
    raise AssertionError("an own command needs no app")


def main(argv: list[str]) -> int:
    return service_main(
        settings_factory=lambda: ServiceSettings(service_name="svc", log_json=False),
        app_factory=no_app,
        alembic_ini=Path("unused.ini"),
        argv=argv,
        commands=[REPEAT],
    )


@pytest.mark.usefixtures("root_logger")
def test_an_own_command_runs_with_the_settings_and_its_arguments() -> None:
    calls.clear()
    assert main(["repeat", "--times", "2"]) == 3
    assert calls == [("svc", 2)]


@pytest.mark.usefixtures("root_logger")
def test_an_own_command_is_listed_and_its_usage_errors_exit_2(
    capsys: pytest.CaptureFixture[str],
) -> None:
    calls.clear()
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    assert "repeat" in capsys.readouterr().out

    with pytest.raises(SystemExit) as exit_info:
        main(["repeat", "--times", "0"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "usage: svc repeat" in err
    assert "svc repeat: error: --times must be at least 1" in err

    with pytest.raises(SystemExit) as exit_info:
        main(["repeat"])
    assert exit_info.value.code == 2
    assert "--times" in capsys.readouterr().err
    assert calls == []
