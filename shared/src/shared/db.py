"""Database plumbing: engines, sessions, and the naming convention every service shares.

Each service declares its own ``MetaData`` (so Alembic autogenerate in one service never sees
another service's tables) but builds it with :func:`service_metadata`, so constraint and
index names follow one convention everywhere and migrations can refer to them by name.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy import Column, DateTime, MetaData, Numeric, func
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

NAMING_CONVENTION: dict[str, str] = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def service_metadata() -> MetaData:
    """A fresh ``MetaData`` with the platform's naming convention."""
    return MetaData(naming_convention=NAMING_CONVENTION)


def make_engine(
    url: str, *, pool_size: int = 10, max_overflow: int = 10, application_name: str | None = None
) -> AsyncEngine:
    """An asyncpg engine; survives database restarts without a check per checkout.

    No ``pool_pre_ping``: it would cost round trips on every checkout of every request.
    A connection that died meanwhile fails where it is used; SQLAlchemy then invalidates
    the whole pool (every older connection is replaced on its next checkout), HTTP answers
    that one request with a 503 to retry and consumers retry it as an outage
    (``shared.messaging.is_outage``).
    """
    connect_args: dict[str, object] = {}
    if application_name:
        connect_args["server_settings"] = {"application_name": application_name}
    return create_async_engine(
        url,
        pool_size=pool_size,
        max_overflow=max_overflow,
        connect_args=connect_args,
    )


def make_session_factory(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    """Sessions that keep loaded objects usable after commit (no lazy reload on access)."""
    return async_sessionmaker(engine, expire_on_commit=False)


def violated_constraint(error: DBAPIError) -> str | None:
    """The name of the constraint PostgreSQL reported as violated, if any: a unique index, a
    CHECK, or the name a trigger gives its refusal (``RAISE ... USING CONSTRAINT = ...``)."""
    return getattr(_reported(error), "constraint_name", None)


def reported_detail(error: DBAPIError) -> str | None:
    """The ``DETAIL`` PostgreSQL attached to the error, if any (a trigger's
    ``RAISE ... USING DETAIL = ...``)."""
    return getattr(_reported(error), "detail", None)


def _reported(error: DBAPIError) -> BaseException | None:
    """asyncpg's own exception (which has the fields of the server's error), behind the
    DBAPI exception that SQLAlchemy wraps."""
    return error.orig.__cause__ if error.orig is not None else None


def asyncpg_dsn(sqlalchemy_url: str) -> str:
    """``postgresql+asyncpg://…`` -> ``postgresql://…`` for direct asyncpg connections."""
    scheme, sep, rest = sqlalchemy_url.partition("://")
    return f"{scheme.split('+', 1)[0]}{sep}{rest}"


MONEY = Numeric(19, 4)
"""Amounts are exact decimals; four places cover every ISO 4217 minor unit."""


def one_of(column: str, values: Iterable[str]) -> str:
    """A CHECK condition: ``column IN ('a', 'b')``."""
    return f"{column} IN (" + ", ".join(f"'{value}'" for value in values) + ")"


def timestamp_column(name: str, *, nullable: bool = False) -> Column[Any]:
    """A timezone-aware timestamp column; a required one defaults to ``now()``."""
    return Column(
        name,
        DateTime(timezone=True),
        nullable=nullable,
        server_default=None if nullable else func.now(),
    )
