"""A waitlist offer's email: sent at once through the same workers, once, with the slot's
local time, the offer's end and the link; not sent when the offer is over first."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from booking_contracts.catalogue import (
    WaitlistOfferMade,
    WaitlistOfferTaken,
)
from tests.support import booking_events

from .conftest import Service

HOUR = timedelta(hours=1)


def _offer(service: Service, starts_at: datetime, *, minutes: int = 15) -> WaitlistOfferMade:
    return booking_events.offer(starts_at, expires_at=service.clock() + timedelta(minutes=minutes))


async def test_the_waiter_gets_one_email_with_the_local_time_the_offers_end_and_the_link(
    service: Service,
) -> None:
    start = service.day() + 10 * HOUR  # 19:00 UTC: 14:00 or 15:00 in New York
    service.clock.set(start - 48 * HOUR)
    offer = _offer(service, start)

    await service.publish(offer)
    await service.publish(offer)  # redelivered: still one email
    rows = await service.statuses(offer.entry_id, {"waitlist_offer": "sent"})

    (received,) = service.smtp.to(f"{offer.entry_id}@example.com")
    message = received.message
    local = start.astimezone(ZoneInfo("America/New_York"))
    assert message["Subject"] == (
        f"A place is free for you: Studio 3 on {local:%A} {local.day} {local:%B %Y} at "
        f"{local:%H:%M} (America/New_York)"
    )
    body = message.get_body(("plain",))
    assert body is not None
    text = body.get_content()
    until = offer.offer_expires_at.astimezone(ZoneInfo("America/New_York"))
    assert f"Held until: {until:%A} {until.day} {until:%B %Y}, {until:%H:%M}" in text
    assert f"http://127.0.0.1:8002/slots/{offer.slot_id}/waitlist?offer_id={offer.entry_id}" in text
    assert list(message.iter_attachments()) == []  # not a booking yet: no calendar entry
    assert rows["waitlist_offer"]["message_id"] == received.message["Message-ID"]


async def test_an_offer_taken_before_its_email_went_out_is_not_told(service: Service) -> None:
    start = service.day() + 10 * HOUR
    service.clock.set(start - 48 * HOUR)
    offer = _offer(service, start)
    taken = WaitlistOfferTaken(
        entry_id=offer.entry_id,
        slot_id=offer.slot_id,
        room_id=offer.room_id,
        user_id=offer.user_id,
        booking_id=uuid.uuid4(),
    )
    over = _offer(service, start, minutes=-1)  # read after it ended

    await service.publish(
        offer.model_copy(update={"offer_expires_at": offer.offer_expires_at}),
        at=service.clock() + HOUR,  # due an hour from now: still pending when taken
    )
    await service.statuses(offer.entry_id, {"waitlist_offer": "pending"})
    await service.publish(taken)
    await service.publish(over)
    await service.statuses(offer.entry_id, {"waitlist_offer": "cancelled"})

    assert service.smtp.to(f"{offer.entry_id}@example.com") == []
    assert await service.reminders(over.entry_id) == []
