"""OpenAPI documents of the services' HTTP APIs, checked in beside the AsyncAPI documents.

A service's document is the one FastAPI generates from its routes: the same JSON the service
serves at ``/openapi.json`` and ``<service> openapi`` prints, with its keys sorted so that a
change to the API shows as a small diff.

``python -m shared.openapi DIR SERVICE...`` writes ``DIR/<service>.json`` for each service
package, built from ``<service>.main.create_app()`` (which connects to nothing);
``--check`` fails when a file in DIR differs from the code.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from shared.generated import service_app, write_or_check

if TYPE_CHECKING:
    from fastapi import FastAPI


def document_of(app: FastAPI) -> dict[str, Any]:
    """The OpenAPI document of a service app."""
    return app.openapi()


def render(document: dict[str, Any]) -> str:
    return json.dumps(document, indent=2, sort_keys=True) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("directory", type=Path)
    parser.add_argument("services", nargs="+", metavar="SERVICE", help="service package name")
    parser.add_argument("--check", action="store_true", help="fail if DIR is not current")
    args = parser.parse_args(argv)
    directory: Path = args.directory
    wanted = {f"{s}.json": render(document_of(service_app(s))) for s in args.services}
    return write_or_check(
        directory,
        wanted,
        check=args.check,
        what="OpenAPI documents",
        complete=False,  # the documents of the services named; others are left alone
        command=f"python -m shared.openapi {directory} {' '.join(args.services)}",
    )


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
