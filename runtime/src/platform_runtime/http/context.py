"""What a route needs besides the request: the service runtime, its rules and the clock.

``ServiceRuntime.create_app(..., config=..., clock=...)`` builds one :class:`RequestContext`
and installs it on the app (:func:`install_context`); a route takes
``Ctx = Annotated[RequestContext[MyConfig], Depends(request_context)]`` and opens its one
transaction with ``async with ctx.transaction() as session``. A service whose routes need more
than its rules (booking's request coalescer) makes its config a dataclass that holds both.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from fastapi import FastAPI, Request
from sqlalchemy.ext.asyncio import AsyncSession

from platform_runtime.timing import Clock

if TYPE_CHECKING:
    from platform_runtime.service import ServiceRuntime

C = TypeVar("C")


@dataclass(frozen=True)
class RequestContext(Generic[C]):
    runtime: ServiceRuntime
    config: C
    clock: Clock

    def transaction(self) -> AbstractAsyncContextManager[AsyncSession]:
        """A session in a transaction that commits when the block ends without error."""
        return self.runtime.sessions.begin()


_STATE_KEY = "request_context"


def install_context(app: FastAPI, context: RequestContext[Any]) -> None:
    """Make ``context`` what :func:`request_context` gives every route of ``app``."""
    setattr(app.state, _STATE_KEY, context)


def context_of(app: FastAPI) -> RequestContext[Any]:
    """The context installed on ``app``."""
    context: RequestContext[Any] = getattr(app.state, _STATE_KEY)
    return context


def runtime_of(app: FastAPI) -> ServiceRuntime:
    """The runtime of an app made by ``ServiceRuntime.create_app``."""
    return context_of(app).runtime


async def request_context(request: Request) -> RequestContext[Any]:
    """FastAPI dependency: the context installed on the app (one object, built once).

    A coroutine function on purpose: FastAPI runs a plain ``def`` dependency in its thread
    pool, a thread hand-off on every request."""
    return context_of(request.app)


Q = TypeVar("Q")


def built_on_the_loop(cls: type[Q]) -> Callable[..., Awaitable[Q]]:
    """A FastAPI dependency that builds ``cls`` from the request's parameters (as
    ``Depends(cls)`` does) without a thread hand-off: FastAPI runs a class dependency in its
    thread pool, a coroutine function on the event loop."""

    async def build(**parameters: Any) -> Q:
        return cls(**parameters)

    build.__signature__ = inspect.signature(cls, eval_str=True)  # type: ignore[attr-defined]
    build.__name__ = f"build_{cls.__name__}"
    return build
