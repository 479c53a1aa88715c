"""Every use case of the booking service, through the in-memory broker and its store twin
held in the process: the copy of the inventory, holds (alone, in batches, with keys, capped),
payments (confirming, failing, returned when no booking takes them), cancellation with its
refund, rescheduling, completion, hold expiry, quotas and the waitlist. The service suites
run the same behaviour on PostgreSQL and Kafka."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import pytest_asyncio

from booking import consumers, domain, handlers, models
from booking.domain import Action, BookingStatus, PaymentStatus
from booking.memory import BookingState, MemoryStore
from booking_contracts import topics
from booking_contracts.catalogue import (
    BookingQuota,
    Contact,
    PaymentFailed,
    PaymentSucceeded,
    QuotaPeriod,
    RefundFailed,
    RefundSucceeded,
    RoomDeactivated,
    RoomRules,
    RoomRulesSet,
    RoomSnapshot,
    RoomType,
    RoomUpserted,
    SlotChanged,
    SlotsGenerated,
    SlotSnapshot,
    SlotStatus,
)
from booking_contracts.envelope import Event
from booking_contracts.money import Money
from platform_runtime.memorydb import MemoryDatabase, MemoryTransaction
from platform_runtime.outbox import Outbox
from platform_runtime.transactions import Stores
from tests.support.memory_service import MemoryService

Service = MemoryService[BookingState]
OUTBOX = Outbox(models.outbox, source="/booking")
NOW = datetime(2031, 4, 1, 9, tzinfo=UTC)
HOUR = timedelta(hours=1)
PRICE = Money.of("20.00", "EUR")
RULES = handlers.Rules(max_unpaid_holds=2)
ADA, BOB = handlers.Caller("ada"), handlers.Caller("bob")
ADMIN = handlers.Caller("admin-1", is_admin=True)


@pytest_asyncio.fixture
async def service() -> AsyncIterator[Service]:
    running = MemoryService(MemoryDatabase(BookingState()))
    clock = lambda: NOW  # noqa: E731
    consumers.register_inventory(
        running.consumer(consumers.INVENTORY_CONSUMER), MemoryStore, OUTBOX, clock
    )
    consumers.register_payments(
        running.consumer(consumers.PAYMENTS_CONSUMER, permanent_errors=(domain.BookingError,)),
        MemoryStore,
        OUTBOX,
        clock,
        running.metrics,
    )
    async with running.running(topics.BOOKING_EVENTS):
        yield running


def stores(service: Service) -> Stores[MemoryTransaction[BookingState], MemoryStore]:
    return Stores(service.db, MemoryStore)


async def inventory(service: Service, *events: Event) -> None:
    for event in events:
        await service.applied(await service.publish(event, at=NOW, source="/timeslots"))


async def room(service: Service, *slots: SlotSnapshot, **rules: Any) -> uuid.UUID:
    """A room with ``slots`` (their room id replaced), as the timeslot service announces it."""
    room_id = uuid.uuid4()
    snapshot = RoomSnapshot(
        room_id=room_id,
        name="Room 7",
        room_type=RoomType.MEETING,
        capacity=4,
        time_zone="Europe/Berlin",
        hourly_rate=PRICE,
        active=True,
    )
    events: list[Event] = [
        RoomUpserted(room_id=room_id, room=snapshot, room_version=1),
        RoomRulesSet(room_id=room_id, rules=RoomRules(**rules), room_version=2),
    ]
    if slots:
        moved = [s.model_copy(update={"room_id": room_id}) for s in slots]
        events.append(SlotsGenerated(room_id=room_id, slots=moved))
    await inventory(service, *events)
    return room_id


def slot(
    *, starts_in: timedelta = 48 * HOUR, places: int = 1, price: Money = PRICE
) -> SlotSnapshot:
    return SlotSnapshot(
        slot_id=uuid.uuid4(),
        room_id=uuid.uuid4(),
        starts_at=NOW + starts_in,
        ends_at=NOW + starts_in + HOUR,
        price=price,
        max_bookings=places,
        status=SlotStatus.OPEN,
        revision=1,
    )


def ask(slot_: SlotSnapshot, key: str | None = None) -> handlers.NewBooking:
    return handlers.NewBooking(
        slot_id=slot_.slot_id, contact=Contact(email="ada@example.com"), idempotency_key=key
    )


async def book(
    service: Service, slot_: SlotSnapshot, caller: handlers.Caller = ADA, key: str | None = None
) -> handlers.Created:
    async with stores(service).begin() as store:
        return await handlers.create(store, OUTBOX, caller, ask(slot_, key), now=NOW, rules=RULES)


async def booking(service: Service, booking_id: uuid.UUID) -> domain.Booking:
    async with stores(service).begin() as store:
        return await store.get_booking(booking_id)


async def pay(service: Service, made: domain.Booking, payment_id: str = "pay-1") -> None:
    paid = PaymentSucceeded(booking_id=made.id, payment_id=payment_id, amount=made.price)
    await service.applied(await service.publish(paid, at=NOW, source="/payments"))


async def events_of(service: Service, topic: str, *, at_least: int) -> list[str]:
    return [e["type"] for e in await service.events(topic, at_least=at_least)]


async def refunds_asked(service: Service, *, at_least: int) -> list[dict[str, Any]]:
    """The ``RefundRequested`` the service published (on its events, for the payment service)."""
    for _ in range(100):
        found = [
            e
            for e in await service.events(topics.BOOKING_EVENTS, at_least=1)
            if e["type"] == "RefundRequested.v1"
        ]
        if len(found) >= at_least:
            return found
        await asyncio.sleep(0.02)
    raise AssertionError(f"fewer than {at_least} refunds asked: {found}")


# --- inventory and holds -------------------------------------------------------------------


async def test_a_room_and_its_slots_arrive_by_events_and_are_bookable_until_it_closes(
    service: Service,
) -> None:
    first, second = slot(), slot(starts_in=49 * HOUR)
    room_id = await room(service, first, second)
    async with stores(service).begin() as store:
        the_room, open_ = await handlers.bookable_slots(
            store, ADA, room_id, (NOW + 48 * HOUR).date(), now=NOW
        )
    assert the_room.name == "Room 7"
    assert [s.id for s in open_] == [first.slot_id, second.slot_id]

    closed = RoomDeactivated(room_id=room_id, deactivated_at=NOW, room_version=3)
    await inventory(service, closed)
    async with stores(service).begin() as store:
        _, none = await handlers.bookable_slots(
            store, ADA, room_id, (NOW + 48 * HOUR).date(), now=NOW
        )
        with pytest.raises(domain.RoomNotFound):
            await handlers.bookable_slots(store, ADA, uuid.uuid4(), NOW.date(), now=NOW)
    assert none == []


async def test_a_hold_is_made_once_per_key_and_refused_when_taken_full_or_over_the_cap(
    service: Service,
) -> None:
    one, two, three = slot(places=2), slot(), slot()
    await room(service, one, two, three)
    made = await book(service, one, key="k1")
    again = await book(service, one, key="k1")
    assert (made.replayed, again.replayed, again.booking.id) == (False, True, made.booking.id)
    with pytest.raises(domain.SlotUnavailable, match="already hold"):
        await book(service, one)
    with pytest.raises(domain.IdempotencyConflict):
        await book(service, two, key="k1")
    await book(service, one, BOB)
    with pytest.raises(domain.SlotUnavailable, match="is full"):
        await book(service, one, handlers.Caller("cid"))
    await book(service, two)
    with pytest.raises(domain.TooManyUnpaidHolds):
        await book(service, three)
    assert (await book(service, three, ADMIN)).booking.status is BookingStatus.PENDING
    assert (await events_of(service, topics.BOOKING_EVENTS, at_least=4)).count(
        "BookingCreated.v1"
    ) == 4


async def test_a_batch_of_holds_gives_each_request_its_own_outcome(service: Service) -> None:
    roomy, tight = slot(places=3), slot(places=1)
    await room(service, roomy, tight)
    requests = [
        (ADA, ask(roomy)),
        (BOB, ask(roomy)),
        (handlers.Caller("cid"), ask(tight)),
        (handlers.Caller("dan"), ask(tight)),
    ]
    async with stores(service).begin() as store:
        outcomes = await handlers.create_many(store, OUTBOX, requests, now=NOW, rules=RULES)
    made = [o for o in outcomes if isinstance(o, handlers.Created)]
    assert len(made) == 3
    assert isinstance(outcomes[3], domain.SlotUnavailable)
    alone = await handlers.create_idempotently(
        stores(service), OUTBOX, handlers.Caller("eve"), ask(roomy), now=NOW, rules=RULES
    )
    assert alone.booking.slot_id == roomy.slot_id


async def test_a_quota_refuses_a_second_booking_in_its_window(service: Service) -> None:
    morning, evening = slot(), slot(starts_in=50 * HOUR)
    await room(service, morning, evening, quotas=[BookingQuota(most=1, per=QuotaPeriod.DAY)])
    await book(service, morning)
    with pytest.raises(domain.RuleBroken):
        await book(service, evening)


# --- payments ---------------------------------------------------------------------------------


async def test_a_payment_confirms_its_booking_and_money_no_booking_takes_goes_back(
    service: Service,
) -> None:
    one = slot()
    await room(service, one)
    made = (await book(service, one)).booking
    await pay(service, made)
    await pay(service, made, "pay-2")  # a second payment of the same booking
    confirmed = await booking(service, made.id)
    assert (confirmed.status, confirmed.payment_id, confirmed.payment_status) == (
        BookingStatus.CONFIRMED,
        "pay-1",
        PaymentStatus.REFUND_PENDING,  # the second payment goes back
    )
    stray = PaymentSucceeded(booking_id=uuid.uuid4(), payment_id="pay-lost", amount=PRICE)
    await service.applied(await service.publish(stray, at=NOW, source="/payments"))
    commands = await refunds_asked(service, at_least=2)
    assert sorted(c["data"]["payment_id"] for c in commands) == ["pay-2", "pay-lost"]
    assert "BookingConfirmed.v1" in await events_of(service, topics.BOOKING_EVENTS, at_least=2)


async def test_a_failed_payment_cancels_the_hold_and_frees_its_place(service: Service) -> None:
    one = slot()
    await room(service, one)
    made = (await book(service, one)).booking
    failed = PaymentFailed(booking_id=made.id, payment_id="pay-x", reason="card declined")
    await service.applied(await service.publish(failed, at=NOW, source="/payments"))
    assert (await booking(service, made.id)).status is BookingStatus.CANCELLED
    assert (await book(service, one, BOB)).booking.status is BookingStatus.PENDING


# --- after payment ----------------------------------------------------------------------------


async def test_a_cancellation_refunds_by_policy_and_the_refund_settles(service: Service) -> None:
    one = slot(starts_in=30 * 24 * HOUR)
    await room(service, one)
    made = (await book(service, one)).booking
    await pay(service, made)
    async with stores(service).begin() as store:
        _, quote = await handlers.refund_quote(store, ADA, made.id, now=NOW, rules=RULES)
        cancelled = await handlers.cancel(
            store, OUTBOX, ADA, made.id, reason="plans changed", now=NOW, rules=RULES
        )
        with pytest.raises(domain.BookingNotFound):
            await handlers.visible_booking(store, BOB, made.id)
    assert quote.amount == PRICE
    assert (cancelled.status, cancelled.payment_status) == (
        BookingStatus.CANCELLED,
        PaymentStatus.REFUND_PENDING,
    )
    [command] = await refunds_asked(service, at_least=1)
    outcome = {
        "booking_id": made.id,
        "payment_id": command["data"]["payment_id"],
        "refund_id": uuid.UUID(command["data"]["refund_id"]),
        "amount": PRICE,
    }
    failed = RefundFailed(**outcome, reason="card expired")
    await service.applied(await service.publish(failed, at=NOW, source="/payments"))
    assert (await booking(service, made.id)).payment_status is PaymentStatus.REFUND_FAILED
    refunded = RefundSucceeded(**outcome)  # the payment service tried again
    await service.applied(await service.publish(refunded, at=NOW, source="/payments"))
    assert (await booking(service, made.id)).payment_status is PaymentStatus.REFUNDED


async def test_a_move_to_a_cheaper_slot_refunds_the_difference_and_a_finished_booking_ends(
    service: Service,
) -> None:
    dear, cheap = slot(), slot(starts_in=72 * HOUR, price=Money.of("15.00", "EUR"))
    await room(service, dear, cheap)
    made = (await book(service, dear)).booking
    await pay(service, made)
    async with stores(service).begin() as store:
        moved = await handlers.reschedule(
            store, OUTBOX, ADA, made.id, new_slot_id=cheap.slot_id, now=NOW
        )
        done = await handlers.finish(
            store, OUTBOX, made.id, action=Action.COMPLETE, now=NOW + 73 * HOUR
        )
    assert (moved.slot_id, moved.price, moved.refund) == (
        cheap.slot_id,
        Money.of("15.00", "EUR"),
        Money.of("5.00", "EUR"),
    )
    assert done.status is BookingStatus.COMPLETED
    types = await events_of(service, topics.BOOKING_EVENTS, at_least=4)
    assert {"BookingRescheduled.v1", "BookingCompleted.v1"} <= set(types)


async def test_an_unpaid_hold_expires_and_its_place_is_free_again(service: Service) -> None:
    one = slot()
    await room(service, one)
    made = (await book(service, one)).booking
    async with stores(service).begin() as store:
        expired = await handlers.expire_holds(store, OUTBOX, now=NOW + HOUR, limit=10)
    assert expired == 1
    assert (await booking(service, made.id)).status is BookingStatus.EXPIRED
    assert (await book(service, one, BOB)).replayed is False


# --- the waitlist ------------------------------------------------------------------------------


async def test_a_freed_place_is_offered_to_the_first_waiter_who_books_it(service: Service) -> None:
    full = slot()
    await room(service, full)
    held = (await book(service, full)).booking
    waiter = Contact(email="bob@example.com")
    async with stores(service).begin() as store:
        joined = await handlers.join_waitlist(
            store, OUTBOX, BOB, full.slot_id, waiter, now=NOW, rules=RULES
        )
        cid = await handlers.join_waitlist(
            store, OUTBOX, handlers.Caller("cid"), full.slot_id, waiter, now=NOW, rules=RULES
        )
        place = await handlers.my_place_in_line(store, BOB, full.slot_id)
        await handlers.cancel(store, OUTBOX, ADA, held.id, reason=None, now=NOW, rules=RULES)
    assert (joined.position, cid.position, place.position) == (1, 2, 1)
    async with stores(service).begin() as store:
        offer = await store.get_entry(joined.entry.id)
        assert offer is not None
        assert offer.status is domain.WaitlistStatus.OFFERED
        taken = await handlers.book_offer(
            store, OUTBOX, BOB, ask(full), offer.id, now=NOW, rules=RULES
        )
        left = await handlers.leave_waitlist(
            store, OUTBOX, handlers.Caller("cid"), full.slot_id, now=NOW
        )
    assert taken.booking.user_id == "bob"
    assert left.status is domain.WaitlistStatus.LEFT
    types = await events_of(service, topics.BOOKING_EVENTS, at_least=6)
    assert {"WaitlistJoined.v1", "WaitlistOfferMade.v1", "WaitlistOfferTaken.v1"} <= set(types)


async def test_an_offer_that_runs_out_lapses_and_new_capacity_goes_to_the_line(
    service: Service,
) -> None:
    full = slot()
    room_id = await room(service, full)
    await book(service, full)
    waiter = Contact(email="bob@example.com")
    async with stores(service).begin() as store:
        joined = await handlers.join_waitlist(
            store, OUTBOX, BOB, full.slot_id, waiter, now=NOW, rules=RULES
        )
    bigger = full.model_copy(update={"room_id": room_id, "max_bookings": 2, "revision": 2})
    await inventory(service, SlotChanged(room_id=room_id, slot=bigger))
    async with stores(service).begin() as store:
        offered = await store.get_entry(joined.entry.id)
        assert offered is not None
        assert offered.status is domain.WaitlistStatus.OFFERED
        changed = await handlers.sweep_waitlists(store, OUTBOX, now=NOW + 2 * HOUR, limit=10)
        lapsed = await store.get_entry(joined.entry.id)
    assert changed >= 1
    assert lapsed is not None
    assert lapsed.status is domain.WaitlistStatus.LAPSED
