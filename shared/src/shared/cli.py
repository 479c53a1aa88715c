"""The console entry point every service shares: ``<service> serve | migrate | openapi``."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeVar

from fastapi import FastAPI

from shared import migrations
from shared.observability import configure_logging
from shared.settings import ServiceSettings

S = TypeVar("S", bound=ServiceSettings)


def service_main(
    *,
    settings_factory: Callable[[], S],
    app_factory: Callable[[S], FastAPI],
    alembic_ini: Path,
    argv: Sequence[str] | None = None,
) -> int:
    settings = settings_factory()
    parser = argparse.ArgumentParser(prog=settings.service_name)
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="run the HTTP API, consumers and background loops")
    serve.add_argument("--host", default=settings.http_host)
    serve.add_argument("--port", type=int, default=settings.http_port)
    migrate = commands.add_parser("migrate", help="upgrade the database to a revision")
    migrate.add_argument("revision", nargs="?", default="head")
    commands.add_parser("openapi", help="print the OpenAPI document")
    args = parser.parse_args(argv)

    configure_logging(settings.service_name, settings.log_level, json=settings.log_json)
    if args.command == "migrate":
        migrations.upgrade(alembic_ini, settings.database_url, args.revision)
        return 0
    app = app_factory(settings)
    if args.command == "openapi":
        json.dump(app.openapi(), sys.stdout, indent=2, sort_keys=True)
        sys.stdout.write("\n")
        return 0
    import uvicorn

    uvicorn.run(app, host=args.host, port=args.port, log_config=None, access_log=False)
    return 0
