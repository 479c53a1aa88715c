"""Kafka handler: booking events keep each slot's booked count in step with the bookings.

The booking service decides bookings; this service only mirrors how many places each slot
has taken, for its availability search. One batch handler takes the consecutive booking
events of a lane's transaction (:meth:`shared.messaging.EventConsumer.on_many`):

1. every slot the batch names is looked up in one query; the first event naming a slot this
   service does not know is refused alone (dead-lettered) and the others applied;
2. the events' changes to the bookings' holds are applied in their order, a few set-based
   statements for the whole batch (:func:`timeslots.store.apply_hold_changes`);
3. every slot the batch touched is recounted once, its rows locked in id order first, so
   that two lanes (or processes) recounting the same slots wait for each other instead of
   deadlocking.

Recording the holds rather than counting events makes duplicates, repeats and releases seen
before their creation all end in the same count.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy.ext.asyncio import AsyncSession

from booking_contracts.catalogue import (
    BookingCancelled,
    BookingCreated,
    BookingExpired,
    BookingRescheduled,
)
from booking_contracts.envelope import Envelope
from shared.messaging import BatchItemError, EventConsumer, PermanentEventError
from timeslots import store

CONSUMER_NAME = "timeslots-booking-counts"

BookingEvent = BookingCreated | BookingCancelled | BookingExpired | BookingRescheduled


def register(consumer: EventConsumer) -> None:
    consumer.on_many(BookingCreated, BookingCancelled, BookingExpired, BookingRescheduled)(
        on_booking_events
    )


async def on_booking_events(
    session: AsyncSession, events: Sequence[tuple[Envelope, BookingEvent]]
) -> None:
    """Apply ``events`` in their order as if one after the other, then recount their slots.

    Raises :class:`BatchItemError` naming the first event whose slot is unknown (nothing is
    written then: the runtime applies the others without it).
    """
    changes = [hold_change(event) for _, event in events]
    known = await store.existing_slots(session, (s for change in changes for s in change.slots))
    for index, change in enumerate(changes):
        for slot_id in change.slots:
            if slot_id not in known:
                error = PermanentEventError(f"slot {slot_id} is not a slot of this service")
                raise BatchItemError(index, error)
    await store.apply_hold_changes(session, changes)


def hold_change(event: BookingEvent) -> store.HoldChange:
    """What ``event`` does to its booking's hold."""
    if isinstance(event, BookingCreated):
        return store.Hold(event.booking_id, event.slot_id)
    if isinstance(event, BookingCancelled | BookingExpired):
        return store.Release(event.booking_id, event.slot_id)
    return store.Move(event.booking_id, event.old_slot_id, event.new_slot_id)
