"""The consumer-lag loop when Kafka cannot be reached, and its setting."""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest
from pydantic import ValidationError

from platform_runtime.http.metrics import Metrics
from platform_runtime.lag import ConsumerLagMonitor
from platform_runtime.settings import ServiceSettings


@dataclass
class Group:
    name: str
    topics: list[str] = field(default_factory=list)


class Warnings(logging.Handler):
    """Collects what ``platform_runtime.lag`` logs; ``seen(n)`` waits until it logged ``n``
    records."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.records: list[logging.LogRecord] = []
        self._more = asyncio.Event()

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)
        self._more.set()

    async def seen(self, count: int, timeout_s: float = 10) -> None:
        async with asyncio.timeout(timeout_s):
            while len(self.records) < count:
                self._more.clear()
                await self._more.wait()


@pytest.fixture
def warnings() -> Iterator[Warnings]:
    handler = Warnings()
    logger = logging.getLogger("platform_runtime.lag")
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    yield handler
    logger.removeHandler(handler)
    logger.setLevel(level)


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_the_lag_interval_defaults_to_15s_and_must_be_positive() -> None:
    assert ServiceSettings().metrics_lag_interval_s == 15.0
    assert ServiceSettings(metrics_lag_interval_s=0.5).metrics_lag_interval_s == 0.5
    with pytest.raises(ValidationError):
        ServiceSettings(metrics_lag_interval_s=0)


async def test_while_kafka_is_down_the_loop_warns_carries_on_and_keeps_the_last_values(
    warnings: Warnings,
) -> None:
    metrics = Metrics()
    gauge = metrics.gauge("kafka_consumer_lag", "lag", ["consumer", "topic"])
    gauge.labels(consumer="orders", topic="orders.events").set(7)
    monitor = ConsumerLagMonitor(
        bootstrap_servers=f"127.0.0.1:{closed_port()}",
        client_id="lag-test",
        groups=[Group("orders", ["orders.events"]), Group("idle")],
        gauge=gauge,
        interval_s=0.05,
        request_timeout_ms=2_000,
    )
    stop = asyncio.Event()

    task = asyncio.create_task(monitor.run(stop))
    await warnings.seen(3)  # every failed round is reported and the loop carries on
    stop.set()
    await asyncio.wait_for(task, 5)

    logged = warnings.records
    assert all(r.levelno == logging.WARNING for r in logged)
    assert logged[0].exc_info
    assert not any(r.exc_info for r in logged[1:]), "one traceback per outage"
    assert "KafkaConnectionError" in logged[1].getMessage()
    labels = {"consumer": "orders", "topic": "orders.events"}
    assert metrics.registry.get_sample_value("kafka_consumer_lag", labels) == 7


async def test_stopping_interrupts_a_round_that_waits_for_kafka() -> None:
    never = asyncio.Event()

    class Hanging(ConsumerLagMonitor):
        async def measure(self) -> None:
            await never.wait()

    monitor = Hanging(
        bootstrap_servers="unused:9092",
        client_id="lag-test",
        groups=[],
        gauge=Metrics().gauge("kafka_consumer_lag", "lag", ["consumer", "topic"]),
        interval_s=60,
    )
    stop = asyncio.Event()
    task = asyncio.create_task(monitor.run(stop))
    await asyncio.sleep(0.1)
    stop.set()

    await asyncio.wait_for(task, 1)  # not the 30s the round could take


async def test_a_round_without_an_answer_in_time_is_a_failed_round(
    warnings: Warnings,
) -> None:
    class Hanging(ConsumerLagMonitor):
        async def measure(self) -> None:
            await asyncio.Event().wait()

    monitor = Hanging(
        bootstrap_servers="unused:9092",
        client_id="lag-test",
        groups=[],
        gauge=Metrics().gauge("kafka_consumer_lag", "lag", ["consumer", "topic"]),
        interval_s=0.01,
        request_timeout_ms=50,
    )
    stop = asyncio.Event()
    task = asyncio.create_task(monitor.run(stop))
    await warnings.seen(1)
    stop.set()
    await asyncio.wait_for(task, 1)

    assert "TimeoutError: no answer from Kafka" in warnings.records[0].getMessage()


async def test_after_a_failed_round_the_next_round_measures_again(warnings: Warnings) -> None:
    metrics = Metrics()
    measured = asyncio.Event()

    class FailsOnce(ConsumerLagMonitor):
        rounds = 0

        async def measure(self) -> None:
            self.rounds += 1
            if self.rounds == 1:
                raise ConnectionResetError()
            self.gauge.labels(consumer="orders", topic="orders.events").set(0)
            measured.set()

    monitor = FailsOnce(
        bootstrap_servers="unused:9092",
        client_id="lag-test",
        groups=[],
        gauge=metrics.gauge("kafka_consumer_lag", "lag", ["consumer", "topic"]),
        interval_s=0.01,
    )
    warnings.setLevel(logging.INFO)
    stop = asyncio.Event()
    task = asyncio.create_task(monitor.run(stop))
    await asyncio.wait_for(measured.wait(), 5)
    await warnings.seen(2)
    stop.set()
    await asyncio.wait_for(task, 1)

    assert [r.getMessage() for r in warnings.records] == [
        "consumer lag not measured (1 failed rounds in a row): ConnectionResetError",
        "consumer lag measured again after 1 failed rounds",
    ]
