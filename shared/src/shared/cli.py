"""The console entry point every service shares: ``<service> serve | migrate | openapi |
asyncapi``, plus whatever operator commands the service adds (:class:`Command`)."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Generic, TypeVar

from fastapi import FastAPI

from shared import asyncapi, migrations
from shared.observability import configure_logging
from shared.settings import ServiceSettings

S = TypeVar("S", bound=ServiceSettings)


class UsageError(Exception):
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
    migrate = subparsers.add_parser("migrate", help="upgrade the database to a revision")
    migrate.add_argument("revision", nargs="?", default="head")
    subparsers.add_parser("openapi", help="print the OpenAPI document")
    subparsers.add_parser("asyncapi", help="print the AsyncAPI document (events in and out)")
    own: dict[str, tuple[Command[S], argparse.ArgumentParser]] = {}
    for command in commands:
        subparser = subparsers.add_parser(command.name, help=command.help)
        command.configure(subparser)
        own[command.name] = (command, subparser)
    args = parser.parse_args(argv)

    configure_logging(settings.service_name, settings.log_level, json=settings.log_json)
    if args.command in own:
        command, subparser = own[args.command]
        try:
            return command.run(settings, args)
        except UsageError as exc:
            subparser.error(str(exc))  # exits with 2
    if args.command == "migrate":
        migrations.upgrade(alembic_ini, settings.database_url, args.revision)
        return 0
    app = app_factory(settings)
    if args.command == "openapi":
        json.dump(app.openapi(), sys.stdout, indent=2, sort_keys=True)
        sys.stdout.write("\n")
        return 0
    if args.command == "asyncapi":
        sys.stdout.write(asyncapi.render(asyncapi.document_of(app)))
        return 0
    import uvicorn

    uvicorn.run(app, host=args.host, port=args.port, log_config=None, access_log=False)
    return 0
