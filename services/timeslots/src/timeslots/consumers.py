"""Kafka handler: booking events keep each slot's booked count in step with the bookings,
and waitlist offers with the places held for waiters.

The booking service decides bookings; this service only mirrors how many places each slot
has taken, for its availability search. A place freed in a full slot with a waitlist is held
for the first waiter while the offer lasts (``WaitlistOfferMade``): it is not free to anyone
else, so it counts here as a hold of the offer's entry, given back when the offer is taken
(the booking made with it holds the place from its ``BookingCreated`` on), lapses or is
declined. The two events of a taken offer travel on different keys, so for the moment
between them the count may be one off, either way; it settles when both are read.

One batch handler takes the consecutive events of a lane's transaction
(:meth:`platform_runtime.messaging.EventConsumer.on_many`):

1. every slot the batch names is looked up in one query; the first event naming a slot this
   service does not know is refused alone (dead-lettered) and the others applied;
2. the events' changes to the holds are applied in their order, a few set-based
   statements for the whole batch (``Store.apply_hold_changes``);
3. every slot the batch touched is recounted once, its rows locked in id order first, so
   that two lanes (or processes) recounting the same slots wait for each other instead of
   deadlocking.

Recording the holds rather than counting events makes duplicates, repeats and releases seen
before their creation all end in the same count.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TypeVar

from booking_contracts.catalogue import (
    BookingCancelled,
    BookingCreated,
    BookingExpired,
    BookingRescheduled,
    WaitlistLeft,
    WaitlistOfferLapsed,
    WaitlistOfferMade,
    WaitlistOfferTaken,
)
from booking_contracts.envelope import Envelope
from platform_runtime.messaging import BatchItemError, EventConsumer, PermanentEventError
from timeslots.domain import Hold, HoldChange, Move, Release
from timeslots.handlers import Store

CONSUMER_NAME = "timeslots-booking-counts"

BookingEvent = BookingCreated | BookingCancelled | BookingExpired | BookingRescheduled
OfferEvent = WaitlistOfferMade | WaitlistOfferTaken | WaitlistOfferLapsed | WaitlistLeft
HoldEvent = BookingEvent | OfferEvent

S = TypeVar("S")


def register(consumer: EventConsumer[S], store_of: Callable[[S], Store]) -> None:
    """The hold counts on ``consumer``, whose transactions ``store_of`` turns into the store."""

    async def count(tx: S, events: Sequence[tuple[Envelope, HoldEvent]]) -> None:
        await on_booking_events(store_of(tx), events)

    consumer.on_many(
        BookingCreated,
        BookingCancelled,
        BookingExpired,
        BookingRescheduled,
        WaitlistOfferMade,
        WaitlistOfferTaken,
        WaitlistOfferLapsed,
        WaitlistLeft,
    )(count)


async def on_booking_events(store: Store, events: Sequence[tuple[Envelope, HoldEvent]]) -> None:
    """Apply ``events`` in their order as if one after the other, then recount their slots.

    Raises :class:`BatchItemError` naming the first event whose slot is unknown (nothing is
    written then: the runtime applies the others without it).
    """
    changes = [
        (index, change)
        for index, (_, event) in enumerate(events)
        if (change := hold_change(event)) is not None
    ]
    known = await store.existing_slots(s for _, c in changes for s in c.slots)
    for index, change in changes:
        for slot_id in change.slots:
            if slot_id not in known:
                error = PermanentEventError(f"slot {slot_id} is not a slot of this service")
                raise BatchItemError(index, error)
    await store.apply_hold_changes([change for _, change in changes])


def hold_change(event: HoldEvent) -> HoldChange | None:
    """What ``event`` does to its holder's hold: a booking's, or an offer's (held by the
    waitlist entry's id); ``None``: nothing (a waiter who left without an offer)."""
    match event:
        case BookingCreated():
            return Hold(event.booking_id, event.slot_id)
        case BookingCancelled() | BookingExpired():
            return Release(event.booking_id, event.slot_id)
        case BookingRescheduled():
            return Move(event.booking_id, event.old_slot_id, event.new_slot_id)
        case WaitlistOfferMade():
            return Hold(event.entry_id, event.slot_id)
        case WaitlistOfferTaken() | WaitlistOfferLapsed():
            return Release(event.entry_id, event.slot_id)
        case WaitlistLeft():
            return Release(event.entry_id, event.slot_id) if event.declined_offer else None
