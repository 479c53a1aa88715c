"""Blocking calls from async tests, on threads that last as long as the test run.

Tests run synchronous code (Alembic, the services' console commands, which start their own
event loop) off the test's loop. ``asyncio.to_thread`` would use the loop's default executor,
whose threads exit when the loop closes; a thread that has used SQLAlchemy's asyncio layer
holds greenlet state, and greenlet's clean-up of a dead thread's state was seen to spin the
main thread at full CPU for good (the run hung until CI's time limit). Threads from here are
daemon threads that are reused and never exit before the interpreter does, so that clean-up
never runs during a test run.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import functools
import queue
import threading
from collections.abc import Callable
from typing import Any, ParamSpec, TypeVar

P = ParamSpec("P")
T = TypeVar("T")

_Job = tuple[Callable[[], Any], "concurrent.futures.Future[Any]"]


class _LastingThreads:
    """Daemon threads started on demand and reused; none exits while the process runs."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._idle: list[queue.SimpleQueue[_Job]] = []
        self._started = 0

    def submit(self, call: Callable[[], T]) -> concurrent.futures.Future[T]:
        future: concurrent.futures.Future[T] = concurrent.futures.Future()
        with self._lock:
            inbox = self._idle.pop() if self._idle else self._start()
        inbox.put((call, future))
        return future

    def _start(self) -> queue.SimpleQueue[_Job]:
        inbox: queue.SimpleQueue[_Job] = queue.SimpleQueue()
        self._started += 1
        thread = threading.Thread(
            target=self._serve, args=(inbox,), name=f"tests-blocking-{self._started}", daemon=True
        )
        thread.start()
        return inbox

    def _serve(self, inbox: queue.SimpleQueue[_Job]) -> None:
        while True:
            call, future = inbox.get()
            if future.set_running_or_notify_cancel():
                try:
                    future.set_result(call())
                except BaseException as error:  # handed to the awaiting test, as to_thread does
                    future.set_exception(error)
            del call, future
            with self._lock:
                self._idle.append(inbox)


_THREADS = _LastingThreads()


async def in_thread(function: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
    """``asyncio.to_thread`` on a lasting thread (see the module's docstring for why)."""
    call = functools.partial(contextvars.copy_context().run, function, *args, **kwargs)
    return await asyncio.wrap_future(_THREADS.submit(call))
