"""Alembic glue shared by the services' migration histories.

Each service keeps its own ``alembic.ini`` and ``migrations/`` folder; its ``env.py`` is two
lines that call :func:`run_env` with the service's ``MetaData`` and settings. The database
URL comes from the service settings (``<PREFIX>DATABASE_URL``) unless a caller, such as the
CLI or a test, passes one explicitly.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import MetaData, pool
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine


def alembic_config(ini_path: Path, database_url: str | None = None) -> Config:
    config = Config(str(ini_path))
    config.set_main_option("script_location", str(ini_path.parent / "migrations"))
    if database_url:
        config.attributes["database_url"] = database_url
    return config


def upgrade(ini_path: Path, database_url: str, revision: str = "head") -> None:
    command.upgrade(alembic_config(ini_path, database_url), revision)


def downgrade(ini_path: Path, database_url: str, revision: str = "base") -> None:
    command.downgrade(alembic_config(ini_path, database_url), revision)


def run_env(context: Any, target_metadata: MetaData, default_url: str) -> None:
    """Body of a service's ``migrations/env.py``: run migrations online over asyncpg."""
    url = context.config.attributes.get("database_url") or default_url

    def do_run(connection: Connection) -> None:
        context.configure(
            connection=connection,
            target_metadata=target_metadata,
            compare_type=True,
            compare_server_default=True,
            transaction_per_migration=True,
        )
        with context.begin_transaction():
            context.run_migrations()

    async def run_async() -> None:
        engine = create_async_engine(url, poolclass=pool.NullPool)
        try:
            async with engine.connect() as connection:
                await connection.run_sync(do_run)
                await connection.commit()
        finally:
            await engine.dispose()

    existing = context.config.attributes.get("connection")
    if existing is not None:
        do_run(existing)
        return
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        asyncio.run(run_async())
        return
    raise RuntimeError(  # pragma: no cover - a programming error, caught in tests
        "run migrations from a thread without a running loop (asyncio.to_thread)"
    )
