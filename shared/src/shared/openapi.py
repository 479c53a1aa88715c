"""OpenAPI documents of the services' HTTP APIs, checked in beside the AsyncAPI documents.

A service's document is the one FastAPI generates from its routes: the same JSON the service
serves at ``/openapi.json`` and ``<service> openapi`` prints, with its keys sorted so that a
change to the API shows as a small diff.

``python -m shared.openapi DIR SERVICE...`` writes ``DIR/<service>.json`` for each service
package, built from ``<service>.main.create_app()`` (which connects to nothing);
``--check`` fails when a file in DIR differs from the code.
"""

from __future__ import annotations

import json
import sys
from typing import TYPE_CHECKING, Any

from shared.generated import services_main

if TYPE_CHECKING:
    from fastapi import FastAPI


def document_of(app: FastAPI) -> dict[str, Any]:
    """The OpenAPI document of a service app."""
    return app.openapi()


def render(document: dict[str, Any]) -> str:
    return json.dumps(document, indent=2, sort_keys=True) + "\n"


def main(argv: list[str] | None = None) -> int:
    return services_main(
        argv,
        module="shared.openapi",
        what="OpenAPI documents",
        description=__doc__,
        document=lambda app: render(document_of(app)),
    )


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
