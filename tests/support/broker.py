"""A private Kafka broker and a private PostgreSQL server that a test may stop and start (for
outage tests and the end-to-end suite).

They are the same servers as the shared ones (``deploy/local/kafka.sh``: Apache Kafka from
Maven Central on the JVM; ``deploy/local/postgres.sh``: Debian's PostgreSQL), started on their
own ports with their own data directories, so stopping them disturbs no other test.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from pydantic import SecretStr

from platform_runtime.kafka_security import KafkaSecurity, SecurityProtocol
from tests.support.ports import free_port, free_ports
from tests.support.tls import BrokerTls, broker_tls

REPO = Path(__file__).resolve().parents[2]
KAFKA_SH = REPO / "deploy" / "local" / "kafka.sh"
POSTGRES_SH = REPO / "deploy" / "local" / "postgres.sh"


def _script(script: Path, action: str, **env: str) -> None:
    """Run one of the ``deploy/local`` scripts with ``env`` on top of this environment."""
    result = subprocess.run(
        ["bash", str(script), action],
        env=os.environ | env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(f"{script.name} {action} failed:\n{result.stdout}\n{result.stderr}")


@dataclass
class PrivateBroker:
    state_dir: Path
    port: int
    controller_port: int

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _run(self, action: str) -> None:
        _script(
            KAFKA_SH,
            action,
            KAFKA_PORT=str(self.port),
            KAFKA_CONTROLLER_PORT=str(self.controller_port),
            PLATFORM_STATE_DIR=str(self.state_dir),
            KAFKA_HEAP_OPTS="-Xmx384m",
        )

    def start(self) -> None:
        self._run("up")

    def stop(self) -> None:
        self._run("down")


def _need_java(who: str) -> None:
    if shutil.which("java") is None:
        pytest.fail(
            f"{who} start a private Kafka broker and need Java 17+ "
            "(run `make test`, which installs it)",
            pytrace=False,
        )


def private_broker(tmp_root: Path) -> PrivateBroker:
    _need_java("the outage tests")
    port, controller_port = free_ports(2)
    return PrivateBroker(state_dir=tmp_root, port=port, controller_port=controller_port)


@dataclass
class SecureBroker:
    """A private broker whose only client listener takes TLS and a SCRAM-SHA-512 login
    (``kafka.sh`` with ``KAFKA_LISTENER_SECURITY=SASL_SSL``), with a certificate authority
    of its own. :attr:`username` / :attr:`password` is its one SCRAM user."""

    state_dir: Path
    port: int
    controller_port: int
    username: str = "platform"
    password: SecretStr = field(default_factory=lambda: SecretStr(secrets.token_urlsafe(24)))
    tls: BrokerTls | None = None

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def ca_file(self) -> Path:
        assert self.tls is not None, "start the broker first"
        return self.tls.ca_file

    def security(self, *, password: str | None = None) -> KafkaSecurity:
        """What a platform client needs to reach the broker (another password: to be refused)."""
        return KafkaSecurity(
            protocol=SecurityProtocol.SASL_SSL,
            username=self.username,
            password=SecretStr(password) if password is not None else self.password,
            ssl_ca_file=str(self.ca_file),
        )

    def settings_env(self, prefix: str) -> dict[str, str]:
        """The settings of a service (``prefix``: ``BOOKING_``...) that point it here."""
        return {
            f"{prefix}KAFKA_BOOTSTRAP_SERVERS": self.bootstrap,
            f"{prefix}KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
            f"{prefix}KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
            f"{prefix}KAFKA_SASL_USERNAME": self.username,
            f"{prefix}KAFKA_SASL_PASSWORD": self.password.get_secret_value(),
            f"{prefix}KAFKA_SSL_CA_FILE": str(self.ca_file),
        }

    def _run(self, action: str) -> None:
        assert self.tls is not None
        _script(
            KAFKA_SH,
            action,
            KAFKA_PORT=str(self.port),
            KAFKA_CONTROLLER_PORT=str(self.controller_port),
            PLATFORM_STATE_DIR=str(self.state_dir),
            KAFKA_HEAP_OPTS="-Xmx384m",
            KAFKA_LISTENER_SECURITY="SASL_SSL",
            KAFKA_TLS_KEYSTORE_PEM=str(self.tls.keystore_file),
            KAFKA_TLS_CA_PEM=str(self.tls.ca_file),
            KAFKA_SCRAM_USERNAME=self.username,
            KAFKA_SCRAM_PASSWORD=self.password.get_secret_value(),
        )

    def start(self) -> None:
        if self.tls is None:
            self.tls = broker_tls(self.state_dir / "tls")
        self._run("up")

    def stop(self) -> None:
        if self.tls is not None:
            self._run("down")


def secure_broker(tmp_root: Path) -> SecureBroker:
    _need_java("the SASL_SSL tests")
    port, controller_port = free_ports(2)
    return SecureBroker(state_dir=tmp_root, port=port, controller_port=controller_port)


@dataclass
class PrivatePostgres:
    state_dir: Path
    port: int

    @property
    def dsn(self) -> str:
        """Like ``TEST_POSTGRES_DSN``: no database name."""
        return f"postgresql://platform:platform@127.0.0.1:{self.port}"

    def _run(self, action: str) -> None:
        _script(
            POSTGRES_SH,
            action,
            PG_PORT=str(self.port),
            PG_FAST="1",
            PLATFORM_STATE_DIR=str(self.state_dir),
        )

    def start(self) -> None:
        self._run("up")

    def stop(self) -> None:
        """A fast shutdown: open connections are cut."""
        self._run("down")

    def remove(self) -> None:
        self._run("reset")


def private_postgres(tmp_root: Path) -> PrivatePostgres:
    return PrivatePostgres(state_dir=tmp_root, port=free_port())
