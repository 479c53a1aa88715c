"""The console entry point every service shares: ``<service> serve | migrate | openapi |
asyncapi | dead-letters | token``, plus whatever operator commands the service adds
(:class:`Command`).

What a command needs is imported when it runs, so that a light command (``token``) does not
load the web framework, the database driver and the Kafka client first: a service's own
``cli`` module passes its app factory lazily too (see :func:`lazy_app_factory`).

``serve --role api --workers N`` runs the HTTP API alone in N uvicorn worker processes
(each builds its app from the service's ``create_app`` factory, reading the same
environment); ``serve --role worker`` runs the background work (relay, consumers, sweepers)
with health and metrics only; ``serve`` alone does both in one process.
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import os
import shutil
import sys
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from platform_runtime.errors import KernelError
from platform_runtime.settings import InsecureSettings, Role, ServiceSettings

if TYPE_CHECKING:
    from fastapi import FastAPI

S = TypeVar("S", bound=ServiceSettings)
log = logging.getLogger(__name__)


class UsageError(KernelError):
    """Raised by a command for arguments that parse but make no sense together (exit 2)."""


@dataclass(frozen=True)
class Command(Generic[S]):
    """A service's own subcommand: ``configure`` adds its arguments, ``run`` does the work.

    ``run`` gets the service settings and the parsed arguments and returns the exit code;
    it may raise :class:`UsageError`, which prints the subcommand's usage and exits with 2
    like any argument error.
    """

    name: str
    help: str
    configure: Callable[[argparse.ArgumentParser], None]
    run: Callable[[S, argparse.Namespace], int]


def _kernel_command(name: str, help: str, module: str) -> Command[ServiceSettings]:
    """A command whose ``configure`` and ``run`` are those of ``module``, imported only when
    the command is the one chosen (so a light command loads nothing heavy)."""

    def configure(parser: argparse.ArgumentParser) -> None:
        importlib.import_module(module).configure(parser)

    def run(settings: ServiceSettings, args: argparse.Namespace) -> int:
        code: int = importlib.import_module(module).run(settings, args)
        return code

    return Command[ServiceSettings](name=name, help=help, configure=configure, run=run)


DEAD_LETTERS = _kernel_command(
    "dead-letters",
    "list the dead letters of a topic, or replay them to it (see platform_runtime.deadletters)",
    "platform_runtime.deadletters",
)
TOKEN = _kernel_command(
    "token",
    "print a token this service accepts, on a development machine (see platform_runtime.tokens)",
    "platform_runtime.tokens",
)
KERNEL_COMMANDS: tuple[Command[ServiceSettings], ...] = (DEAD_LETTERS, TOKEN)
"""Operator commands every service has, after its own."""
QUIET_COMMANDS = frozenset({TOKEN.name})
"""Commands whose output is for a program (a token to capture): no logging set up."""
PROCESS_COMMANDS = frozenset({"serve", "migrate"})
"""Commands whose logs are their output (on stdout); every other command prints its result on
stdout and logs on stderr, so ``<service> openapi > openapi.json`` holds the document alone."""


def lazy_app_factory(module: str, name: str = "create_app") -> Callable[[S], FastAPI]:
    """``module.name``, imported on first use (``serve``, ``openapi``, ``asyncapi``), not when
    the command line is read."""

    def create_app(settings: S) -> FastAPI:
        factory: Callable[[S], FastAPI] = getattr(importlib.import_module(module), name)
        return factory(settings)

    create_app.target = f"{module}:{name}"  # type: ignore[attr-defined]
    return create_app


def service_main(
    *,
    settings_factory: Callable[[], S],
    app_factory: Callable[[S], FastAPI],
    alembic_ini: Path,
    argv: Sequence[str] | None = None,
    commands: Sequence[Command[S]] = (),
) -> int:
    settings = settings_factory()
    parser = argparse.ArgumentParser(prog=settings.service_name)
    subparsers = parser.add_subparsers(dest="command", required=True)
    serve = subparsers.add_parser("serve", help="run the HTTP API, consumers and background loops")
    serve.add_argument("--host", default=settings.http_host)
    serve.add_argument("--port", type=int, default=settings.http_port)
    serve.add_argument(
        "--role",
        choices=[role.value for role in Role],
        default=settings.role.value,
        help="api: HTTP only; worker: relay, consumers and background loops with health and "
        "metrics only; all: both (default: %(default)s)",
    )
    serve.add_argument(
        "--workers",
        type=int,
        default=settings.http_workers,
        help="uvicorn worker processes (default: %(default)s)",
    )
    migrate = subparsers.add_parser("migrate", help="upgrade the database to a revision")
    migrate.add_argument("revision", nargs="?", default="head")
    subparsers.add_parser("openapi", help="print the OpenAPI document")
    subparsers.add_parser("asyncapi", help="print the AsyncAPI document (events in and out)")
    own: dict[str, tuple[Command[Any], argparse.ArgumentParser]] = {}
    everything: list[Command[Any]] = [*commands, *KERNEL_COMMANDS]
    words = list(sys.argv[1:] if argv is None else argv)
    chosen = next((word for word in words if not word.startswith("-")), None)
    for command in everything:
        subparser = subparsers.add_parser(command.name, help=command.help)
        if command.name == chosen:  # only the command that runs imports what it needs
            command.configure(subparser)
        own[command.name] = (command, subparser)
    args = parser.parse_args(words)

    if args.command not in QUIET_COMMANDS:
        from platform_runtime.observability import configure_logging

        configure_logging(
            settings.service_name,
            settings.log_level,
            json=settings.log_json,
            to_stderr=args.command not in PROCESS_COMMANDS,
        )
    if args.command in own:
        command, subparser = own[args.command]
        try:
            code: int = command.run(settings, args)
            return code
        except UsageError as exc:
            subparser.error(str(exc))  # exits with 2
    if args.command == "migrate":
        from platform_runtime import migrations

        migrations.upgrade(alembic_ini, settings.database_url, args.revision)
        return 0
    if args.command == "serve":
        return _serve(settings, app_factory, args)
    app = app_factory(settings)
    if args.command == "openapi":
        json.dump(app.openapi(), sys.stdout, indent=2, sort_keys=True)
        sys.stdout.write("\n")
        return 0
    from platform_runtime import asyncapi

    sys.stdout.write(asyncapi.render(asyncapi.document_of(app)))
    return 0


def _serve(settings: S, app_factory: Callable[[S], FastAPI], args: argparse.Namespace) -> int:
    import uvicorn

    from platform_runtime.http.metrics import MULTIPROCESS_DIR_ENV
    from platform_runtime.http.server import uvicorn_options

    if args.workers < 1:
        raise SystemExit(f"{settings.service_name} serve: --workers must be at least 1")
    role = Role(args.role)
    try:
        settings.model_copy(update={"role": role}).check_serving()
    except InsecureSettings as exc:  # before any worker process exists to be restarted
        log.critical("%s", exc)
        return 1

    def run(app: FastAPI | str, **options: Any) -> int:
        # keep-alive above the load balancer's idle timeout, bounded request heads (431)
        uvicorn.run(app, host=args.host, port=args.port, **uvicorn_options(settings), **options)
        return 0

    if args.workers == 1:
        return run(app_factory(settings.model_copy(update={"role": role})))
    # Worker processes build their app through worker_app, from the same environment, and
    # keep their metrics where any of them can add them all up for a scrape.
    prefix = str(settings.model_config.get("env_prefix", ""))
    os.environ[f"{prefix}ROLE"] = role.value
    os.environ[_FACTORY_ENV] = getattr(
        app_factory, "target", f"{app_factory.__module__}:{app_factory.__qualname__}"
    )
    metrics_dir = tempfile.mkdtemp(prefix=f"{settings.service_name}-metrics-")
    os.environ[MULTIPROCESS_DIR_ENV] = metrics_dir
    try:
        # A worker process imports the whole service before it answers its supervisor: give it
        # time on a busy machine (uvicorn's 5 s default kills and restarts it there for ever).
        return run(
            f"{__name__}:worker_app",
            factory=True,
            workers=args.workers,
            timeout_worker_healthcheck=60,
        )
    finally:
        shutil.rmtree(metrics_dir, ignore_errors=True)


_FACTORY_ENV = "PLATFORM_APP_FACTORY"


def worker_app() -> FastAPI:
    """The app of one uvicorn worker process of ``serve --workers N`` (with its logging)."""
    from platform_runtime.http.context import runtime_of
    from platform_runtime.observability import configure_logging

    module, _, name = os.environ[_FACTORY_ENV].partition(":")
    app: FastAPI = getattr(importlib.import_module(module), name)()
    settings: ServiceSettings = runtime_of(app).settings
    configure_logging(settings.service_name, settings.log_level, json=settings.log_json)
    return app
