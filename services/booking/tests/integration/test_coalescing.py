"""Concurrent creates of one process written together: each still succeeds or fails alone."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from typing import Any

from booking import domain, handlers
from booking.coalescing import CreateCoalescer
from booking.main import rules_of
from booking.store import SqlStore
from booking_contracts.catalogue import Contact
from platform_runtime.http.context import context_of, runtime_of
from platform_runtime.transactions import SqlTransactions, Stores

from .conftest import START, Service, types


def ask(
    who: str, slot_id: uuid.UUID, key: str | None = None, notes: str = ""
) -> tuple[handlers.Caller, handlers.NewBooking]:
    request = handlers.NewBooking(
        slot_id=slot_id,
        contact=Contact(email=f"{who}@example.com"),
        notes=notes,
        idempotency_key=key,
    )
    return handlers.Caller(user_id=who), request


async def test_one_batch_settles_each_request_on_its_own(service: Service) -> None:
    room = await service.room()
    single, shared, other = await service.slots(room, 3, max_bookings=1)
    await service.row("UPDATE slots SET max_bookings = 5 WHERE id = $1", shared.slot_id)
    earlier = await service.book(
        other, "frank", headers={"Idempotency-Key": "k-old"}, notes="first"
    )
    assert earlier.status_code == 201
    runtime = runtime_of(service.app)
    batch = [
        ask("ann", single.slot_id),  # the place
        ask("bob", single.slot_id),  # no place left for him: full
        ask("cid", shared.slot_id, key="k1"),
        ask("cid", shared.slot_id, key="k1"),  # the key twice in a batch: alone, replays
        ask("dan", uuid.uuid4()),  # unknown slot: alone (learns why)
        ask("eve", shared.slot_id),
        ask("eve", shared.slot_id),  # already holds a place there
        ask("frank", other.slot_id, key="k-old", notes="first"),  # a retry: replayed
        ask("frank", other.slot_id, key="k-old", notes="changed"),  # key reused
    ]

    async with runtime.sessions.begin() as session:
        outcomes = await handlers.create_many(
            SqlStore(session), runtime.outbox, batch, now=START, rules=rules_of(service.settings)
        )

    ann, bob, cid, cid_again, dan, eve, eve_again, retry, reused = outcomes
    assert isinstance(ann, handlers.Created)
    assert not ann.replayed
    assert ann.booking.user_id == "ann"
    assert isinstance(bob, domain.SlotUnavailable)
    assert str(bob) == f"slot {single.slot_id} is full (1 place)"
    assert (cid_again, dan) == (None, None)
    assert isinstance(cid, handlers.Created)
    assert cid.booking.idempotency_key == "k1"
    assert isinstance(eve, handlers.Created)
    assert isinstance(eve_again, domain.SlotUnavailable)
    assert "already hold" in str(eve_again)
    assert isinstance(retry, handlers.Created)
    assert retry.replayed
    assert str(retry.booking.id) == earlier.json()["id"]
    assert isinstance(reused, domain.IdempotencyConflict)
    assert await service.booked(single.slot_id) == 1
    assert await service.booked(shared.slot_id) == 2  # cid and eve; eve's second went back
    assert await service.booked(other.slot_id) == 1
    for created in (ann, cid, eve):
        events = await service.events(str(created.booking.id), at_least=1)
        assert types(events) == ["BookingCreated.v1"]


async def test_concurrent_requests_share_transactions_and_never_exceed_the_places(
    service: Service,
) -> None:
    room = await service.room()
    (hot,) = await service.slots(room, max_bookings=12)
    distinct = await service.slots(room, 20, starts_at=service.day())
    coalescer: CreateCoalescer = context_of(service.app).config.coalescer
    before = coalescer.batches

    crowd = [service.book(hot, f"crowd-{i}") for i in range(40)]
    spread = [service.book(slot, f"spread-{i}") for i, slot in enumerate(distinct)]
    responses = await asyncio.gather(*crowd, *spread)

    hot_codes = Counter(r.status_code for r in responses[:40])
    assert hot_codes == {201: 12, 409: 28}
    assert all("full" in r.json()["detail"] for r in responses[:40] if r.status_code == 409)
    assert {r.status_code for r in responses[40:]} == {201}
    assert coalescer.batches > before, "the requests were written in shared transactions"
    assert await service.booked(hot.slot_id) == 12
    rows = await service.row(
        "SELECT count(*) AS n FROM bookings WHERE slot_id = ANY($1::uuid[])",
        [hot.slot_id, *(s.slot_id for s in distinct)],
    )
    assert rows == {"n": 32}


class FirstTransactionFails(SqlTransactions):
    """The service's transactions, except that the first one (the batch's) breaks."""

    def __init__(self, service: SqlTransactions) -> None:
        super().__init__(service.sessions, service.inbox_table)
        self.began = 0

    def begin(self) -> Any:
        self.began += 1
        if self.began == 1:
            raise ConnectionError("the batch's connection broke")
        return super().begin()


async def test_a_batch_that_fails_as_a_whole_makes_each_request_alone(service: Service) -> None:
    room = await service.room()
    first, second = await service.slots(room, 2)
    runtime = runtime_of(service.app)
    transactions = FirstTransactionFails(SqlTransactions(runtime.sessions, runtime.inbox_table))
    coalescer = CreateCoalescer(
        Stores(transactions, SqlStore), runtime.outbox, rules_of(service.settings)
    )

    made = await asyncio.gather(
        coalescer.create(*ask("yan", first.slot_id), now=START),
        coalescer.create(*ask("zed", second.slot_id), now=START),
    )

    assert [m.booking.user_id for m in made] == ["yan", "zed"]
    assert transactions.began == 3  # the batch's, then one each
    assert coalescer.batches == 0
    assert await service.booked(first.slot_id) == 1
    assert await service.booked(second.slot_id) == 1


async def test_a_user_at_the_cap_is_refused_by_the_batch_itself(service: Service) -> None:
    # Refused in the batch's own transaction (the user's holds are locked and counted there),
    # not made alone afterwards: a user at the cap who keeps asking costs no transaction each.
    rules = rules_of(service.settings)
    room = await service.room()
    slots = await service.slots(room, rules.max_unpaid_holds + 2)
    for slot in slots[: rules.max_unpaid_holds]:
        assert (await service.book(slot, "gil")).status_code == 201
    runtime = runtime_of(service.app)
    batch = [ask("gil", slots[-2].slot_id), ask("hal", slots[-1].slot_id)]

    async with runtime.sessions.begin() as session:
        gil, hal = await handlers.create_many(
            SqlStore(session), runtime.outbox, batch, now=START, rules=rules
        )

    assert isinstance(gil, domain.TooManyUnpaidHolds)
    assert (gil.held, gil.most) == (rules.max_unpaid_holds, rules.max_unpaid_holds)
    assert isinstance(hal, handlers.Created)
    assert await service.booked(slots[-2].slot_id) == 0  # the place gil asked for went back
    assert await service.booked(slots[-1].slot_id) == 1


async def test_a_full_slot_is_refused_by_the_batch_itself_unless_a_place_goes_back(
    service: Service,
) -> None:
    # A sold-out slot's requests are refused in the batch (the slot is locked there): after a
    # sell-out, each further request costs no transaction of its own. Where a place of the
    # slot goes back in the batch (its taker already held the slot), a request the batch
    # found no place for is made alone, and gets that place.
    room = await service.room()
    sold, one_left = await service.slots(room, 2, max_bookings=2)
    for who in ("ivy", "jon"):
        assert (await service.book(sold, who)).status_code == 201
    assert (await service.book(one_left, "kim")).status_code == 201
    runtime = runtime_of(service.app)
    batch = [
        ask("lea", sold.slot_id),
        ask("kim", one_left.slot_id),  # holds it already: the place goes back
        ask("max", one_left.slot_id),  # no place in the batch, but one went back
    ]

    async with runtime.sessions.begin() as session:
        lea, kim, max_ = await handlers.create_many(
            SqlStore(session), runtime.outbox, batch, now=START, rules=rules_of(service.settings)
        )

    assert isinstance(lea, domain.SlotUnavailable)
    assert str(lea) == f"slot {sold.slot_id} is full (2 places)"
    assert isinstance(kim, domain.SlotUnavailable)
    assert "already hold" in str(kim)
    assert max_ is None  # made alone
    assert await service.booked(sold.slot_id) == 2
    assert await service.booked(one_left.slot_id) == 1
