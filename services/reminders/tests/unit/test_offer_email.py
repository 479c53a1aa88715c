"""A waitlist offer's email as text: what it says, where its link points, and which link
templates the settings accept."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from pydantic import ValidationError

from reminders.domain import Channel, Reminder, check_offer_link, email_body, email_subject
from reminders.settings import RemindersSettings

START = datetime(2030, 7, 1, 7, 0, tzinfo=UTC)  # 09:00 in Berlin (CEST)


def _offer() -> Reminder:
    return Reminder(
        id=uuid.uuid4(),
        booking_id=uuid.UUID(int=5),
        channel=Channel.WAITLIST_OFFER,
        scheduled_for=START - timedelta(days=1),
        contact_email="waiter@example.com",
        contact_phone=None,
        starts_at=START,
        ends_at=START + timedelta(hours=1),
        room_name="Yoga\nroom",
        room_time_zone="Europe/Berlin",
        slot_id=uuid.UUID(int=7),
        offer_expires_at=START - timedelta(hours=23, minutes=45),
    )


def test_the_offer_says_where_when_until_when_and_links_to_it() -> None:
    offer = _offer()

    body = email_body(offer, link_template="https://book.example/s/{slot_id}?offer={offer_id}")

    assert email_subject(offer) == (
        "A place is free for you: Yoga room on Monday 1 July 2030 at 09:00 (Europe/Berlin)"
    )
    assert "Starts:  Monday 1 July 2030, 09:00 (Europe/Berlin)" in body
    assert "Held until: Sunday 30 June 2030, 09:15 (Europe/Berlin)" in body
    assert f"https://book.example/s/{offer.slot_id}?offer={offer.booking_id}" in body


@pytest.mark.parametrize("template", ["https://x/{slot}", "https://x/{0}", "https://x/{slot_id"])
def test_a_link_template_naming_anything_else_is_refused_at_startup(template: str) -> None:
    with pytest.raises(ValueError, match="may name"):
        check_offer_link(template)
    with pytest.raises(ValidationError, match="may name"):
        RemindersSettings(offer_link_template=template)
