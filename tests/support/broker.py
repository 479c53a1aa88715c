"""A private Kafka broker and a private PostgreSQL server that a test may stop and start (for
outage tests and the end-to-end suite).

They are the same servers as the shared ones (``deploy/local/kafka.sh``: Apache Kafka from
Maven Central on the JVM; ``deploy/local/postgres.sh``: Debian's PostgreSQL), started on their
own ports with their own data directories, so stopping them disturbs no other test.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

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


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


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


def private_broker(tmp_root: Path) -> PrivateBroker:
    if shutil.which("java") is None:
        pytest.fail(
            "the outage tests start a private Kafka broker and need Java 17+ "
            "(run `make test`, which installs it)",
            pytrace=False,
        )
    return PrivateBroker(state_dir=tmp_root, port=_free_port(), controller_port=_free_port())


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
    return PrivatePostgres(state_dir=tmp_root, port=_free_port())
