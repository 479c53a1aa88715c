"""What the three databases hold, condensed: compare it before and after a request that must
change nothing.

Every table of every service is fingerprinted by its whole content, except the transport
tables: the outbox by its number of rows (the relay marks rows published in the background,
so only a new row means a new event) and the inbox not at all (it records events the
consumers took from the broker, which are not answers to our requests).
"""

from __future__ import annotations

import asyncio
import time

import asyncpg

from tests.support.platform import Platform, quiet

State = dict[str, dict[str, str]]
"""Service -> table -> fingerprint."""

SKIPPED = frozenset({"alembic_version", "inbox"})
COUNTED = frozenset({"outbox"})


async def fingerprint(platform: Platform) -> State:
    state: State = {}
    for service, url in platform.databases.items():
        connection = await asyncpg.connect(url.replace("postgresql+asyncpg://", "postgresql://"))
        try:
            tables = await connection.fetch(
                "SELECT table_name FROM information_schema.tables "
                "WHERE table_schema = 'public' AND table_type = 'BASE TABLE'"
            )
            state[service] = {
                table: await _table(connection, table)
                for table in sorted(row["table_name"] for row in tables)
                if table not in SKIPPED
            }
        finally:
            await connection.close()
    return state


async def _table(connection: asyncpg.Connection, table: str) -> str:
    content = (
        "''"
        if table in COUNTED
        else "coalesce(md5(string_agg(md5(t::text), ',' ORDER BY md5(t::text))), '-')"
    )
    value = await connection.fetchval(
        f"SELECT count(*) || ' rows ' || {content} FROM \"{table}\" t"
    )
    return str(value)


async def settled(platform: Platform, *, timeout_s: float = 30.0) -> State:
    """The state once it stops changing (events of earlier requests travel between the
    services for a moment): every outbox relayed and every consumer group caught up, then
    two fingerprints in a row, half a second apart, agree."""
    await quiet(platform, timeout_s=timeout_s)
    deadline = time.monotonic() + timeout_s
    last = await fingerprint(platform)
    while True:
        await asyncio.sleep(0.5)
        current = await fingerprint(platform)
        if current == last:
            return current
        if time.monotonic() > deadline:
            raise TimeoutError(f"the databases kept changing for {timeout_s:g}s")
        last = current


def differences(before: State, after: State) -> list[str]:
    """``service.table: before -> after`` for each table whose fingerprint changed."""
    return [
        f"{service}.{table}: {before[service].get(table)} -> {after[service].get(table)}"
        for service in sorted(after)
        for table in sorted(set(before.get(service, {})) | set(after[service]))
        if before.get(service, {}).get(table) != after[service].get(table)
    ]
