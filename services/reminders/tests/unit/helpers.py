"""What the fast tests of the use cases share: the service held in the process, its outbox,
and a look at a booking's reminders."""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

from platform_runtime.memorydb import MemoryTransaction
from platform_runtime.outbox import Outbox
from platform_runtime.transactions import Stores
from reminders import models
from reminders.domain import Channel, Status
from reminders.memory import MemoryStore, RemindersState
from tests.support.memory_service import MemoryService

Service = MemoryService[RemindersState]
OUTBOX = Outbox(models.outbox, source="/reminders")


def stores(service: Service) -> Stores[MemoryTransaction[RemindersState], MemoryStore]:
    return Stores(service.db, MemoryStore)


async def plan(service: Service, booking_id: UUID) -> list[tuple[Channel, Status, datetime]]:
    """The booking's reminders: channel, status and time."""
    async with stores(service).begin() as store:
        reminders = await store.reminders_of(booking_id)
    return [(r.channel, r.status, r.scheduled_for) for r in reminders]
