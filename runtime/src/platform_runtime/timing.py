"""Time as the runtime sees it: the clock a service is given, a sleep that a stop cuts short,
and how long to wait before trying again."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

Clock = Callable[[], datetime]
"""What a service asks for the time: aware UTC (``booking_contracts.money.utc_now`` in
production; a fixed or stepped clock in tests)."""


async def sleep_unless(stop: asyncio.Event, seconds: float) -> bool:
    """Sleep ``seconds``, or less when ``stop`` is set meanwhile; returns whether it is set."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)
    return stop.is_set()


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Up to ``max_attempts`` attempts; the wait after each failure doubles from ``initial``
    up to ``maximum``."""

    max_attempts: int = 5
    initial: timedelta = timedelta(seconds=0.2)
    maximum: timedelta = timedelta(seconds=5)

    def backoff(self, attempt: int) -> timedelta:
        """The wait after the ``attempt``-th failure (1-based)."""
        delay: timedelta = self.initial * 2 ** (attempt - 1)
        return min(delay, self.maximum)

    def gives_up(self, attempt: int) -> bool:
        """Whether the ``attempt``-th failure (1-based) was the last allowed."""
        return attempt >= self.max_attempts
