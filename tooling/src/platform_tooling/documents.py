"""Documents generated from the code and checked in (event schemas, AsyncAPI, OpenAPI): how
one is written or checked, and how a service's app is found by its package name."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from fastapi import FastAPI


def service_app(service: str) -> FastAPI:
    """The app of the service package ``service``, built by ``<service>.main.create_app()``
    with its default settings (it connects to nothing until its lifespan starts)."""
    module = importlib.import_module(f"{service}.main")
    app: FastAPI = module.create_app()
    return app


def write_or_check(
    directory: Path,
    wanted: Mapping[str, str],
    *,
    check: bool,
    what: str,
    command: str,
    complete: bool = True,
) -> int:
    """Write the ``wanted`` files (name -> text) into ``directory``, or with ``check`` only
    say which differ; returns the exit code (1: stale).

    ``complete``: ``wanted`` is everything the directory should hold, so other ``*.json``
    files there are stale too (and removed when writing). Pass False when ``wanted`` covers
    only some of the files (e.g. the documents of the services named on the command line).
    """
    present = {p.name: p.read_text() for p in directory.glob("*.json")}
    if not complete:
        present = {name: text for name, text in present.items() if name in wanted}
    if check:
        stale = sorted(n for n in wanted.keys() | present.keys() if wanted.get(n) != present.get(n))
        if stale:
            sys.stderr.write(f"{what} out of date in {directory}: {', '.join(stale)}\n")
            sys.stderr.write(f"run: make schemas ({command})\n")
            return 1
        return 0
    directory.mkdir(parents=True, exist_ok=True)
    for name in present.keys() - wanted.keys():
        (directory / name).unlink()
    for name, text in wanted.items():
        (directory / name).write_text(text)
    return 0


def services_main(
    argv: list[str] | None,
    *,
    module: str,
    what: str,
    description: str | None,
    document: Callable[[FastAPI], str],
) -> int:
    """``python -m <module> DIR SERVICE... [--check]``: ``DIR/<service>.json`` is
    ``document(app)`` for each service package named; other files in DIR are left alone."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("directory", type=Path)
    parser.add_argument("services", nargs="+", metavar="SERVICE", help="service package name")
    parser.add_argument("--check", action="store_true", help="fail if DIR is not current")
    args = parser.parse_args(argv)
    directory: Path = args.directory
    wanted = {f"{s}.json": document(service_app(s)) for s in args.services}
    return write_or_check(
        directory,
        wanted,
        check=args.check,
        what=what,
        complete=False,
        command=f"python -m {module} {directory} {' '.join(args.services)}",
    )


def services_generator(
    *, module: str, what: str, description: str | None, document: Callable[[FastAPI], str]
) -> Callable[[list[str] | None], int]:
    """The ``main`` of ``python -m <module> DIR SERVICE... [--check]`` (see ``services_main``)."""

    def main(argv: list[str] | None = None) -> int:
        return services_main(
            argv, module=module, what=what, description=description, document=document
        )

    return main
