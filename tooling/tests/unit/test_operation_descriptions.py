"""Every operation of the services' HTTP APIs has a description a client can read."""

from __future__ import annotations

import pytest

from platform_runtime import openapi
from platform_tooling.documents import service_app

SERVICES = ["timeslots", "booking", "reminders"]
HTTP_METHODS = {"get", "put", "post", "delete", "options", "head", "patch", "trace"}


@pytest.mark.parametrize("service", SERVICES)
def test_every_operation_of_the_services_apis_has_a_description(service: str) -> None:
    document = openapi.document_of(service_app(service))
    operations = {
        f"{method.upper()} {path}": operation
        for path, item in document["paths"].items()
        for method, operation in item.items()
        if method in HTTP_METHODS
    }

    assert operations
    undocumented = [
        name
        for name, operation in sorted(operations.items())
        if not str(operation.get("description", "")).strip()
    ]
    assert undocumented == []
