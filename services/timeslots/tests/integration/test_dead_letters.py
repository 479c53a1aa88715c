"""An operator lists what the timeslots service dead-lettered and, once the cause is fixed,
replays it with ``timeslots dead-letters``: the booking holds its place once, however often
it is replayed."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime, timedelta
from typing import TypeVar

import asyncpg
import pytest

from booking_contracts import topics
from booking_contracts.catalogue import BookingCreated
from booking_contracts.envelope import Envelope
from booking_contracts.money import Money
from platform_runtime.db import asyncpg_dsn
from platform_tooling.polling import eventually
from tests.support.threads import in_thread
from timeslots.cli import main

from .conftest import ADMIN, Service

T = TypeVar("T")

DUPLICATES = re.compile(
    r'^events_consumed_total\{consumer="timeslots-booking-counts",'
    r'event_type="BookingCreated.v1",outcome="duplicate"\} (\S+)$',
    re.M,
)


async def duplicates(service: Service) -> float:
    found = DUPLICATES.search((await service.http.get("/metrics")).text)
    return float(found[1]) if found else 0.0


BROKERS = ("kafka",)
"""The real broker only: the operator's dead-letter commands read and replay its topics."""


async def booked(service: Service, slot_id: uuid.UUID) -> int:
    response = await service.http.get(f"/slots/{slot_id}", headers=ADMIN)
    assert response.status_code == 200, response.text
    count: int = response.json()["booked_count"]
    return count


@pytest.mark.usefixtures("root_logger")
async def test_a_dead_lettered_booking_replayed_after_the_fix_holds_its_place_once(
    service: Service, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("TIMESLOTS_KAFKA_BOOTSTRAP_SERVERS", service.broker.bootstrap)
    room = await service.room()
    await service.generate(room["id"], "2030-03-05", "2030-03-05")
    slot = (await service.slots(room["id"], date="2030-03-05"))[0]
    unknown = uuid.uuid4()  # a slot this service does not know (yet)
    starts = datetime.fromisoformat(slot["starts_at"])
    booking = Envelope.wrap(
        BookingCreated(
            booking_id=uuid.uuid4(),
            user_id="user-1",
            slot_id=unknown,
            room_id=room["id"],
            starts_at=starts,
            ends_at=starts + timedelta(minutes=30),
            price=Money.of("15.00", "EUR"),
            hold_expires_at=datetime(2030, 1, 1, tzinfo=UTC),
        ),
        source="/booking",
    )
    await service.broker.publish(
        topics.BOOKING_EVENTS,
        [booking.to_json_bytes()],
        key=str(booking.subject).encode(),
        headers=[(k, v.encode()) for k, v in booking.headers().items()],
    )
    [dead] = await service.broker.read(
        topics.dead_letter_topic(topics.BOOKING_EVENTS),
        at_least=1,
        where=lambda record: dict(record.headers).get("ce_id") == str(booking.id).encode(),
    )
    position = f"{dead.partition}:{dead.offset}"

    async def timeslots(*argv: str) -> tuple[int, str, str]:
        def run() -> int:
            with pytest.raises(SystemExit) as exit_info:
                main(["dead-letters", *argv])
            return int(str(exit_info.value.code))

        code = await in_thread(run)
        captured = capsys.readouterr()
        return code, captured.out, captured.err

    listed = await timeslots("list", topics.BOOKING_EVENTS, "--offset", position)
    # The fix: the slot the booking names is known now.
    connection = await asyncpg.connect(asyncpg_dsn(service.database_url))
    try:
        await connection.execute(
            "UPDATE timeslots SET id = $1 WHERE id = $2", unknown, uuid.UUID(slot["id"])
        )
    finally:
        await connection.close()
    before = await duplicates(service)
    first = await timeslots("replay", topics.BOOKING_EVENTS, "--offset", position)
    await eventually(lambda: booked(service, unknown), lambda count: count == 1)
    second = await timeslots("replay", topics.BOOKING_EVENTS, "--offset", position)
    await eventually(lambda: duplicates(service), lambda count: count > before)

    assert listed[0] == 0, listed[2]
    assert position in listed[1]
    assert "rejected" in listed[1]
    assert "timeslots-booking-counts" in listed[1]
    assert "BookingCreated.v1" in listed[1]
    assert f"{unknown} is not a slot of this service" in listed[1]
    assert first[0] == second[0] == 0, first[2] + second[2]
    replayed = f"replayed 1 dead letter of booking.events.dlq to booking.events ({position})"
    assert replayed in first[1]
    assert await booked(service, unknown) == 1
