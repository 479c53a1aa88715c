"""Records broken in every way, and database trouble that passes, against a real broker and
a real PostgreSQL: no record is lost (records in = applied + dead-lettered), none stops its
partition, and trouble that passes dead-letters nothing."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable

import asyncpg
import pytest_asyncio
from sqlalchemy import make_url, text
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

from platform_runtime.db import make_session_factory
from platform_runtime.kafka import KafkaPublisher, ensure_topics
from platform_runtime.messaging import EventContext
from platform_runtime.transactions import SqlTransactions
from platform_tooling.polling import eventually
from tests.support.kafka import produce, read_topic

from .conftest import Db, KernelTestEvent, inbox
from .helpers import consuming, effect_notes, new_consumer, running_consumer
from .test_consumer import envelope_bytes


async def test_every_kind_of_undecodable_record_is_dead_lettered_and_none_is_lost(
    db: Db, kafka_bootstrap: str, topic: str, unique: Callable[[str], str]
) -> None:
    broken = [
        b'{"n": ' + b"9" * 5000 + b"}",  # an integer Python will not read (over 4,300 digits)
        b"[" * 50_000 + b"]" * 50_000,  # nested past the recursion limit
        b"",  # empty
    ]
    await produce(kafka_bootstrap, topic, broken)
    await produce(kafka_bootstrap, topic, [envelope_bytes("null header")], headers=[("x", None)])  # type: ignore[list-item]
    await produce(kafka_bootstrap, topic, [envelope_bytes("last")])

    async with running_consumer(db, kafka_bootstrap, topic, unique("g")):
        notes = await eventually(lambda: effect_notes(db), lambda n: "last" in n)
    dead = await read_topic(kafka_bootstrap, f"{topic}.dlq", at_least=3, settle_s=0.5)

    assert notes == ["null header", "last"]
    assert len(dead) == 3  # 5 records in: 2 applied + 3 dead-lettered
    reasons = [dict((k, v.decode()) for k, v in d.headers)["dlq_reason"] for d in dead]
    assert "ValueError" in reasons[0]
    assert "RecursionError" in reasons[1]
    assert "empty" in reasons[2]


@pytest_asyncio.fixture(loop_scope="session")
async def few_connections(db: Db, unique: Callable[[str], str]) -> AsyncIterator[str]:
    """A role that may hold 2 connections, allowed to write the kernel's tables: the URL of
    the test database as that role."""
    role = unique("few").replace("-", "_")
    async with db.engine.begin() as connection:
        await connection.execute(
            text(f"CREATE ROLE {role} LOGIN PASSWORD 'few' CONNECTION LIMIT 2")
        )
        await connection.execute(text(f"GRANT ALL ON ALL TABLES IN SCHEMA public TO {role}"))
        await connection.execute(text(f"GRANT ALL ON ALL SEQUENCES IN SCHEMA public TO {role}"))
    yield make_url(db.url).set(username=role, password="few").render_as_string(hide_password=False)
    async with db.engine.begin() as connection:
        await connection.execute(
            text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = :role"),
            {"role": role},
        )
        await connection.execute(text(f"DROP OWNED BY {role}"))
        await connection.execute(text(f"DROP ROLE {role}"))


async def test_too_many_connections_is_waited_out_and_dead_letters_nothing(
    db: Db, kafka_bootstrap: str, topic: str, unique: Callable[[str], str], few_connections: str
) -> None:
    plain = (
        make_url(few_connections).set(drivername="postgresql").render_as_string(hide_password=False)
    )
    hogs = [await asyncpg.connect(plain) for _ in range(2)]  # every connection the role has
    engine = create_async_engine(few_connections, poolclass=NullPool)
    group = unique("g")
    dead_letters = KafkaPublisher(kafka_bootstrap, client_id=group)
    await ensure_topics(kafka_bootstrap, [topic])
    consumer = new_consumer(db, kafka_bootstrap, group, dead_letters, max_attempts=2)
    consumer.transactions = SqlTransactions(make_session_factory(engine), inbox)
    refused: list[str] = []

    @consumer.on(KernelTestEvent)
    async def record(event: KernelTestEvent, ctx: EventContext) -> None:
        await ctx.session.execute(
            text("INSERT INTO effects (order_id, note) VALUES (:o, :n)"),
            {"o": event.order_id, "n": event.note},
        )

    order = uuid.uuid4()
    await produce(kafka_bootstrap, topic, [envelope_bytes("paid", order)])
    try:
        async with consuming(consumer):
            try:  # what the consumer meets meanwhile, at each of its many tries
                await asyncpg.connect(plain)
            except asyncpg.exceptions.TooManyConnectionsError as exc:
                refused.append(exc.sqlstate)
            waited = await eventually(lambda: effect_notes(db), bool, timeout_s=3.0)
            for hog in hogs:
                await hog.close()
            notes = await eventually(lambda: effect_notes(db), bool)
    finally:
        await dead_letters.stop()
        await engine.dispose()
    dead = await read_topic(kafka_bootstrap, f"{topic}.dlq", at_least=1, timeout_s=2.0)

    assert refused == ["53300"]  # the role's connections were exhausted
    assert waited == []  # nothing applied while there was no connection to be had
    assert notes == ["paid"]  # applied once the connections came back
    assert dead == []  # and nothing dead-lettered meanwhile
