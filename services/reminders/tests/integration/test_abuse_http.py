"""Hostile HTTP input against the running reminders service: a 4xx problem, never a 500, and
no detail of its infrastructure to anyone who asks."""

from __future__ import annotations

import uuid

from sqlalchemy import make_url

from platform_runtime.settings import DEV_JWT_SECRET, Role
from platform_runtime.tokens import issue_token
from reminders.main import create_app
from tests.support.abuse import JSON, CountedBody, fetch_from, problem

from .conftest import ADMIN, Service


async def test_a_10_mb_body_without_a_token_is_refused_unread_and_the_service_goes_on(
    service: Service,
) -> None:
    body = CountedBody()
    booking_id = uuid.uuid4()

    refused = await service.http.post(
        f"/bookings/{booking_id}/reminders",
        content=body,
        headers=JSON | {"Content-Length": str(body.size)},
    )
    after = await service.admin_view(booking_id)

    problem(refused, 413)
    assert body.read == 0
    assert problem(after, 404)["type"] == "urn:problem:booking_not_found"


async def test_a_nul_in_a_query_parameter_or_the_path_is_a_422(service: Service) -> None:
    booking_id = uuid.uuid4()

    query = await service.http.get(
        f"/bookings/{booking_id}/reminders", params={"channel": "sms\x00"}, headers=ADMIN
    )
    path = await service.http.get("/bookings/%00/reminders", headers=ADMIN)

    assert problem(query, 422)["errors"][0]["loc"] == ["query", "channel"]
    assert problem(path, 422)["errors"][0]["type"] == "nul_character"


async def test_a_token_whose_claims_cannot_be_a_caller_is_a_401(service: Service) -> None:
    def token(subject: str, email: str) -> dict[str, str]:
        signed = issue_token(
            secret_or_private_key=DEV_JWT_SECRET, subject=subject, roles=["admin"], email=email
        )
        return {"Authorization": f"Bearer {signed}"}

    url = f"/bookings/{uuid.uuid4()}/reminders"
    bad_email = await service.http.get(url, headers=token("admin-2", "admin at example"))
    long_sub = await service.http.get(url, headers=token("a" * 256, "admin@example.com"))

    assert "email claim" in problem(bad_email, 401)["detail"]
    assert "sub claim" in problem(long_sub, 401)["detail"]


async def test_readiness_names_its_checks_without_the_database_error(service: Service) -> None:
    url = make_url(service.settings.database_url)
    wrong_password = url.set(password="wrong").render_as_string(hide_password=False)
    app = create_app(
        service.settings.model_copy(update={"database_url": wrong_password, "role": Role.API})
    )
    (ready,) = await fetch_from(app, "/health/ready")

    # PostgreSQL refused the password, naming the user: that stays in the log
    assert ready.status_code == 503
    assert ready.json() == {"status": "unavailable", "checks": {"database": "failed"}}


async def test_the_documentation_and_metrics_can_be_switched_off(service: Service) -> None:
    app = create_app(
        service.settings.model_copy(
            update={"http_docs_enabled": False, "http_metrics_enabled": False}
        )
    )
    paths = ("/docs", "/openapi.json", "/metrics")
    hidden = [response.status_code for response in await fetch_from(app, *paths)]
    served = [(await service.http.get(p)).status_code for p in ("/openapi.json", "/metrics")]

    assert hidden == [404, 404, 404]
    assert served == [200, 200]  # on by default
