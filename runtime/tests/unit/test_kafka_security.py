"""Kafka TLS and SCRAM settings: what each client is given, what is refused, what is never shown."""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest
from faststream.security import BaseSecurity, SASLScram256, SASLScram512
from pydantic import SecretStr, ValidationError
from pydantic_settings import SettingsConfigDict

from platform_runtime.kafka_security import (
    PLAINTEXT,
    KafkaSecurity,
    KafkaSecurityError,
    SaslMechanism,
    SecurityProtocol,
)
from platform_runtime.settings import InsecureSettings, ServiceSettings
from tests.support.tls import BrokerTls, broker_tls

PASSWORD = "s3cret-scram-password"


class SvcSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="SVC_", extra="ignore")

    service_name: str = "svc"


@pytest.fixture(autouse=True)
def no_svc_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (
        "SVC_DEVELOPMENT",
        "SVC_KAFKA_SECURITY_PROTOCOL",
        "SVC_KAFKA_SASL_MECHANISM",
        "SVC_KAFKA_SASL_USERNAME",
        "SVC_KAFKA_SASL_PASSWORD",
        "SVC_KAFKA_SSL_CA_FILE",
        "SVC_KAFKA_SSL_CERT_FILE",
        "SVC_KAFKA_SSL_KEY_FILE",
    ):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> BrokerTls:
    return broker_tls(tmp_path_factory.mktemp("tls"))


def sasl_ssl(tls: BrokerTls, **changes: object) -> KafkaSecurity:
    values: dict[str, object] = {
        "protocol": SecurityProtocol.SASL_SSL,
        "username": "booking",
        "password": SecretStr(PASSWORD),
        "ssl_ca_file": str(tls.ca_file),
    }
    return KafkaSecurity(**(values | changes))  # type: ignore[arg-type]


def test_by_default_clients_get_no_tls_and_no_login() -> None:
    security = SvcSettings().kafka_security()

    assert security == PLAINTEXT
    assert security.client_options() == {}
    assert security.faststream() is None
    assert security.describe() == "PLAINTEXT"


def test_the_settings_give_every_client_tls_and_a_scram_login(
    monkeypatch: pytest.MonkeyPatch, tls: BrokerTls
) -> None:
    monkeypatch.setenv("SVC_KAFKA_SECURITY_PROTOCOL", "SASL_SSL")
    monkeypatch.setenv("SVC_KAFKA_SASL_USERNAME", "booking")
    monkeypatch.setenv("SVC_KAFKA_SASL_PASSWORD", PASSWORD)
    monkeypatch.setenv("SVC_KAFKA_SSL_CA_FILE", str(tls.ca_file))
    monkeypatch.setenv("SVC_KAFKA_SSL_CERT_FILE", "")  # unset, as docker compose passes it on

    options = SvcSettings().kafka_security().client_options()

    context = options.pop("ssl_context")
    assert options == {
        "security_protocol": "SASL_SSL",
        "sasl_mechanism": "SCRAM-SHA-512",
        "sasl_plain_username": "booking",
        "sasl_plain_password": PASSWORD,
    }
    assert isinstance(context, ssl.SSLContext)
    assert context.verify_mode is ssl.CERT_REQUIRED
    assert context.check_hostname


def test_the_password_is_never_shown(monkeypatch: pytest.MonkeyPatch, tls: BrokerTls) -> None:
    monkeypatch.setenv("SVC_KAFKA_SECURITY_PROTOCOL", "SASL_SSL")
    monkeypatch.setenv("SVC_KAFKA_SASL_USERNAME", "booking")
    monkeypatch.setenv("SVC_KAFKA_SASL_PASSWORD", PASSWORD)
    settings = SvcSettings()
    security = settings.kafka_security()

    shown = [repr(settings), str(settings), repr(security), security.describe()]

    assert not [text for text in shown if PASSWORD in text]
    assert security.describe() == "SASL_SSL (SCRAM-SHA-512 as booking)"


def test_tls_with_a_client_certificate(tls: BrokerTls) -> None:
    security = KafkaSecurity(
        protocol=SecurityProtocol.SSL,
        ssl_ca_file=str(tls.ca_file),
        ssl_cert_file=str(tls.keystore_file),  # holds the key and the certificate
        ssl_key_file=str(tls.keystore_file),
    )

    options = security.client_options()

    assert options["security_protocol"] == "SSL"
    assert isinstance(options["ssl_context"], ssl.SSLContext)
    assert "sasl_mechanism" not in options
    assert security.describe() == "SSL"


def test_the_faststream_broker_gets_the_same_security(tls: BrokerTls) -> None:
    scram512 = sasl_ssl(tls).faststream()
    scram256 = sasl_ssl(tls, sasl_mechanism=SaslMechanism.SCRAM_SHA_256).faststream()
    tls_only = KafkaSecurity(protocol=SecurityProtocol.SSL, ssl_ca_file=str(tls.ca_file))
    no_tls = KafkaSecurity(
        protocol=SecurityProtocol.SASL_PLAINTEXT, username="u", password=SecretStr(PASSWORD)
    ).faststream()

    assert isinstance(scram512, SASLScram512)
    assert (scram512.username, scram512.password, scram512.use_ssl) == ("booking", PASSWORD, True)
    assert isinstance(scram256, SASLScram256)
    assert type(tls_only.faststream()) is BaseSecurity
    assert isinstance(no_tls, SASLScram512)
    assert not no_tls.use_ssl
    assert no_tls.ssl_context is None


def test_a_login_without_tls_gets_no_tls_context() -> None:
    security = KafkaSecurity(
        protocol=SecurityProtocol.SASL_PLAINTEXT, username="u", password=SecretStr(PASSWORD)
    )

    assert security.client_options() == {
        "security_protocol": "SASL_PLAINTEXT",
        "sasl_mechanism": "SCRAM-SHA-512",
        "sasl_plain_username": "u",
        "sasl_plain_password": PASSWORD,
    }


@pytest.mark.parametrize(
    ("values", "complaint"),
    [
        ({"protocol": "SASL_SSL", "username": "u"}, "needs a SASL username and password"),
        ({"protocol": "SASL_SSL", "password": SecretStr("p")}, "needs a SASL username"),
        ({"protocol": "SASL_SSL", "username": "u", "password": SecretStr("")}, "and password"),
        ({"username": "u"}, "does not log in: use SASL_SSL"),
        ({"protocol": "SSL", "password": SecretStr("p")}, "does not log in"),
        ({"ssl_ca_file": "ca.pem"}, "does not use TLS: use SSL or SASL_SSL"),
        (
            {
                "protocol": "SASL_PLAINTEXT",
                "username": "u",
                "password": SecretStr("p"),
                "ssl_cert_file": "c.pem",
                "ssl_key_file": "k.pem",
            },
            "does not use TLS",
        ),
        ({"protocol": "SSL", "ssl_cert_file": "c.pem"}, "both its certificate and its key"),
        ({"protocol": "SSL", "ssl_key_file": "k.pem"}, "both its certificate and its key"),
    ],
)
def test_settings_that_do_not_fit_together_are_refused_saying_why(
    values: dict[str, object], complaint: str
) -> None:
    with pytest.raises(KafkaSecurityError, match=complaint):
        KafkaSecurity(**values)  # type: ignore[arg-type]


def test_a_service_with_unfitting_settings_does_not_start(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SVC_KAFKA_SECURITY_PROTOCOL", "SASL_SSL")

    with pytest.raises(ValidationError, match="needs a SASL username and password"):
        SvcSettings()


def test_an_unknown_protocol_or_mechanism_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SVC_KAFKA_SECURITY_PROTOCOL", "sasl_ssl")
    with pytest.raises(ValidationError, match="kafka_security_protocol"):
        SvcSettings()
    with pytest.raises(ValueError, match="PLAIN"):
        KafkaSecurity(sasl_mechanism="PLAIN")  # type: ignore[arg-type]


def test_a_login_without_tls_is_refused_outside_development(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SVC_KAFKA_SECURITY_PROTOCOL", "SASL_PLAINTEXT")
    monkeypatch.setenv("SVC_KAFKA_SASL_USERNAME", "booking")
    monkeypatch.setenv("SVC_KAFKA_SASL_PASSWORD", PASSWORD)

    with pytest.raises(InsecureSettings) as refused:
        SvcSettings().check_kafka_security()
    SvcSettings(development=True).check_kafka_security()  # allowed on a development machine

    assert str(refused.value) == (
        "svc refuses to start: SVC_KAFKA_SECURITY_PROTOCOL=SASL_PLAINTEXT sends every record "
        "unencrypted; use SASL_SSL (with SVC_KAFKA_SSL_CA_FILE), or SVC_DEVELOPMENT=true on a "
        "development machine"
    )
    assert PASSWORD not in str(refused.value)


@pytest.mark.parametrize("protocol", ["PLAINTEXT", "SSL"])
def test_other_protocols_need_no_development_setting(
    monkeypatch: pytest.MonkeyPatch, protocol: str
) -> None:
    monkeypatch.setenv("SVC_KAFKA_SECURITY_PROTOCOL", protocol)

    SvcSettings().check_kafka_security()


def test_the_tls_files_are_read_when_a_client_is_made(tmp_path: Path) -> None:
    """A missing CA file fails the client being made, not the settings: a rotated file is
    read by the next client."""
    security = KafkaSecurity(protocol=SecurityProtocol.SSL, ssl_ca_file=str(tmp_path / "no.pem"))

    with pytest.raises(FileNotFoundError):
        security.client_options()
