"""Which changes of state a table's triggers let through, probed on a real database."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import asyncpg


async def allowed_changes(
    pool: asyncpg.Pool,
    table: str,
    states: Iterable[str],
    set_state: str,
    row_id: Any,
    *extra: Any,
) -> set[tuple[str, str]]:
    """Every ``(old, new)`` pair of ``states`` the triggers of ``table`` accept. For each
    pair, the row is put in ``old`` with the table's triggers off, then moved to ``new`` with
    them on, in a transaction rolled back afterwards, so the row ends as it began.

    ``set_state`` is the ``UPDATE`` that puts the row in a state: ``$1`` the row's id, ``$2``
    the state, then ``extra``; a refusal is a ``CheckViolationError``, as the triggers raise.
    """
    states = list(states)
    allowed = set()
    for old in states:
        for new in states:
            if old == new:
                continue
            async with pool.acquire() as connection:
                transaction = connection.transaction()
                await transaction.start()
                try:
                    await connection.execute(f"ALTER TABLE {table} DISABLE TRIGGER USER")
                    await connection.execute(set_state, row_id, old, *extra)
                    await connection.execute(f"ALTER TABLE {table} ENABLE TRIGGER USER")
                    await connection.execute(set_state, row_id, new, *extra)
                    allowed.add((old, new))
                except asyncpg.CheckViolationError:
                    pass
                finally:
                    await transaction.rollback()
    return allowed
