"""What every service's test driver shares: the clocks tests give a service, polling, and
reading what the service published about one key.

Each suite's ``conftest.py`` builds its ``Service`` on :class:`ServiceDriver` and adds what
is its own (the requests its API takes, the events it consumes, its tables).
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import httpx

from platform_runtime.transport import IncomingRecord
from platform_tooling.polling import until
from tests.support.brokers import Broker

T = TypeVar("T")


@dataclass
class FixedClock:
    """The service's notion of now, standing still where the test puts it (``clock.now``)."""

    now: datetime

    def __call__(self) -> datetime:
        return self.now


@dataclass
class ShiftedClock:
    """Real time shifted to where the test wants it: time keeps passing from there."""

    offset: timedelta

    @classmethod
    def starting_at(cls, moment: datetime) -> ShiftedClock:
        return cls(moment - datetime.now(UTC))

    def __call__(self) -> datetime:
        return datetime.now(UTC) + self.offset

    def set(self, moment: datetime) -> None:
        self.offset = moment - datetime.now(UTC)


@dataclass
class ServiceDriver:
    """A service under test: its HTTP client and the broker it runs on."""

    http: httpx.AsyncClient
    broker: Broker

    async def until(
        self, probe: Callable[[], Awaitable[T | None]], *, timeout_s: float = 20.0
    ) -> T:
        """Poll ``probe`` until it returns something truthy."""
        return await until(probe, timeout_s=timeout_s)

    async def envelopes_about(
        self, topic: str, key: str, *, at_least: int, settle_s: float = 0.0
    ) -> list[dict[str, Any]]:
        """The envelopes on ``topic`` keyed ``key`` (an aggregate's id), in order."""

        def about(record: IncomingRecord) -> bool:
            return record.key == key.encode()

        records = await self.broker.read(topic, at_least=at_least, where=about, settle_s=settle_s)
        return [json.loads(record.value or b"") for record in records]
