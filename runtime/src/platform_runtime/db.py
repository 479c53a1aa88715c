"""Database plumbing: engines, sessions, and the naming convention every service shares.

Each service declares its own ``MetaData`` (so Alembic autogenerate in one service never sees
another service's tables) but builds it with :func:`service_metadata`, so constraint and
index names follow one convention everywhere and migrations can refer to them by name.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy import Column, ColumnElement, DateTime, MetaData, Numeric, func, literal_column
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
    (``platform_runtime.messaging.is_outage``).
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


def sql_literal(value: str) -> str:
    """``value`` (a status or another code constant, usually an enum member) as a quoted SQL
    literal: ``'pending'``.

    The SQL rule (``docs/architecture.md``): values are bound parameters, except a status a
    statement filters or sets, which is written as a literal rendered from its enum with this
    function, so that the statement and the partial indexes and checks whose predicates name
    the same status agree (PostgreSQL uses a partial index only when the statement names its
    predicate's literal; a bound status hides it from a generic plan)."""
    return "'" + str(value).replace("'", "''") + "'"


def one_of(column: str, values: Iterable[str]) -> str:
    """A condition ``column IN ('a', 'b')`` (a CHECK, a partial index, a statement)."""
    return f"{column} IN (" + ", ".join(sql_literal(value) for value in values) + ")"


def status_in(column: ColumnElement[Any], values: Iterable[str]) -> ColumnElement[bool]:
    """``column IN ('a', 'b')`` with the statuses as literals (see :func:`sql_literal`)."""
    return column.in_([literal_column(sql_literal(value)) for value in values])


def status_is(column: ColumnElement[Any], value: str) -> ColumnElement[bool]:
    """``column = 'value'`` with the status as a literal, for SQLAlchemy Core statements (see
    :func:`sql_literal`)."""
    return column == literal_column(sql_literal(value))


def timestamp_column(name: str, *, nullable: bool = False) -> Column[Any]:
    """A timezone-aware timestamp column; a required one defaults to ``now()``."""
    return Column(
        name,
        DateTime(timezone=True),
        nullable=nullable,
        server_default=None if nullable else func.now(),
    )
