"""The settings every service shares: the development JWT secret is for development only."""

from __future__ import annotations

import pytest
from pydantic import SecretStr, ValidationError
from pydantic_settings import SettingsConfigDict

from platform_runtime.settings import DEV_JWT_SECRET, InsecureSettings, Role, ServiceSettings

REFUSAL = (
    "svc refuses to start: its API would accept tokens signed with the public development "
    "JWT secret, so set SVC_JWT_SECRET to a secret of your own (at least 32 random bytes), "
    "or SVC_DEVELOPMENT=true on a development machine"
)
OWN_SECRET = "an-own-secret-of-at-least-thirty-two-bytes"


class SvcSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="SVC_", extra="ignore")

    service_name: str = "svc"


@pytest.fixture(autouse=True)
def no_svc_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("SVC_JWT_SECRET", "SVC_DEVELOPMENT", "SVC_ROLE", "SVC_JWT_ALGORITHM"):
        monkeypatch.delenv(name, raising=False)


@pytest.mark.parametrize("role", ["all", "api"])
def test_an_api_with_the_development_secret_is_refused_naming_what_to_set(
    monkeypatch: pytest.MonkeyPatch, role: str
) -> None:
    monkeypatch.setenv("SVC_ROLE", role)
    settings = SvcSettings()

    assert settings.uses_dev_jwt_secret
    with pytest.raises(InsecureSettings) as refused:
        settings.check_serving()
    assert str(refused.value) == REFUSAL


def test_an_empty_secret_counts_as_unset_and_is_refused_too(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SVC_JWT_SECRET", "")

    with pytest.raises(InsecureSettings, match="SVC_JWT_SECRET"):
        SvcSettings().check_serving()


def test_the_development_setting_allows_the_development_secret(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SVC_DEVELOPMENT", "true")
    settings = SvcSettings()

    assert settings.development
    assert settings.uses_dev_jwt_secret
    settings.check_serving()


@pytest.mark.parametrize(
    "values",
    [
        {"jwt_secret": SecretStr(OWN_SECRET)},
        {"role": Role.WORKER},  # serves no authenticated route
        {"jwt_algorithm": "RS256"},  # verifies with a public key: the secret is not used
    ],
    ids=["own-secret", "worker", "public-key"],
)
def test_other_settings_start_without_the_development_setting(values: dict[str, object]) -> None:
    settings = SvcSettings(**values)  # type: ignore[arg-type]

    assert not settings.development
    settings.check_serving()


def test_the_development_secret_is_the_default_and_development_is_off() -> None:
    settings = SvcSettings()

    assert settings.jwt_secret is not None
    assert settings.jwt_secret.get_secret_value() == DEV_JWT_SECRET
    assert settings.development is False


def test_the_inbox_is_kept_30_days_unless_the_service_is_told_otherwise(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert SvcSettings().inbox_retention_days == 30

    monkeypatch.setenv("SVC_INBOX_RETENTION_DAYS", "45")
    assert SvcSettings().inbox_retention_days == 45

    monkeypatch.setenv("SVC_INBOX_RETENTION_DAYS", "0")
    with pytest.raises(ValidationError, match="inbox_retention_days"):
        SvcSettings()
