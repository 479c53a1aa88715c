"""Abuse of holds: one user cannot hold every place, and overlapping retries of one request
answer one booking. Every test runs with request coalescing on and off."""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from datetime import timedelta

import asyncpg
import pytest
import pytest_asyncio

from booking import domain, handlers
from booking.main import rules_of
from booking.store import SqlStore
from booking_contracts.catalogue import Contact
from platform_runtime.http.context import runtime_of
from tests.support.brokers import MemoryBroker
from tests.support.fixtures import CreateDatabase
from tests.support.service import bearer

from .conftest import START, Service, serve, user

REFUSED = "you hold 5 unpaid bookings, the most allowed; pay or cancel one first"
"""The answer to a sixth unpaid hold under the default cap (5)."""


@pytest_asyncio.fixture(
    scope="module", loop_scope="session", params=[64, 1], ids=["coalesced", "alone"]
)
async def capped(
    request: pytest.FixtureRequest, create_database: CreateDatabase
) -> AsyncIterator[Service]:
    """A service with the default cap on unpaid holds; its concurrent creates written in
    shared transactions (``BOOKING_CREATE_BATCH_MAX=64``) or each alone (``1``)."""
    broker = MemoryBroker()
    async with serve(create_database, broker, create_batch_max=request.param) as service:
        yield service


def someone(role: str = "hoarder") -> str:
    """A user no other test of the module books for."""
    return f"{role}-{uuid.uuid4().hex[:8]}"


def ask(
    who: str, slot_id: uuid.UUID, *, admin: bool = False
) -> tuple[handlers.Caller, handlers.NewBooking]:
    request = handlers.NewBooking(slot_id=slot_id, contact=Contact(email=f"{who}@example.com"))
    return handlers.Caller(user_id=who, is_admin=admin), request


async def pending_of(service: Service, who: str) -> int:
    row = await service.row(
        "SELECT count(*) AS n FROM bookings WHERE user_id = $1 AND status = 'pending'", who
    )
    assert row is not None
    count: int = row["n"]
    return count


async def places_taken(service: Service, slot_ids: list[uuid.UUID]) -> int:
    row = await service.row(
        "SELECT sum(booked_count) AS n FROM slots WHERE id = ANY($1::uuid[])", slot_ids
    )
    assert row is not None
    taken: int = row["n"]
    return taken


# --- one user cannot hold every place ----------------------------------------------------


async def test_twenty_parallel_requests_of_one_user_make_exactly_five_holds(
    capped: Service,
) -> None:
    room = await capped.room()
    slots = await capped.slots(room, 20)
    who = someone()

    responses = await asyncio.gather(*(capped.book(slot, who) for slot in slots))

    assert Counter(r.status_code for r in responses) == {201: 5, 429: 15}
    refused = [r for r in responses if r.status_code == 429]
    assert {r.json()["detail"] for r in refused} == {REFUSED}
    assert {r.json()["type"] for r in refused} == {"urn:problem:too_many_unpaid_holds"}
    assert all(r.headers["content-type"] == "application/problem+json" for r in refused)
    assert await pending_of(capped, who) == 5
    assert await places_taken(capped, [s.slot_id for s in slots]) == 5  # refused: given back


async def test_another_user_still_books_when_one_user_is_at_the_cap(capped: Service) -> None:
    room = await capped.room()
    slots = await capped.slots(room, 6, max_bookings=2)
    who = someone()
    for slot in slots[:5]:
        await capped.booking(slot, who)

    mine = await capped.book(slots[5], who)
    theirs = await capped.book(slots[5], someone("neighbour"))

    assert mine.status_code == 429
    assert theirs.status_code == 201


async def test_a_hold_stops_counting_once_it_is_paid_cancelled_or_expired(
    capped: Service,
) -> None:
    room = await capped.room()
    slots = await capped.slots(room, 9)
    who = someone()
    held = [await capped.booking(slot, who) for slot in slots[:5]]
    full = await capped.book(slots[5], who)

    await capped.pay(held[0])
    await capped.status(held[0]["id"], "confirmed")
    after_paying = await capped.book(slots[5], who)
    full_again = await capped.book(slots[6], who)
    cancelled = await capped.http.post(f"/bookings/{held[1]['id']}/cancel", headers=user(who))
    after_cancelling = await capped.book(slots[6], who)
    await capped.fail_payment(held[2])
    await capped.status(held[2]["id"], "cancelled")
    after_a_failed_payment = await capped.book(slots[7], who)
    capped.clock.now = START + timedelta(minutes=16)  # every hold made so far runs out
    try:
        for booking in held[3:]:
            await capped.status(booking["id"], "expired")
        after_expiry = await capped.book(slots[8], who)
    finally:
        capped.clock.now = START

    assert (full.status_code, full_again.status_code) == (429, 429)
    assert cancelled.status_code == 200
    assert after_paying.status_code == 201
    assert after_cancelling.status_code == 201
    assert after_a_failed_payment.status_code == 201
    assert after_expiry.status_code == 201
    assert await pending_of(capped, who) == 1


async def test_an_admin_booking_for_themselves_is_not_capped(capped: Service) -> None:
    room = await capped.room()
    slots = await capped.slots(room, 8)
    admin = bearer(someone("admin"), ["admin"])

    responses = await asyncio.gather(
        *(
            capped.http.post("/bookings", json={"slot_id": str(s.slot_id)}, headers=admin)
            for s in slots
        )
    )

    assert [r.status_code for r in responses] == [201] * 8
    assert await places_taken(capped, [s.slot_id for s in slots]) == 8


async def test_a_retry_answers_its_booking_even_when_the_user_is_at_the_cap(
    capped: Service,
) -> None:
    room = await capped.room()
    slots = await capped.slots(room, 6)
    who = someone()
    keys = [{"Idempotency-Key": f"key-{uuid.uuid4()}"} for _ in slots]
    first = [
        await capped.book(slot, who, headers=key) for slot, key in zip(slots, keys, strict=True)
    ]

    retries = await asyncio.gather(
        *(capped.book(slot, who, headers=key) for slot, key in zip(slots, keys, strict=True))
    )

    assert [r.status_code for r in first] == [201] * 5 + [429]
    assert [r.status_code for r in retries] == [201] * 5 + [429]
    assert [r.json()["id"] for r in retries[:5]] == [r.json()["id"] for r in first[:5]]
    assert all(r.headers["idempotent-replayed"] == "true" for r in retries[:5])
    assert retries[5].json()["detail"] == REFUSED


async def test_a_batch_gives_a_user_no_more_holds_than_the_cap_and_makes_the_rest_alone(
    capped: Service,
) -> None:
    room = await capped.room()
    slots = await capped.slots(room, 8)
    ids = [slot.slot_id for slot in slots]
    who, other, admin = someone(), someone("neighbour"), someone("admin")
    for slot in slots[:3]:
        await capped.booking(slot, who)
    runtime = runtime_of(capped.app)
    rules = rules_of(capped.settings)
    batch = [
        ask(who, ids[3]),  # the fourth hold
        ask(who, ids[4]),  # the fifth
        ask(who, ids[5]),  # a sixth: alone (learns why), and takes no place in the batch
        ask(other, ids[5]),  # so the one place of this slot is still there for another user
        ask(who, ids[6]),  # a sixth again: alone; the place the batch took for it goes back
        ask(admin, ids[7], admin=True),  # not capped: alone, in a transaction of its own
    ]

    async with runtime.sessions.begin() as session:
        outcomes = await handlers.create_many(
            SqlStore(session), runtime.outbox, batch, now=START, rules=rules
        )
    alone = await asyncio.gather(
        *(
            handlers.create_idempotently(
                runtime.stores(SqlStore), runtime.outbox, *batch[i], now=START, rules=rules
            )
            for i in (4, 5)  # a sixth (its place is free), the admin's
        ),
        return_exceptions=True,
    )

    fourth, fifth, sixth, others, sixth_again, admins = outcomes
    assert isinstance(fourth, handlers.Created)
    assert isinstance(fifth, handlers.Created)
    assert isinstance(others, handlers.Created)
    assert others.booking.user_id == other
    assert (sixth, sixth_again, admins) == (None, None, None)
    refused, admitted = alone
    assert isinstance(refused, domain.TooManyUnpaidHolds)
    assert str(refused) == REFUSED
    assert isinstance(admitted, handlers.Created)
    assert admitted.booking.user_id == admin
    assert await pending_of(capped, who) == 5
    assert [await capped.booked(slot_id) for slot_id in ids[3:]] == [1, 1, 1, 0, 1]


async def test_after_the_cap_was_lowered_a_refusal_counts_every_hold_of_the_user(
    capped: Service,
) -> None:
    room = await capped.room()
    slots = await capped.slots(room, 6)
    who = someone()
    for slot in slots[:5]:
        await capped.booking(slot, who)
    runtime = runtime_of(capped.app)
    lowered = dataclasses.replace(rules_of(capped.settings), max_unpaid_holds=3)

    with pytest.raises(domain.TooManyUnpaidHolds) as refused:
        await handlers.create_idempotently(
            runtime.stores(SqlStore),
            runtime.outbox,
            *ask(who, slots[5].slot_id),
            now=START,
            rules=lowered,
        )

    assert str(refused.value) == (
        "you hold 5 unpaid bookings, more than the 3 allowed; pay or cancel 3 first"
    )
    assert await capped.booked(slots[5].slot_id) == 0


async def test_the_database_refuses_a_hold_over_the_cap_whoever_writes(capped: Service) -> None:
    room = await capped.room()
    slots = await capped.slots(room, 6)
    who = someone()
    held = [await capped.booking(slot, who) for slot in slots[:5]]
    insert = """
        INSERT INTO bookings (id, user_id, room_id, slot_id, starts_at, ends_at, status,
            booking_type, price, currency, payment_status, contact_email, hold_expires_at)
        SELECT gen_random_uuid(), user_id, room_id, $2, starts_at, ends_at, 'pending',
            booking_type, price, currency, 'pending', contact_email, hold_expires_at
        FROM bookings WHERE id = $1
    """
    args = (uuid.UUID(held[0]["id"]), slots[5].slot_id)

    async with capped.db.acquire() as connection:
        transaction = connection.transaction()
        await transaction.start()
        try:
            await connection.execute("SELECT set_config('booking.max_unpaid_holds', '5', true)")
            with pytest.raises(asyncpg.CheckViolationError) as over:
                await connection.execute(insert, *args)
        finally:
            await transaction.rollback()
        transaction = connection.transaction(isolation="repeatable_read")
        await transaction.start()
        try:
            await connection.execute("SELECT set_config('booking.max_unpaid_holds', '9', true)")
            with pytest.raises(asyncpg.ObjectNotInPrerequisiteStateError) as snapshot:
                await connection.execute(insert, *args)
        finally:
            await transaction.rollback()

    assert over.value.constraint_name == "unpaid_holds_within_cap"
    assert "holds 5 unpaid bookings" in str(over.value)
    assert "READ COMMITTED" in str(snapshot.value)
    assert await pending_of(capped, who) == 5


# --- overlapping retries -----------------------------------------------------------------


async def test_thirty_overlapping_retries_of_one_request_all_answer_the_same_booking(
    capped: Service,
) -> None:
    room = await capped.room()
    (slot,) = await capped.slots(room, max_bookings=1)
    who = someone("retrier")
    key = {"Idempotency-Key": f"key-{uuid.uuid4()}"}

    responses = await asyncio.gather(*(capped.book(slot, who, headers=key) for _ in range(30)))

    assert Counter(r.status_code for r in responses) == {201: 30}
    assert len({r.json()["id"] for r in responses}) == 1
    assert Counter(r.headers.get("idempotent-replayed") for r in responses) == {
        None: 1,
        "true": 29,
    }
    assert await capped.booked(slot.slot_id) == 1
    assert await pending_of(capped, who) == 1
