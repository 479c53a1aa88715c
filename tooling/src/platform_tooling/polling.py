"""Waiting for what a service does in its own time: the pollers every test suite uses."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")


async def until(
    probe: Callable[[], Awaitable[T | None]],
    *,
    timeout_s: float = 30.0,
    interval_s: float = 0.05,
    what: str = "it",
) -> T:
    """Poll ``probe`` until it returns something truthy, and return that; ``TimeoutError``
    (naming ``what``) after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = await probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout_s:g}s waiting for {what}")
        await asyncio.sleep(interval_s)


async def eventually(
    probe: Callable[[], Awaitable[T]],
    done: Callable[[T], bool],
    *,
    timeout_s: float = 20.0,
    interval_s: float = 0.05,
) -> T:
    """Poll ``probe`` until ``done(value)``; return the last value either way (the caller
    asserts on it, and so shows what it saw)."""
    deadline = time.monotonic() + timeout_s
    value = await probe()
    while not done(value) and time.monotonic() < deadline:
        await asyncio.sleep(interval_s)
        value = await probe()
    return value
