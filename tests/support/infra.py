"""Where the tests' real PostgreSQL and Apache Kafka come from.

1. ``TEST_POSTGRES_DSN`` / ``TEST_KAFKA_BOOTSTRAP`` when set (``make test`` sets them after
   starting the native infrastructure with ``deploy/local/infra.sh``);
2. otherwise testcontainers, when a Docker engine answers;
3. otherwise the test fails, saying how to provide them: never a silent skip.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

HOW_TO = (
    "Integration tests need a real PostgreSQL and Apache Kafka. Run `make test` (it starts "
    'both natively), or `deploy/local/infra.sh up && eval "$(deploy/local/infra.sh env)"`, '
    "or set TEST_POSTGRES_DSN=postgresql://user:pass@host:port and "
    "TEST_KAFKA_BOOTSTRAP=host:port yourself."
)


def docker_answers() -> bool:
    if shutil.which("docker") is None:
        return False
    try:
        return (
            subprocess.run(
                ["docker", "info"], capture_output=True, timeout=15, check=False
            ).returncode
            == 0
        )
    except (OSError, subprocess.TimeoutExpired):
        return False


@contextmanager
def postgres_dsn() -> Iterator[str]:
    """A ``postgresql://user:password@host:port`` DSN of a role that may create databases."""
    dsn = os.environ.get("TEST_POSTGRES_DSN")
    if dsn:
        yield dsn.rstrip("/")
        return
    if docker_answers():
        from testcontainers.postgres import PostgresContainer

        with PostgresContainer("postgres:17-alpine", driver=None) as container:
            url = container.get_connection_url()
            yield url.rsplit("/", 1)[0]
        return
    pytest.fail(HOW_TO, pytrace=False)


@contextmanager
def kafka_bootstrap() -> Iterator[str]:
    """``host:port`` of a real Kafka broker."""
    bootstrap = os.environ.get("TEST_KAFKA_BOOTSTRAP")
    if bootstrap:
        yield bootstrap
        return
    if docker_answers():
        from testcontainers.kafka import KafkaContainer

        with KafkaContainer().with_kraft() as container:
            yield container.get_bootstrap_server()
        return
    pytest.fail(HOW_TO, pytrace=False)
