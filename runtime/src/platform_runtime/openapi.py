"""OpenAPI documents of the services' HTTP APIs, checked in beside the AsyncAPI documents.

A service's document is the one FastAPI generates from its routes: the same JSON the service
serves at ``/openapi.json`` and ``<service> openapi`` prints, with its keys sorted so that a
change to the API shows as a small diff.

``python -m platform_tooling.openapi DIR SERVICE...`` writes them to ``docs/openapi``.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from fastapi import FastAPI


def document_of(app: FastAPI) -> dict[str, Any]:
    """The OpenAPI document of a service app."""
    return app.openapi()


def render(document: dict[str, Any]) -> str:
    return json.dumps(document, indent=2, sort_keys=True) + "\n"
