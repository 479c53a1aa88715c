"""A private Kafka broker that a test may stop and start (for outage tests).

It is the same broker as the shared one (``deploy/local/kafka.sh``: Apache Kafka from Maven
Central on the JVM), started on its own ports with its own data directory, so stopping it
disturbs no other test.
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
        env = {
            **os.environ,
            "KAFKA_PORT": str(self.port),
            "KAFKA_CONTROLLER_PORT": str(self.controller_port),
            "PLATFORM_STATE_DIR": str(self.state_dir),
            "KAFKA_HEAP_OPTS": "-Xmx384m",
        }
        result = subprocess.run(
            ["bash", str(KAFKA_SH), action],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        if result.returncode != 0:
            raise RuntimeError(f"kafka.sh {action} failed:\n{result.stdout}\n{result.stderr}")

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
