"""Each service keeps the promises of its own OpenAPI document (fetched from the running
service): Schemathesis sends it valid and invalid requests as an admin, and no answer is a 5xx,
has an undocumented status code, a body off its schema or an undocumented content type
(errors are ``application/problem+json``). Both ways: every schema-valid request is accepted
(or refused for a rule the operation states) and every schema-invalid one is refused, so the
document states all the service checks, and the service accepts no more than it states."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
import schemathesis
from schemathesis import BaseSchema, Case

from platform_tooling.client import ADMIN, Json, token
from tests.support.platform import SERVICES, Platform

MAX_EXAMPLES = 20
"""Examples per operation in the fuzzing phase; the examples and coverage phases add their
own (a few dozen per operation, derived from the schema). The whole package takes 1-2 minutes
on 2 cores."""

SEED = 20_251_124
METHODS = ("delete", "put", "patch", "post", "get")

ACCEPTED = ["2xx", "3xx", "401", "403", "404", "409", "413", "429", "5xx"]
"""What a schema-valid request may be answered: Schemathesis's defaults, and 413 for a body
over the documented size limit (64 KiB; JSON Schema cannot bound a whole body's bytes)."""

RULES_BEYOND_THE_SCHEMA = {
    ("timeslots", "PUT", "/rooms/{room_id}/schedule"),
    ("timeslots", "POST", "/rooms/{room_id}/slots/generate"),
    ("timeslots", "POST", "/rooms/{room_id}/slots"),
    ("timeslots", "GET", "/rooms/{room_id}/slots"),
    ("timeslots", "GET", "/rooms/{room_id}/availability"),
    ("timeslots", "GET", "/availability"),
    ("timeslots", "PUT", "/rooms/{room_id}/rules"),
}
"""Operations with rules that relate members to each other, to the clock or to stored rows
(`to` not before `from`, a slot in the future): JSON Schema cannot state them, so each
operation's description does, and a schema-valid request that breaks one is a 422 whose
problem type names the rule (checked by `refusals_name_a_rule`)."""


def schemathesis_config(service: str) -> dict[str, Any]:
    return {
        "seed": SEED,
        # derandomized, so every run sends the same requests; no example database, no cache
        "generation": {"max-examples": MAX_EXAMPLES, "deterministic": True, "database": "none"},
        "cache": {"enabled": False},
        "checks": {
            # Both on: a schema-valid request is accepted, a schema-invalid one refused
            "positive_data_acceptance": {"enabled": True, "expected-statuses": ACCEPTED},
            "negative_data_rejection": {"enabled": True},
        },
        "operations": [
            {
                "include-path": path,
                "include-method": method,
                "checks": {"positive_data_acceptance": {"expected-statuses": [*ACCEPTED, "422"]}},
            }
            for owner, method, path in sorted(RULES_BEYOND_THE_SCHEMA)
            if owner == service
        ],
    }


def refusals_name_a_rule(ctx: Any, response: Any, case: Case[Any]) -> bool | None:
    """A schema-valid request refused with a 422 broke a rule the operation's description
    states, and the problem's type names it; never a field check the schema does not state
    (those answer ``about:blank`` with the failing members)."""
    meta = case.meta
    if meta is None or not meta.generation.mode.is_positive or response.status_code != 422:
        return None
    kind = response.json().get("type", "")
    if not kind.startswith("urn:problem:"):
        raise AssertionError(
            f"{case.operation.label}: a schema-valid request was refused by a check the "
            f"document does not state: {response.text[:500]}"
        )
    return None


@pytest.fixture(scope="package", params=SERVICES)
def service_schema(request: pytest.FixtureRequest, platform: Platform) -> BaseSchema:
    url = platform.url(request.param)
    config = schemathesis.Config.from_dict(
        schemathesis_config(request.param)
        | {
            "base-url": url,
            "headers": {"Authorization": f"Bearer {token('admin-fuzzer', ['admin'])}"},
        }
    )
    return schemathesis.openapi.from_url(f"{url}/openapi.json", config=config, timeout=30)


@pytest.fixture(autouse=True)
def node_id_for_schemathesis(request: pytest.FixtureRequest) -> None:
    """Schemathesis (4.32) names each operation's report by rewriting the test node's
    ``_nodeid``, an attribute pytest 9.2 no longer has; give it one (pytest ignores it)."""
    if not hasattr(request.node, "_nodeid"):
        setattr(request.node, "_nodeid", request.node.nodeid)  # noqa: B010


schema = schemathesis.pytest.from_fixture("service_schema")


@schema.parametrize()
def test_every_answer_keeps_to_the_service_document(case: Case[Any]) -> None:
    case.call_and_validate(timeout=30, additional_checks=[refusals_name_a_rule])


async def test_a_405_names_every_method_of_its_path(
    platform: Platform, documents: dict[str, Json]
) -> None:
    mismatches = []
    async with httpx.AsyncClient(timeout=30) as client:
        for service, document in documents.items():
            for path, item in document["paths"].items():
                documented = {m.upper() for m in item if m in METHODS}
                method = next(m for m in METHODS if m.upper() not in documented).upper()
                url = platform.url(service) + path.replace("{", "").replace("}", "")
                response = await client.request(method, url, headers=ADMIN)
                if response.status_code != 405:
                    pytest.fail(f"{service} {method} {path}: {response.status_code}, not 405")
                allowed = {m.strip() for m in response.headers.get("allow", "").split(",")}
                if allowed != documented:
                    mismatches.append(
                        f"{service} {method} {path}: Allow {allowed}, not {documented}"
                    )
    assert not mismatches, "\n".join(mismatches)
