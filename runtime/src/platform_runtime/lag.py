"""Consumer lag: how many records on its topics a consumer group has not committed yet.

:func:`consumer_lag` measures one group once. :class:`ConsumerLagMonitor` is the service
runtime's background loop that measures every consumer group of the service at an interval
and exports the result as the gauge ``kafka_consumer_lag{consumer,topic}``, so that
operators can alert on a group that falls behind or stops.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Sequence
from typing import TYPE_CHECKING, Protocol, TypeVar

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from platform_runtime.errors import describe
from platform_runtime.kafka import make_admin, make_reader
from platform_runtime.kafka_security import PLAINTEXT, KafkaSecurity
from platform_runtime.timing import sleep_unless

if TYPE_CHECKING:
    from prometheus_client import Gauge

log = logging.getLogger(__name__)

T = TypeVar("T")


class ConsumerGroup(Protocol):
    """What the monitor needs of a consumer: its group id and the topics it reads."""

    @property
    def name(self) -> str: ...

    @property
    def topics(self) -> Sequence[str]: ...


async def consumer_lag(
    admin: AIOKafkaAdminClient, offsets: AIOKafkaConsumer, *, group: str, topics: Sequence[str]
) -> dict[str, int]:
    """Per topic, the records of ``topics`` that ``group`` has not committed yet.

    The sum over the topic's partitions of (end offset - committed offset). A partition the
    group never committed counts from its beginning offset (the groups read from the
    earliest offset), and so does one whose committed offset records were deleted since.
    ``offsets`` is a consumer without a group, used only to look offsets up. Topics that do
    not exist are left out (and not created: the broker may create a topic it is asked
    about by name, so the metadata of all topics is read).
    """
    wanted = set(topics)
    described = [
        topic
        for topic in await admin.describe_topics()
        if topic["topic"] in wanted and not topic["error_code"]
    ]
    partitions = [
        TopicPartition(topic["topic"], partition["partition"])
        for topic in described
        for partition in topic["partitions"]
    ]
    lag = {topic["topic"]: 0 for topic in described}
    if not partitions:
        return lag
    committed = await admin.list_consumer_group_offsets(group, partitions=partitions)
    end = await offsets.end_offsets(partitions)
    beginning = await offsets.beginning_offsets(partitions)
    for tp in partitions:
        done = committed[tp].offset if tp in committed else -1
        position = max(done, beginning[tp])  # -1 (nothing committed) is below any beginning
        lag[tp.topic] += max(end[tp] - position, 0)
    return lag


class ConsumerLagMonitor:
    """Measures the lag of ``groups`` every ``interval_s`` seconds into ``gauge``.

    Its two Kafka clients stay open between rounds. A round that fails (the broker is
    down) is logged as a warning, its clients are thrown away and made anew next round;
    the gauge keeps the values of the last successful round meanwhile.
    """

    def __init__(
        self,
        *,
        bootstrap_servers: str,
        client_id: str,
        groups: Sequence[ConsumerGroup],
        gauge: Gauge,
        interval_s: float,
        request_timeout_ms: int = 15_000,
        security: KafkaSecurity = PLAINTEXT,
    ) -> None:
        self.bootstrap_servers = bootstrap_servers
        self.security = security
        self.client_id = client_id
        self.groups = groups
        self.gauge = gauge
        self.interval_s = interval_s
        self.request_timeout_ms = request_timeout_ms
        self._clients: tuple[AIOKafkaAdminClient, AIOKafkaConsumer] | None = None

    async def run(self, stop: asyncio.Event) -> None:
        """Export ``kafka_consumer_lag{consumer,topic}`` (records of the topic not yet
        committed by the group) every ``interval_s`` seconds until ``stop``."""
        failures = 0
        try:
            while not stop.is_set():
                try:
                    await _unless_stopped(stop, self.measure(), self.request_timeout_ms / 500)
                except Exception as exc:
                    failures += 1
                    await self._disconnect()
                    log.warning(
                        "consumer lag not measured (%d failed rounds in a row): %s",
                        failures,
                        describe(exc),
                        exc_info=failures == 1,  # one traceback per outage, not one per round
                    )
                else:
                    if failures:
                        log.info("consumer lag measured again after %d failed rounds", failures)
                    failures = 0
                await sleep_unless(stop, self.interval_s)
        finally:
            await self._disconnect()

    async def measure(self) -> None:
        """One round: measure every group and set the gauge."""
        admin, offsets = await self._connect()
        for group in list(self.groups):
            topics = list(group.topics)
            if not topics:
                continue
            lag = await consumer_lag(admin, offsets, group=group.name, topics=topics)
            for topic, value in lag.items():
                self.gauge.labels(consumer=group.name, topic=topic).set(value)

    async def _connect(self) -> tuple[AIOKafkaAdminClient, AIOKafkaConsumer]:
        if self._clients is None:
            admin = make_admin(
                self.bootstrap_servers,
                client_id=self.client_id,
                request_timeout_ms=self.request_timeout_ms,
                security=self.security,
            )
            offsets = make_reader(
                self.bootstrap_servers,
                client_id=self.client_id,
                request_timeout_ms=self.request_timeout_ms,
                security=self.security,
            )
            try:
                await admin.start()
                await offsets.start()
            except BaseException:
                await _close(admin, offsets)
                raise
            self._clients = (admin, offsets)
        return self._clients

    async def _disconnect(self) -> None:
        clients, self._clients = self._clients, None
        if clients is not None:
            await _close(*clients)


async def _close(admin: AIOKafkaAdminClient, offsets: AIOKafkaConsumer) -> None:
    with contextlib.suppress(Exception):
        await asyncio.wait_for(offsets.stop(), 5)
    with contextlib.suppress(Exception):
        await asyncio.wait_for(admin.close(), 5)


async def _unless_stopped(stop: asyncio.Event, work: Awaitable[T], timeout_s: float) -> None:
    """Await ``work`` unless ``stop`` is set first (then it is cancelled); TimeoutError
    after ``timeout_s``."""
    task = asyncio.ensure_future(work)
    stopped = asyncio.ensure_future(stop.wait())
    try:
        done, _ = await asyncio.wait(
            {task, stopped}, timeout=timeout_s, return_when=asyncio.FIRST_COMPLETED
        )
    finally:
        stopped.cancel()
        if not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
    if task in done:
        task.result()
    elif not stop.is_set():
        raise TimeoutError(f"no answer from Kafka within {timeout_s:g}s")
