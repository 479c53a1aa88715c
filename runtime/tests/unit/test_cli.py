"""A service's own subcommands beside ``serve | migrate | openapi | asyncapi``."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from pydantic import SecretStr

from booking_contracts.money import utc_now
from platform_runtime.cli import Command, UsageError, service_main, worker_app
from platform_runtime.http.context import RequestContext, install_context, runtime_of
from platform_runtime.settings import Role, ServiceSettings

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


class Served:
    def __init__(self) -> None:
        self.calls: list[tuple[object, dict[str, object]]] = []

    def __call__(self, app: object, **options: object) -> None:
        self.calls.append((app, options))


def tiny_app(settings: ServiceSettings | None = None) -> FastAPI:
    """A factory as the services have: settings from the environment when none are given."""
    app = FastAPI()
    runtime: Any = argparse.Namespace(settings=settings or ServiceSettings())
    install_context(app, RequestContext(runtime=runtime, config=None, clock=utc_now))
    return app


def serve(argv: list[str]) -> int:
    return service_main(
        settings_factory=lambda: ServiceSettings(
            service_name="svc", log_json=False, development=True
        ),
        app_factory=tiny_app,
        alembic_ini=Path("unused.ini"),
        argv=argv,
    )


@pytest.mark.usefixtures("root_logger")
def test_serve_with_one_worker_runs_the_app_of_the_chosen_role(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    served = Served()
    monkeypatch.setattr("uvicorn.run", served)
    assert serve(["serve", "--role", "worker", "--port", "9001"]) == 0
    [(app, options)] = served.calls
    assert isinstance(app, FastAPI)
    assert runtime_of(app).settings.role is Role.WORKER
    assert options["port"] == 9001
    assert "workers" not in options
    assert options["timeout_keep_alive"] == 75  # above load balancers' idle timeouts
    assert (
        options["http"] == "platform_runtime.http.server:BoundedHeadHttpToolsProtocol"
    )  # heads bounded
    assert options["h11_max_incomplete_event_size"] == 16 * 1024


@pytest.mark.usefixtures("root_logger")
def test_serve_with_several_workers_builds_each_app_from_the_factory_and_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    served = Served()
    monkeypatch.setattr("uvicorn.run", served)
    # serve sets both for its worker processes; monkeypatch puts them back afterwards
    monkeypatch.setenv("ROLE", "all")
    monkeypatch.setenv("PLATFORM_APP_FACTORY", "unset:unset")
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", "")
    assert serve(["serve", "--role", "api", "--workers", "3"]) == 0
    [(target, options)] = served.calls
    assert target == "platform_runtime.cli:worker_app"
    assert options["factory"] is True
    assert options["workers"] == 3
    assert options["timeout_worker_healthcheck"] == 60
    assert options["timeout_keep_alive"] == 75
    assert options["http"] == "platform_runtime.http.server:BoundedHeadHttpToolsProtocol"

    app = worker_app()  # what each worker process runs
    assert runtime_of(app).settings.role is Role.API
    metrics_dir = os.environ["PROMETHEUS_MULTIPROC_DIR"]
    assert metrics_dir  # where the worker processes added up their metrics
    assert not Path(metrics_dir).exists(), "removed when the server stopped"


@pytest.mark.usefixtures("root_logger")
def test_serve_refuses_fewer_than_one_worker(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("uvicorn.run", Served())
    with pytest.raises(SystemExit, match="at least 1"):
        serve(["serve", "--workers", "0"])


def serve_with(settings: ServiceSettings, argv: list[str]) -> int:
    return service_main(
        settings_factory=lambda: settings,
        app_factory=tiny_app,
        alembic_ini=Path("unused.ini"),
        argv=argv,
    )


@pytest.mark.usefixtures("root_logger")
@pytest.mark.parametrize(
    "argv", [["serve"], ["serve", "--role", "api", "--workers", "3"]], ids=["all", "api"]
)
def test_serve_refuses_the_development_secret_outside_development_and_says_why(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, argv: list[str]
) -> None:
    served = Served()
    monkeypatch.setattr("uvicorn.run", served)
    settings = ServiceSettings(service_name="svc", log_json=False)

    assert serve_with(settings, argv) == 1
    assert served.calls == []  # no server, no worker process
    [record] = [r for r in caplog.records if r.name == "platform_runtime.cli"]
    assert record.levelname == "CRITICAL"
    assert record.getMessage() == (
        "svc refuses to start: its API would accept tokens signed with the public development "
        "JWT secret, so set JWT_SECRET to a secret of your own (at least 32 random bytes), or "
        "DEVELOPMENT=true on a development machine"
    )


@pytest.mark.usefixtures("root_logger")
@pytest.mark.parametrize(
    ("settings", "argv"),
    [
        (ServiceSettings(service_name="svc", log_json=False, development=True), ["serve"]),
        (
            ServiceSettings(
                service_name="svc",
                log_json=False,
                jwt_secret=SecretStr("an-own-secret-of-at-least-thirty-two-bytes"),
            ),
            ["serve"],
        ),
        (ServiceSettings(service_name="svc", log_json=False), ["serve", "--role", "worker"]),
    ],
    ids=["development", "own-secret", "worker"],
)
def test_serve_starts_with_development_on_an_own_secret_or_as_a_worker(
    monkeypatch: pytest.MonkeyPatch, settings: ServiceSettings, argv: list[str]
) -> None:
    served = Served()
    monkeypatch.setattr("uvicorn.run", served)

    assert serve_with(settings, argv) == 0
    assert len(served.calls) == 1
