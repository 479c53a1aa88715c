"""The two ceilings of ``make bench-booking``: what the stack alone allows, same workers.

``uvicorn bench.ceiling:create_app --factory --workers N`` (N = the booking service's API
workers) serves two endpoints, each answering ``201``:

* ``POST /noop``: the framework ceiling. FastAPI parses ``{"slot_id": ...}`` and verifies the
  bearer token through the same dependency and ``JwtVerifier`` configuration as the booking
  service (``BOOKING_JWT_*``, :func:`platform_runtime.service.jwt_verifier`); no database.
* ``POST /tx``: the bare-transaction ceiling. The same, plus the booking transaction in raw
  asyncpg on a pool: one conditional ``UPDATE`` of the slot's count, one ``INSERT`` of the
  booking and one ``INSERT`` of an outbox row, in one transaction; ``409`` when the slot has
  no place left.

No middleware, no ORM, no event model: what is left of a booking when everything the
service adds on top is taken away. The database is ``BENCH_CEILING_DATABASE_URL`` (a plain
``postgresql://`` DSN of a booking database).
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
from fastapi import FastAPI, HTTPException, Request
from pydantic import BaseModel

from booking.settings import BookingSettings
from booking_contracts import topics
from platform_runtime.http.auth import CurrentUser, install_auth
from platform_runtime.service import jwt_verifier

POOL_SIZE = 10
"""Connections kept per worker process, as the service's ``database_pool_size``."""
POOL_OVERFLOW = 10
"""As the service's ``database_max_overflow``."""
HOLD = timedelta(minutes=15)

TAKE_PLACE = """
UPDATE slots SET booked_count = booked_count + 1, updated_at = now()
WHERE id = $1 AND status = 'open' AND booked_count < max_bookings AND starts_at > $2
  AND EXISTS (SELECT 1 FROM rooms r WHERE r.id = slots.room_id AND r.active AND r.name <> '')
RETURNING room_id, starts_at, ends_at, price, currency
"""

INSERT_BOOKING = """
INSERT INTO bookings (id, user_id, room_id, slot_id, starts_at, ends_at, status, booking_type,
                      price, currency, payment_status, contact_email, hold_expires_at)
VALUES ($1, $2, $3, $4, $5, $6, 'pending', 'standard', $7, $8, 'pending', $9, $10)
"""

INSERT_OUTBOX = """
INSERT INTO outbox (event_id, topic, key, event_type, payload, headers)
VALUES ($1, $2, $3, 'BookingCreated.v1', $4::jsonb, $5::jsonb)
"""


class BookingIn(BaseModel):
    slot_id: uuid.UUID


def create_app() -> FastAPI:
    settings = BookingSettings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        pool = await asyncpg.create_pool(
            os.environ["BENCH_CEILING_DATABASE_URL"],
            min_size=POOL_SIZE,
            max_size=POOL_SIZE + POOL_OVERFLOW,
        )
        app.state.pool = pool
        try:
            yield
        finally:
            await pool.close()

    app = FastAPI(title="booking ceilings", lifespan=lifespan)
    install_auth(app, jwt_verifier(settings))

    @app.post("/noop", status_code=201)
    async def noop(body: BookingIn, user: CurrentUser) -> dict[str, str]:
        return {"slot_id": str(body.slot_id), "user_id": user.subject}

    @app.post("/tx", status_code=201)
    async def transaction(body: BookingIn, user: CurrentUser, request: Request) -> dict[str, str]:
        now = datetime.now(UTC)
        booking_id = uuid.uuid4()
        pool: asyncpg.Pool = request.app.state.pool
        async with pool.acquire() as connection, connection.transaction():
            slot = await connection.fetchrow(TAKE_PLACE, body.slot_id, now)
            if slot is None:
                raise HTTPException(status_code=409, detail="no place left")
            hold = min(now + HOLD, slot["starts_at"])
            email = user.email or f"{user.subject}@bench.example"
            await connection.execute(
                INSERT_BOOKING,
                booking_id,
                user.subject,
                slot["room_id"],
                body.slot_id,
                slot["starts_at"],
                slot["ends_at"],
                slot["price"],
                slot["currency"],
                email,
                hold,
            )
            event_id = uuid.uuid4()
            await connection.execute(
                INSERT_OUTBOX,
                event_id,
                topics.BOOKING_EVENTS,
                str(booking_id),
                json.dumps(_envelope(event_id, booking_id, user.subject, body.slot_id, slot, hold)),
                json.dumps({"ce_id": str(event_id), "ce_type": "BookingCreated.v1"}),
            )
        return {"id": str(booking_id), "slot_id": str(body.slot_id), "status": "pending"}

    return app


def _envelope(
    event_id: uuid.UUID,
    booking_id: uuid.UUID,
    user_id: str,
    slot_id: uuid.UUID,
    slot: Any,
    hold: datetime,
) -> dict[str, Any]:
    """An outbox payload of the size and shape of the service's ``BookingCreated``."""
    return {
        "specversion": "1.0",
        "id": str(event_id),
        "source": "/booking",
        "type": "BookingCreated.v1",
        "time": datetime.now(UTC).isoformat(),
        "subject": str(booking_id),
        "datacontenttype": "application/json",
        "correlationid": None,
        "causationid": None,
        "data": {
            "booking_id": str(booking_id),
            "user_id": user_id,
            "slot_id": str(slot_id),
            "room_id": str(slot["room_id"]),
            "starts_at": slot["starts_at"].isoformat(),
            "ends_at": slot["ends_at"].isoformat(),
            "price": {"amount": str(slot["price"]), "currency": slot["currency"]},
            "hold_expires_at": hold.isoformat(),
        },
    }
