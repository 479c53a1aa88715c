"""``<service> token``: development tokens the service itself accepts, refused elsewhere."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from fastapi import FastAPI
from pydantic import SecretStr

from platform_runtime.cli import service_main
from platform_runtime.http.auth import AuthenticationError
from platform_runtime.service import jwt_verifier
from platform_runtime.settings import ServiceSettings
from platform_runtime.tokens import NotForDevelopment, development_token

OWN_SECRET = "a-secret-of-this-development-machine-0123456789"


def no_app(settings: ServiceSettings) -> FastAPI:
    raise AssertionError("token needs no app")


def token_command(settings: ServiceSettings, *argv: str) -> int:
    return service_main(
        settings_factory=lambda: settings,
        app_factory=no_app,
        alembic_ini=Path("unused.ini"),
        argv=["token", *argv],
    )


def development(**changes: object) -> ServiceSettings:
    return ServiceSettings(service_name="svc", development=True, **changes)  # type: ignore[arg-type]


def test_the_printed_token_is_accepted_by_the_service_with_its_subject_roles_and_email(
    capsys: pytest.CaptureFixture[str],
) -> None:
    settings = development()

    code = token_command(settings, "alice", "--role", "admin", "--role", "auditor")
    token = capsys.readouterr().out.strip()
    principal = jwt_verifier(settings).verify(token)

    assert code == 0
    assert principal.subject == "alice"
    assert principal.roles == {"admin", "auditor"}
    assert principal.is_admin
    assert principal.email == "alice@example.com"


def test_a_token_carries_the_services_own_secret_issuer_and_audience(
    capsys: pytest.CaptureFixture[str],
) -> None:
    settings = development(
        jwt_secret=SecretStr(OWN_SECRET), jwt_issuer="https://id.example", jwt_audience="booking"
    )
    stranger = development()  # the public development secret, no issuer or audience

    token_command(settings, "bob", "--email", "", "--minutes", "5")
    token = capsys.readouterr().out.strip()
    principal = jwt_verifier(settings).verify(token)

    assert principal.subject == "bob"
    assert principal.email is None
    assert not principal.is_admin
    with pytest.raises(AuthenticationError):
        jwt_verifier(stranger).verify(token)


def test_outside_development_the_command_refuses_and_prints_no_token(
    capsys: pytest.CaptureFixture[str],
) -> None:
    settings = ServiceSettings(service_name="svc", jwt_secret=SecretStr(OWN_SECRET))

    code = token_command(settings, "mallory", "--role", "admin")
    out, err = capsys.readouterr()

    assert code == 2
    assert out == ""
    assert "DEVELOPMENT=true" in err


def test_a_service_that_verifies_with_a_public_key_cannot_have_tokens_signed_here() -> None:
    settings = development(jwt_algorithm="RS256", jwt_public_key="-----BEGIN PUBLIC KEY-----")

    with pytest.raises(NotForDevelopment, match="identity provider"):
        development_token(settings, subject="alice")


@pytest.mark.parametrize("minutes", ["0", "1441", "soon"])
def test_a_lifetime_outside_one_minute_to_a_day_is_a_usage_error(minutes: str) -> None:
    with pytest.raises(SystemExit) as exit_info:
        token_command(development(), "alice", "--minutes", minutes)

    assert exit_info.value.code == 2


def test_the_command_loads_no_web_framework_database_or_kafka_client() -> None:
    script = (
        "import sys\n"
        "from platform_runtime.cli import service_main\n"
        "from platform_runtime.settings import ServiceSettings\n"
        "code = service_main(settings_factory=lambda: ServiceSettings(service_name='svc', "
        "development=True), app_factory=None, alembic_ini=None, argv=['token', 'alice'])\n"
        "heavy = {'fastapi', 'starlette', 'sqlalchemy', 'asyncpg', 'aiokafka', 'uvicorn'}\n"
        "print(code, sorted(heavy & set(sys.modules)))\n"
    )

    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=60
    )

    token, verdict = result.stdout.strip().splitlines()
    assert token.count(".") == 2
    assert verdict == "0 []"
