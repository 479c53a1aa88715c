"""The contract of the booking service's store, as far as its twin goes so far (the copy of
the inventory and the places taken in it): the same cases against the SQL store on PostgreSQL
(``services/booking/tests/integration/test_sql_store.py``) and the twin held in the process
(``services/booking/tests/unit/test_memory_store.py``).

A test module subclasses :class:`StoreContract` and gives the fixture ``stores``: a
:class:`~platform_runtime.transactions.Stores` on an empty database of the service.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from booking import domain
from booking_contracts.catalogue import (
    Actor,
    BookingQuota,
    Contact,
    QuotaPeriod,
    RoomRules,
    RoomSnapshot,
    RoomType,
    SlotSnapshot,
    SlotStatus,
)
from booking_contracts.money import Money
from platform_runtime.transactions import Stores

AnyStores = Stores[Any, Any]
NOW = datetime(2031, 5, 1, 12, tzinfo=UTC)
HOUR = timedelta(hours=1)
PRICE = Money.of("20.00", "EUR")


def snapshot(room_id: uuid.UUID, name: str = "Room 1", *, active: bool = True) -> RoomSnapshot:
    return RoomSnapshot(
        room_id=room_id,
        name=name,
        room_type=RoomType.MEETING,
        capacity=4,
        time_zone="Europe/Berlin",
        hourly_rate=PRICE,
        active=active,
    )


def slot(
    room_id: uuid.UUID,
    *,
    starts_in: timedelta = 24 * HOUR,
    places: int = 2,
    revision: int = 1,
    status: SlotStatus = SlotStatus.OPEN,
    slot_id: uuid.UUID | None = None,
) -> SlotSnapshot:
    return SlotSnapshot(
        slot_id=slot_id or uuid.uuid4(),
        room_id=room_id,
        starts_at=NOW + starts_in,
        ends_at=NOW + starts_in + HOUR,
        price=PRICE,
        max_bookings=places,
        status=status,
        revision=revision,
    )


async def room_with(stores: AnyStores, *slots_: SlotSnapshot, **rules: Any) -> uuid.UUID:
    """A known, active room with ``slots_`` (their room id is replaced) and ``rules``."""
    room_id = uuid.uuid4()
    async with stores.begin() as store:
        await store.upsert_room(snapshot(room_id), version=1, as_of=NOW)
        if rules:
            await store.set_room_rules(room_id, RoomRules(**rules), version=1, as_of=NOW)
        await store.upsert_slots([s.model_copy(update={"room_id": room_id}) for s in slots_])
    return room_id


async def room(stores: AnyStores, room_id: uuid.UUID) -> domain.Room | None:
    async with stores.begin() as store:
        found: domain.Room | None = await store.get_room(room_id)
        return found


async def booked(stores: AnyStores, slot_id: uuid.UUID) -> int:
    async with stores.begin() as store:
        return int((await store.get_slot(slot_id)).booked_count)


async def take(stores: AnyStores, slot_id: uuid.UUID, *, now: datetime = NOW) -> domain.Place:
    async with stores.begin() as store:
        place: domain.Place = await store.take_place(slot_id, now=now)
        return place


class StoreContract:
    """The cases (the test module gives the fixture ``stores``, on an empty database)."""

    # --- the copy of the inventory -------------------------------------------------------

    async def test_a_rooms_state_follows_its_newest_event_and_a_placeholder_takes_a_name(
        self, stores: AnyStores
    ) -> None:
        early, late = uuid.uuid4(), uuid.uuid4()
        async with stores.begin() as store:
            await store.deactivate_room(early, version=2, as_of=NOW)  # seen before the room
            await store.upsert_room(snapshot(early, active=True), version=1, as_of=NOW)
            await store.upsert_room(snapshot(late), version=3, as_of=NOW)
            await store.upsert_room(snapshot(late, "Old name", active=False), version=2, as_of=NOW)
            await store.upsert_room(snapshot(late, "Newer"), version=0, as_of=NOW + HOUR)
            both = await store.get_rooms([early, late, uuid.uuid4()])
        assert (both[early].name, both[early].active) == ("Room 1", False)
        assert (both[late].name, both[late].active, both[late].room_type) == (
            "Room 1",
            True,
            "meeting",
        )
        assert len(both) == 2

    async def test_rules_follow_their_own_versions_and_rules_seen_first_take_nothing(
        self, stores: AnyStores
    ) -> None:
        room_id = uuid.uuid4()
        async with stores.begin() as store:
            await store.set_room_rules(
                room_id, RoomRules(book_notice_minutes=60), version=2, as_of=NOW
            )
            placeholder = await store.get_room(room_id)
            await store.set_room_rules(
                room_id, RoomRules(book_notice_minutes=5), version=1, as_of=NOW
            )
            await store.upsert_room(snapshot(room_id), version=1, as_of=NOW)
        assert placeholder is not None
        assert (placeholder.name, placeholder.active) == ("", False)
        named = await room(stores, room_id)
        assert named is not None
        assert (named.name, named.rules.book_notice) == ("Room 1", HOUR)

    async def test_a_newer_slot_revision_replaces_an_older_one_but_never_its_places_taken(
        self, stores: AnyStores
    ) -> None:
        first = slot(uuid.uuid4())
        room_id = await room_with(stores, first)
        await take(stores, first.slot_id)
        async with stores.begin() as store:
            await store.upsert_slots(
                [
                    first.model_copy(update={"room_id": room_id, "max_bookings": 5, "revision": 3}),
                ]
            )
            await store.upsert_slots(
                [first.model_copy(update={"room_id": room_id, "max_bookings": 9, "revision": 2})]
            )
            got = await store.get_slot(first.slot_id)
            with pytest.raises(domain.SlotNotFound):
                await store.get_slot(room_id)
        assert (got.max_bookings, got.booked_count) == (5, 1)

    async def test_a_rooms_slots_are_read_by_start_and_locked_if_known(
        self, stores: AnyStores
    ) -> None:
        later, earlier = slot(uuid.uuid4(), starts_in=30 * HOUR), slot(uuid.uuid4())
        room_id = await room_with(stores, later, earlier)
        span = domain.Span(NOW, NOW + 48 * HOUR, "two days")
        async with stores.begin() as store:
            found = await store.slots_between(room_id, span)
            locked = await store.lock_slots([later.slot_id, uuid.uuid4()])
            one = await store.lock_slot(earlier.slot_id, share=True)
        assert [s.id for s in found] == [earlier.slot_id, later.slot_id]
        assert list(locked) == [later.slot_id]
        assert one.id == earlier.slot_id

    # --- places --------------------------------------------------------------------------

    async def test_places_are_taken_until_the_slot_is_full_and_given_back(
        self, stores: AnyStores
    ) -> None:
        open_ = slot(uuid.uuid4(), places=2)
        await room_with(stores, open_)
        first = await take(stores, open_.slot_id)
        await take(stores, open_.slot_id)
        with pytest.raises(domain.SlotUnavailable, match="is full"):
            await take(stores, open_.slot_id)
        async with stores.begin() as store:
            await store.release_places([open_.slot_id, open_.slot_id])
        assert (first.slot.booked_count, first.room.name) == (1, "Room 1")
        assert await booked(stores, open_.slot_id) == 0

    async def test_a_place_is_refused_with_the_reason(self, stores: AnyStores) -> None:
        started = slot(uuid.uuid4(), starts_in=-HOUR)
        blocked = slot(uuid.uuid4(), status=SlotStatus.BLOCKED)
        soon = slot(uuid.uuid4(), starts_in=HOUR / 2)
        await room_with(stores, started, blocked, soon, book_notice_minutes=60)
        orphan = slot(uuid.uuid4())
        async with stores.begin() as store:
            await store.upsert_slots([orphan])
        with pytest.raises(domain.SlotUnavailable, match="already started"):
            await take(stores, started.slot_id)
        with pytest.raises(domain.SlotUnavailable, match="is blocked"):
            await take(stores, blocked.slot_id)
        with pytest.raises(domain.RuleBroken):
            await take(stores, soon.slot_id)
        with pytest.raises(domain.SlotUnavailable, match="not known here yet"):
            await take(stores, orphan.slot_id)
        with pytest.raises(domain.SlotNotFound):
            await take(stores, uuid.uuid4())

    async def test_an_inactive_room_takes_no_bookings(self, stores: AnyStores) -> None:
        open_ = slot(uuid.uuid4())
        room_id = await room_with(stores, open_)
        async with stores.begin() as store:
            await store.deactivate_room(room_id, version=2, as_of=NOW)
        with pytest.raises(domain.SlotUnavailable, match="inactive"):
            await take(stores, open_.slot_id)

    async def test_places_for_a_batch_are_what_each_slot_has_left(self, stores: AnyStores) -> None:
        roomy, tight = slot(uuid.uuid4(), places=3), slot(uuid.uuid4(), places=1)
        await room_with(stores, roomy, tight)
        quota = BookingQuota(most=1, per=QuotaPeriod.DAY)
        counted = slot(uuid.uuid4())
        await room_with(stores, counted, quotas=[quota])
        async with stores.begin() as store:
            taken = await store.take_places(
                {roomy.slot_id: 2, tight.slot_id: 2, counted.slot_id: 1, uuid.uuid4(): 1},
                now=NOW,
            )
        assert {s: n for s, (_, n) in taken.places.items()} == {roomy.slot_id: 2, tight.slot_id: 1}
        assert taken.full == {tight.slot_id: 1}
        assert [await booked(stores, s.slot_id) for s in (roomy, tight, counted)] == [2, 1, 0]


# --- bookings ------------------------------------------------------------------------------


async def slot_of_room(
    stores: AnyStores, *, places: int = 3, starts_in: timedelta = 24 * HOUR
) -> domain.Slot:
    """A slot of a new room, as the store reads it."""
    snap = slot(uuid.uuid4(), places=places, starts_in=starts_in)
    await room_with(stores, snap)
    async with stores.begin() as store:
        found: domain.Slot = await store.get_slot(snap.slot_id)
        return found


def pending(
    slot_: domain.Slot, user: str = "ada", *, key: str | None = None, hold: timedelta = HOUR
) -> domain.PendingBooking:
    return domain.PendingBooking(
        id=uuid.uuid4(),
        user_id=user,
        slot=slot_,
        booking_type="standard",
        notes="",
        attributes={},
        contact=Contact(email=f"{user}@example.com"),
        hold_expires_at=NOW + hold,
        idempotency_key=key,
        request_fingerprint="f" if key else None,
        terms=RoomRules(cancel_notice_minutes=30),
    )


async def made(
    stores: AnyStores, new: domain.PendingBooking, most: int | None = None
) -> domain.Booking:
    async with stores.begin() as store:
        booking: domain.Booking = await store.insert_booking(new, max_unpaid_holds=most)
        return booking


async def change(stores: AnyStores, method: str, *args: Any, **kwargs: Any) -> Any:
    async with stores.begin() as store:
        return await getattr(store, method)(*args, **kwargs)


class BookingContract(StoreContract):
    """The cases of the bookings (with those of the inventory and places)."""

    async def test_a_booking_is_made_pending_once_per_user_slot_and_key(
        self, stores: AnyStores
    ) -> None:
        one = await slot_of_room(stores)
        first = await made(stores, pending(one, key="k1"))
        assert (first.status, first.payment_status, first.version) == (
            domain.BookingStatus.PENDING,
            domain.PaymentStatus.PENDING,
            1,
        )
        assert (first.starts_at, first.price, first.room_id) == (
            one.starts_at,
            one.price,
            one.room_id,
        )
        assert first.terms is not None
        assert first.terms.cancel_notice == timedelta(minutes=30)
        with pytest.raises(domain.SlotUnavailable, match="already hold"):
            await made(stores, pending(one))
        other = await slot_of_room(stores)
        with pytest.raises(domain.SlotUnavailable, match="already hold"):
            await made(stores, pending(other, key="k1"))
        await change(stores, "cancel_booking", first.id, by=Actor.USER, reason=None, at=NOW)
        again = await made(stores, pending(one))
        assert again.status is domain.BookingStatus.PENDING
        async with stores.begin() as store:
            found = await store.find_by_idempotency_keys([("ada", "k1"), ("bob", "k1")])
            alone = await store.find_by_idempotency_key("ada", "k1")
            assert await store.find_by_idempotency_key("ada", "k2") is None
        assert [b.id for b in found.values()] == [first.id]
        assert alone is not None
        assert alone.id == first.id

    async def test_a_user_holds_at_most_the_cap_of_unpaid_bookings(self, stores: AnyStores) -> None:
        one = await slot_of_room(stores, places=9)
        two, three = await slot_of_room(stores), await slot_of_room(stores)
        await made(stores, pending(one), most=2)
        await made(stores, pending(two), most=2)
        with pytest.raises(domain.TooManyUnpaidHolds) as refused:
            await made(stores, pending(three), most=2)
        assert (refused.value.held, refused.value.most) == (2, 2)
        await made(stores, pending(three), most=None)  # an admin's own: not capped
        async with stores.begin() as store:
            held = await store.lock_unpaid_holds(["ada", "bob"])
        assert held == {"ada": 3}

    async def test_a_batch_leaves_out_conflicts_and_fails_whole_over_the_cap(
        self, stores: AnyStores
    ) -> None:
        one, two = await slot_of_room(stores), await slot_of_room(stores)
        taken = await made(stores, pending(one, "bob"))
        rows = [pending(one, "bob"), pending(one, "cid"), pending(two, "cid")]
        async with stores.begin() as store:
            inserted = await store.insert_bookings(rows, max_unpaid_holds=5)
        assert set(inserted) == {rows[1].id, rows[2].id}
        with pytest.raises(domain.TooManyUnpaidHolds):
            await change(
                stores,
                "insert_bookings",
                [pending(two, "dan"), pending(one, "cid")],
                max_unpaid_holds=2,
            )
        async with stores.begin() as store:
            held = await store.lock_unpaid_holds(["bob", "cid", "dan"])
            still = await store.get_booking(taken.id)
        assert held == {"bob": 1, "cid": 2}
        assert still.status is domain.BookingStatus.PENDING

    async def test_a_booking_moves_along_its_state_machine_counting_versions(
        self, stores: AnyStores
    ) -> None:
        one = await slot_of_room(stores)
        booking = await made(stores, pending(one))
        paid = await change(
            stores,
            "confirm_booking",
            booking.id,
            payment_id="pay-1",
            refund_basis_starts_at=one.starts_at,
        )
        done = await change(stores, "set_status", booking.id, domain.BookingStatus.COMPLETED)
        assert (paid.status, paid.payment_id, paid.refund_basis_starts_at, paid.version) == (
            domain.BookingStatus.CONFIRMED,
            "pay-1",
            one.starts_at,
            2,
        )
        assert (done.status, done.version) == (domain.BookingStatus.COMPLETED, 3)
        with pytest.raises(Exception, match="cannot go from"):
            await change(stores, "set_status", booking.id, domain.BookingStatus.PENDING)
        with pytest.raises(domain.BookingNotFound):
            await change(stores, "get_booking", one.id)

    async def test_the_start_a_booking_was_paid_for_never_changes(self, stores: AnyStores) -> None:
        one, later = await slot_of_room(stores), await slot_of_room(stores, starts_in=48 * HOUR)
        booking = await made(stores, pending(one))
        async with stores.begin() as store:
            confirmed = await store.confirm_paid({booking.id: "pay-1", uuid.uuid4(): "pay-2"})
            again = await store.confirm_paid({booking.id: "pay-3"})
        assert (confirmed, again) == ({booking.id: 2}, {})
        moved = await change(stores, "move_booking", booking.id, later)
        assert (moved.slot_id, moved.starts_at, moved.reschedules, moved.version) == (
            later.id,
            later.starts_at,
            1,
            3,
        )
        assert moved.refund_basis_starts_at == one.starts_at
        with pytest.raises(Exception, match="never changes"):
            await change(
                stores,
                "confirm_booking",
                booking.id,
                payment_id="pay-1",
                refund_basis_starts_at=later.starts_at,
            )

    async def test_a_move_onto_a_slot_the_user_holds_is_refused_and_changes_nothing(
        self, stores: AnyStores
    ) -> None:
        one, two = await slot_of_room(stores), await slot_of_room(stores)
        first, second = await made(stores, pending(one)), await made(stores, pending(two))
        async with stores.begin() as store:
            with pytest.raises(domain.SlotUnavailable, match="already hold"):
                await store.move_booking(first.id, two)
            unchanged = await store.get_booking(first.id)
        assert (unchanged.slot_id, unchanged.version) == (one.id, 1)
        async with stores.begin() as store:
            held = await store.slots_held_by("ada", [one.id, two.id, uuid.uuid4()])
            found, rooms = await store.lock_bookings([second.id, uuid.uuid4()])
        assert held == {one.id, two.id}
        assert list(found) == [second.id]
        assert [(r.id, r.name, r.active) for r in rooms.values()] == [(two.room_id, "Room 1", True)]

    async def test_holds_that_ran_out_expire_the_earliest_first(self, stores: AnyStores) -> None:
        one = await slot_of_room(stores, places=5)
        late = await made(stores, pending(one, "ada", hold=3 * HOUR))
        early = await made(stores, pending(one, "bob", hold=HOUR))
        await made(stores, pending(one, "cid", hold=5 * HOUR))
        async with stores.begin() as store:
            first = await store.expire_due(now=NOW + 4 * HOUR, limit=1)
            rest = await store.expire_due(now=NOW + 4 * HOUR, limit=10)
        assert [(b.id, b.status) for b in first + rest] == [
            (early.id, domain.BookingStatus.EXPIRED),
            (late.id, domain.BookingStatus.EXPIRED),
        ]

    async def test_bookings_are_listed_by_start_filtered_a_page_at_a_time(
        self, stores: AnyStores
    ) -> None:
        soon, later = await slot_of_room(stores), await slot_of_room(stores, starts_in=48 * HOUR)
        a = await made(stores, pending(later, "ada"))
        b = await made(stores, pending(soon, "ada"))
        await made(stores, pending(soon, "bob"))
        mine = domain.BookingFilter(user_id="ada", statuses=(domain.BookingStatus.PENDING,))
        async with stores.begin() as store:
            first = await store.list_bookings(mine, after=None, limit=1)
            rest = await store.list_bookings(
                mine, after=(first[-1].starts_at, first[-1].id), limit=5
            )
            none = await store.list_bookings(
                domain.BookingFilter(starts_before=soon.starts_at), after=None, limit=5
            )
        assert [x.id for x in first + rest] == [b.id, a.id]
        assert none == []


# --- quotas, refunds, stray payments, the waitlist -------------------------------------------


class FullContract(BookingContract):
    """Every case of the store."""

    async def test_a_quota_counts_each_booking_once_refuses_over_it_and_gives_back(
        self, stores: AnyStores
    ) -> None:
        one, two = slot(uuid.uuid4(), places=5), slot(uuid.uuid4(), starts_in=25 * HOUR)
        quota = BookingQuota(most=1, per=QuotaPeriod.DAY)
        room_id = await room_with(stores, one, two, quotas=[quota])
        the_room = await room(stores, room_id)
        assert the_room is not None
        windows = domain.quota_windows(the_room, NOW + 24 * HOUR)
        first = await made(stores, pending(await slot_of_room(stores)))
        second = await made(stores, pending(await slot_of_room(stores)))
        key = (windows[0].scope, windows[0].span.starts_at)
        async with stores.begin() as store:
            assert await store.count_against_quotas(first, windows) is None
            refused = await store.count_against_quotas(second, windows)
            used = await store.quota_usage("ada", [key])
        assert isinstance(refused, domain.RuleBroken)
        assert used == {key: 1}
        async with stores.begin() as store:
            await store.release_quotas([first.id, first.id])
            await store.release_quotas([first.id])  # given back once
            assert await store.quota_usage("ada", [key]) == {key: 0}
            assert await store.count_against_quotas(second, windows) is None

    async def test_refunds_are_asked_once_and_settle_into_the_bookings_payment_status(
        self, stores: AnyStores
    ) -> None:
        booking = await made(stores, pending(await slot_of_room(stores)))
        await change(
            stores,
            "confirm_booking",
            booking.id,
            payment_id="pay-1",
            refund_basis_starts_at=booking.starts_at,
        )
        first, second = uuid.uuid4(), uuid.uuid4()
        half = Money.of("10.00", "EUR")
        asked = {"booking_id": booking.id, "payment_id": "pay-1", "amount": half}
        async with stores.begin() as store:
            pending_ = await store.request_refund(refund_id=first, reason="moved", **asked)
            assert await store.request_refund(refund_id=first, reason="again", **asked) is None
            await store.request_refund(refund_id=second, reason="cancelled", **asked)
            one = await store.get_refund(first)
            assert await store.get_refund(booking.id) is None
        assert pending_ is not None
        assert (pending_.payment_status, pending_.refund) == (
            domain.PaymentStatus.REFUND_PENDING,
            half,
        )
        assert one is not None
        failed = await change(
            stores,
            "settle_refund",
            one,
            status=domain.RefundStatus.FAILED,
            failure_reason="card expired",
            now=NOW,
        )
        assert (failed.payment_status, failed.refund_failure_reason, failed.refund) == (
            domain.PaymentStatus.REFUND_FAILED,
            "card expired",
            Money.of("20.00", "EUR"),
        )
        with pytest.raises(RuntimeError, match="no longer requested"):
            await change(
                stores,
                "settle_refund",
                one,
                status=domain.RefundStatus.SUCCEEDED,
                failure_reason=None,
                now=NOW,
            )
        async with stores.begin() as store:
            for refund_id in (first, second):
                refund = await store.get_refund(refund_id)
                assert refund is not None
                done = await store.settle_refund(
                    refund, status=domain.RefundStatus.SUCCEEDED, failure_reason=None, now=NOW
                )
        assert (done.payment_status, done.refund_failure_reason) == (
            domain.PaymentStatus.REFUNDED,
            None,
        )

    async def test_a_stray_payment_is_recorded_once_and_its_refund_settles_once(
        self, stores: AnyStores
    ) -> None:
        refund_id = uuid.uuid4()
        stray = {
            "payment_id": "pay-9",
            "booking_id": uuid.uuid4(),
            "amount": PRICE,
            "reason": "no such booking",
        }
        async with stores.begin() as store:
            recorded = await store.record_stray_payment(refund_id=refund_id, **stray)
            again = await store.record_stray_payment(refund_id=uuid.uuid4(), **stray)
            locked = await store.lock_stray_refund(refund_id)
            assert await store.lock_stray_refund(uuid.uuid4()) is None
        assert recorded is not None
        assert again is None
        assert locked == recorded
        settled = await change(
            stores,
            "settle_stray_refund",
            recorded,
            status=domain.RefundStatus.SUCCEEDED,
            failure_reason=None,
            now=NOW,
        )
        assert settled.refund_status is domain.RefundStatus.SUCCEEDED
        with pytest.raises(RuntimeError, match="no longer requested"):
            await change(
                stores,
                "settle_stray_refund",
                recorded,
                status=domain.RefundStatus.FAILED,
                failure_reason="x",
                now=NOW,
            )

    async def test_a_line_keeps_its_order_its_states_and_one_live_entry_per_user(
        self, stores: AnyStores
    ) -> None:
        full = await slot_of_room(stores, places=1)
        contact = Contact(email="w@example.com")
        async with stores.begin() as store:
            first = await store.insert_entry(uuid.uuid4(), full, "ada", contact)
            second = await store.insert_entry(uuid.uuid4(), full, "bob", contact)
            assert await store.lock_lines_of("ada") == 1
            assert [await store.position_in_line(e) for e in (first, second)] == [1, 2]
            line = await store.waiting_in_line(full.id, limit=5)
            assert await store.slots_with_waiters([full.id, uuid.uuid4()]) == [full.id]
        assert [e.id for e in line] == [first.id, second.id]
        with pytest.raises(Exception, match="uq_waitlist_entries_live_user_slot"):
            async with stores.begin() as store:
                await store.insert_entry(uuid.uuid4(), full, "ada", contact)
        offered = await change(
            stores,
            "change_entry",
            first.id,
            domain.WaitlistStatus.OFFERED,
            offer_expires_at=NOW + HOUR,
        )
        assert offered.status is domain.WaitlistStatus.OFFERED
        with pytest.raises(Exception, match="cannot go from"):
            await change(stores, "change_entry", first.id, domain.WaitlistStatus.WAITING)
        async with stores.begin() as store:
            assert [e.id for e in await store.due_offers(now=NOW + 2 * HOUR, limit=5)] == [first.id]
            assert await store.due_offers(now=NOW, limit=5) == []
            live = await store.live_entry("ada", full.id)
            got = await store.get_entry(second.id)
            assert await store.get_entry(full.id) is None
            assert [e.id for e in await store.closed_lines(now=NOW, limit=5)] == []
            closed = await store.closed_lines(now=NOW + 48 * HOUR, limit=5)
        assert live is not None
        assert live.id == first.id
        assert got == second
        assert [e.id for e in closed] == [second.id]

    async def test_who_is_busy_then_and_the_places_offered_out_of_new_capacity(
        self, stores: AnyStores
    ) -> None:
        one = await slot_of_room(stores, places=3)
        booking = await made(stores, pending(one, "ada"))
        async with stores.begin() as store:
            busy = await store.busy_at(["ada", "bob"], one.starts_at, one.ends_at)
            free = await store.busy_at(["ada"], one.ends_at, one.ends_at + HOUR)
            await store.take_offered_places(one.id, 2)
        assert (busy, free) == ({"ada"}, set())
        assert await booked(stores, one.id) == 2  # counted by the offers (the booking: by hand)
        assert booking.slot_id == one.id
