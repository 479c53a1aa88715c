"""The database held in the process: transactions that commit or roll back as a whole,
inbox claims, and an outbox published once its transaction committed."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar
from uuid import uuid4

import pytest
from sqlalchemy import MetaData

from booking_contracts.catalogue import PaymentFailed
from platform_runtime.memory import InMemoryTransport
from platform_runtime.memorydb import MemoryDatabase, MemoryTransaction, TwinStore
from platform_runtime.outbox import Outbox, outbox_table
from platform_runtime.transactions import Stores

OUTBOX = Outbox(outbox_table(MetaData()), source="/test")
BOOKING = uuid4()
T = TypeVar("T")


def failed(payment_id: str) -> PaymentFailed:
    """A payment of one booking (one key: one partition, in the order written)."""
    return PaymentFailed(booking_id=BOOKING, payment_id=payment_id, reason="card declined")


class Rollback(Exception):
    pass


async def rolled_back(db: MemoryDatabase[T], change: Callable[[MemoryTransaction[T]], Any]) -> None:
    """Run ``change`` in a transaction of ``db`` that then fails."""
    async with db.begin() as tx:
        await change(tx)
        raise Rollback


async def test_a_transaction_commits_its_changes_and_a_failed_one_changes_nothing() -> None:
    db = MemoryDatabase[dict[str, int]]({"seats": 3})
    async with db.begin() as tx:
        tx.state["seats"] -= 1

    async def take_two(tx: MemoryTransaction[dict[str, int]]) -> None:
        tx.state["seats"] -= 2

    with pytest.raises(Rollback):
        await rolled_back(db, take_two)

    assert await db.read() == {"seats": 2}
    assert db.commits == 1


async def test_an_event_id_is_claimed_once_per_consumer_and_a_rolled_back_claim_is_lost() -> None:
    db = MemoryDatabase[None](None)
    first, second = uuid4(), uuid4()

    async def claim_first(tx: MemoryTransaction[None]) -> None:
        assert await db.claim(tx, consumer="c", events={first: "T"}) == {first}

    with pytest.raises(Rollback):
        await rolled_back(db, claim_first)
    async with db.begin() as tx:
        assert await db.claim(tx, consumer="c", events={first: "T", second: "T"}) == {
            first,
            second,
        }
        assert await db.claim(tx, consumer="c", events={first: "T"}) == set()
        assert await db.claim(tx, consumer="other", events={first: "T"}) == {first}


async def test_transactions_take_turns() -> None:
    db = MemoryDatabase[list[int]]([])

    async def append(n: int) -> None:
        async with db.begin() as tx:
            seen = len(tx.state)
            await asyncio.sleep(0)  # another transaction would interleave here
            tx.state.append(seen)

    await asyncio.gather(*(append(n) for n in range(5)))
    assert await db.read() == [0, 1, 2, 3, 4]


async def test_outbox_events_are_published_in_order_only_once_their_transaction_committed() -> None:
    transport = InMemoryTransport()
    await transport.ensure_topics([PaymentFailed.topic])
    db = MemoryDatabase[None](None, publisher=transport.publisher(client_id="relay"))

    async def publish(tx: MemoryTransaction[None]) -> None:
        await OUTBOX.add(tx, failed("rolled-back"))

    with pytest.raises(Rollback):
        await rolled_back(db, publish)
    async with db.begin() as tx:
        envelopes = await OUTBOX.add(tx, failed("p1"), failed("p2"))
        assert transport.records(PaymentFailed.topic) == [], "not before the commit"

    published = transport.records(PaymentFailed.topic)
    assert [json.loads(r.value or b"")["data"]["payment_id"] for r in published] == ["p1", "p2"]
    assert [r.header("ce_id") for r in published] == [str(e.id) for e in envelopes]
    assert db.pending == []


async def test_events_the_broker_refuses_wait_and_go_out_after_the_next_commit() -> None:
    transport = InMemoryTransport()
    db = MemoryDatabase[None](None, publisher=transport.publisher(client_id="relay"))
    async with db.begin() as tx:  # the topic does not exist yet: refused
        await OUTBOX.add(tx, failed("p1"))
    assert len(db.pending) == 1

    await transport.ensure_topics([PaymentFailed.topic])
    async with db.begin() as tx:
        await OUTBOX.add(tx, failed("p2"))
    published = transport.records(PaymentFailed.topic)
    assert [json.loads(r.value or b"")["data"]["payment_id"] for r in published] == ["p1", "p2"]
    assert db.pending == []


async def test_stores_give_each_transaction_seen_through_the_services_store() -> None:
    @dataclass
    class Counter:
        tx: MemoryTransaction[dict[str, int]]

        def add(self) -> None:
            self.tx.state["n"] += 1

    db = MemoryDatabase[dict[str, int]]({"n": 0})
    stores = Stores(db, Counter)

    async def add_then_fail() -> None:
        async with stores.begin() as counter:
            counter.add()
            raise Rollback

    async with stores.begin() as counter:
        counter.add()
        counter.add()
    with pytest.raises(Rollback):
        await add_then_fail()

    assert await db.read() == {"n": 2}


async def test_what_waits_for_the_commit_runs_after_it_and_never_after_a_rollback() -> None:
    db = MemoryDatabase[dict[str, int]]({"n": 0})
    stores = Stores(db, TwinStore[dict[str, int]])
    heard: list[str] = []

    async def change_then_fail() -> None:
        async with stores.begin() as store:
            store.after_commit(lambda: heard.append("rolled back"))
            raise Rollback

    with pytest.raises(Rollback):
        await change_then_fail()
    async with stores.begin() as store:
        store.state["n"] += 1
        store.after_commit(lambda: heard.append(f"committed {db.commits}"))
        assert heard == []

    assert heard == ["committed 1"]
