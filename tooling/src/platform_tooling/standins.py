"""Stand-ins for the systems around the platform that are not ours: the payment service and a
mail server. Used by the end-to-end tests, the end-to-end benchmark and ``make up`` (so that a
booking made by hand gets paid and its reminders land somewhere you can read them).

``python -m platform_tooling.standins --kafka HOST:PORT --smtp-port 2525 --mail-dir DIR`` runs
both until SIGINT or SIGTERM; its Kafka clients connect as the services' do, from
``STANDIN_KAFKA_SECURITY_PROTOCOL``, ``STANDIN_KAFKA_SASL_USERNAME`` and the other
``STANDIN_KAFKA_*`` security settings (:mod:`platform_runtime.kafka_security`; default
``PLAINTEXT``).

The payment stand-in behaves as the real payment service does on the wire: it consumes
``BookingCreated`` from ``booking.events`` (consumer group ``payment-standin``, offsets
committed after its answer is acknowledged) and publishes ``PaymentSucceeded`` for the price,
or ``PaymentFailed``, on ``payments.events`` keyed by booking id; the payment id is derived from
the booking, so a repeated ``BookingCreated`` yields the same payment. It talks to Kafka through
the platform's transport (:mod:`platform_runtime.transport`), so its tests run on the in-memory one.
It reads ``RefundRequested`` too, keeps them and answers each with ``RefundSucceeded`` (or
``RefundFailed``) for the same refund id, payment and amount. What it does is decided by the
user id:

* ``unpaid-…`` never pays (the hold runs out);
* ``declined-…`` is declined (``PaymentFailed``);
* ``unrefundable-…`` pays, but every refund of their bookings fails (``RefundFailed``);
* anyone else pays the full price and gets every refund.

The user of a refund is the one of the booking's ``BookingCreated`` this stand-in saw; a refund
of a booking it never saw created succeeds.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import email
import email.policy
import logging
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path
from typing import Any
from uuid import UUID

from aiosmtpd.controller import Controller
from pydantic_settings import SettingsConfigDict

from booking_contracts import topics
from booking_contracts.catalogue import (
    BookingCreated,
    PaymentFailed,
    PaymentSucceeded,
    RefundFailed,
    RefundRequested,
    RefundSucceeded,
)
from booking_contracts.envelope import Envelope, Event, EventDecodeError, decode
from platform_runtime.kafka import KafkaTransport
from platform_runtime.outbox import OutboundRecord
from platform_runtime.settings import ServiceSettings
from platform_runtime.transport import IncomingRecord, TopicPartition, Transport

log = logging.getLogger("standins")

SOURCE = "/payments-standin"
GROUP = "payment-standin"
KAFKA_CALL_S = 20.0
"""The longest the stand-in waits on any one Kafka call before starting over."""
UNASSIGNED_S = 15.0
"""A consumer left without partitions this long (its membership lost) is replaced."""
RESTART_PAUSE_S = 1.0
"""The pause before starting over after Kafka failed."""


def payment_id_of(booking_id: UUID) -> str:
    return f"pay-{booking_id}"


REFUND_FAILURE = "the card account was closed"


def decide_refund(refund: RefundRequested, user_id: str | None) -> Event:
    """The stand-in's answer to a refund request of ``user_id``'s booking."""
    if user_id is not None and user_id.startswith("unrefundable-"):
        return RefundFailed(
            booking_id=refund.booking_id,
            payment_id=refund.payment_id,
            refund_id=refund.refund_id,
            amount=refund.amount,
            reason=REFUND_FAILURE,
        )
    return RefundSucceeded(
        booking_id=refund.booking_id,
        payment_id=refund.payment_id,
        refund_id=refund.refund_id,
        amount=refund.amount,
    )


def decide(created: BookingCreated) -> Event | None:
    """The stand-in's answer to a new booking (None: the user never pays)."""
    if created.user_id.startswith("unpaid-"):
        return None
    payment_id = payment_id_of(created.booking_id)
    if created.user_id.startswith("declined-"):
        return PaymentFailed(
            booking_id=created.booking_id, payment_id=payment_id, reason="card declined"
        )
    return PaymentSucceeded(
        booking_id=created.booking_id, payment_id=payment_id, amount=created.price
    )


@dataclass
class PaymentStandIn:
    """The payment service, as far as the platform can tell."""

    transport: Transport
    """Its broker (a :class:`~platform_runtime.kafka.KafkaTransport` connects and logs in as a
    service's clients do)."""
    group: str = GROUP
    decide: Callable[[BookingCreated], Event | None] = decide
    decide_refund: Callable[[RefundRequested, str | None], Event] = decide_refund
    answered: dict[UUID, Envelope] = field(default_factory=dict)
    """Booking id -> the last payment or refund outcome published for it."""
    refunds: list[RefundRequested] = field(default_factory=list)
    users: dict[UUID, str] = field(default_factory=dict)
    """Booking id -> its user, from the ``BookingCreated`` seen."""
    _task: asyncio.Task[None] | None = None
    _stopping: bool = False
    _ready: asyncio.Event = field(default_factory=asyncio.Event)

    async def start(self, timeout_s: float = 60.0) -> None:
        await self.transport.ensure_topics([topics.BOOKING_EVENTS, topics.PAYMENT_EVENTS])
        self._task = asyncio.create_task(self._run(), name="payment-standin")
        ready = asyncio.create_task(self._ready.wait())
        done, _ = await asyncio.wait(
            {ready, self._task}, timeout=timeout_s, return_when="FIRST_COMPLETED"
        )
        if self._task in done:
            self._task.result()  # raises what stopped it
        if ready not in done:
            ready.cancel()
            raise TimeoutError("the payment stand-in got no partitions")

    async def stop(self) -> None:
        """Let the loop finish its round and close its clients (cancelled only if stuck)."""
        self._stopping = True
        if self._task is not None:
            done, _ = await asyncio.wait({self._task}, timeout=KAFKA_CALL_S * 2)
            if not done:
                log.warning("the payment stand-in did not stop within %gs", KAFKA_CALL_S * 2)
                self._task.cancel()

    def refunds_of(self, booking_id: UUID) -> list[RefundRequested]:
        return [r for r in self.refunds if r.booking_id == booking_id]

    async def _run(self) -> None:
        """Answer until cancelled. Through a broker outage it starts over from the committed
        offsets (answers are published before offsets are committed: at least once); every
        Kafka call is bounded, and a consumer left without partitions for long (its group
        membership lost and not regained) is replaced."""
        while not self._stopping:
            try:
                await self._consume()
            except Exception:
                log.warning("payment stand-in: Kafka failed; starting over", exc_info=True)
                await asyncio.sleep(RESTART_PAUSE_S)

    async def _consume(self) -> None:
        publisher = self.transport.publisher(client_id="payment-standin")
        consumer = self.transport.group_consumer(
            [topics.BOOKING_EVENTS], group=self.group, hand_over=_nothing_in_flight
        )
        try:
            await asyncio.wait_for(consumer.start(), KAFKA_CALL_S)
            unassigned_since = time.monotonic()
            while not self._stopping:
                records = await asyncio.wait_for(
                    consumer.poll(timeout_ms=200, max_records=500), KAFKA_CALL_S
                )
                if consumer.assignment():
                    self._ready.set()
                    unassigned_since = time.monotonic()
                elif time.monotonic() - unassigned_since > UNASSIGNED_S:
                    raise RuntimeError(f"no partitions for {UNASSIGNED_S:g}s")
                answers = [a for a in map(self._answer, (r.value for r in records)) if a]
                if answers:
                    records_out = [
                        OutboundRecord(
                            topic=topics.PAYMENT_EVENTS,
                            key=envelope.subject or str(booking_id),
                            value=envelope.to_json_bytes(),
                            headers=envelope.headers(),
                        )
                        for booking_id, envelope in answers
                    ]
                    await asyncio.wait_for(publisher.send_batch(records_out), KAFKA_CALL_S)
                    for booking_id, envelope in answers:
                        self.answered[booking_id] = envelope
                if records:
                    await asyncio.wait_for(consumer.commit(_next_offsets(records)), KAFKA_CALL_S)
        finally:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(consumer.stop(), KAFKA_CALL_S)
            with contextlib.suppress(Exception):
                await asyncio.wait_for(publisher.stop(), KAFKA_CALL_S)

    def _answer(self, value: bytes | None) -> tuple[UUID, Envelope] | None:
        try:
            envelope, event = decode(value or b"")
        except EventDecodeError:
            return None
        if isinstance(event, RefundRequested):
            self.refunds.append(event)
            outcome = self.decide_refund(event, self.users.get(event.booking_id))
            log.info(
                "refund of booking %s, %s: %s", event.booking_id, event.amount, outcome.type_name()
            )
            return event.booking_id, self._reply(outcome, envelope)
        if not isinstance(event, BookingCreated):
            return None
        self.users[event.booking_id] = event.user_id
        answer = self.decide(event)
        if answer is None:
            log.info("booking %s: the user does not pay", event.booking_id)
            return None
        log.info("booking %s: %s", event.booking_id, answer.type_name())
        return event.booking_id, self._reply(answer, envelope)

    @staticmethod
    def _reply(answer: Event, cause: Envelope) -> Envelope:
        """The answer to ``cause``, in its conversation and its trace (as a payment provider
        that passes the W3C trace context on would)."""
        return Envelope.wrap(
            answer,
            source=SOURCE,
            correlation_id=cause.correlationid,
            causation_id=str(cause.id),
            traceparent=cause.traceparent,
        )


async def _nothing_in_flight() -> None:
    """A rebalance waits for nothing: answers are published before offsets are committed,
    so records taken by the next owner are answered again (the same payment ids)."""


def _next_offsets(records: list[IncomingRecord]) -> dict[TopicPartition, int]:
    """Per partition, the offset after the last of ``records``."""
    return {(r.topic, r.partition): r.offset + 1 for r in records}


# --- mail ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Mail:
    arrived: float
    recipients: list[str]
    message: EmailMessage

    @property
    def message_id(self) -> str:
        return str(self.message["Message-ID"])


@dataclass
class MailSink:
    """An SMTP server that accepts every message and keeps it (and writes it to ``directory``
    as ``NNNNN.eml`` when given, numbered on from the files already there)."""

    port: int
    host: str = "127.0.0.1"
    directory: Path | None = None
    received: list[Mail] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _controller: Controller | None = None
    _last: int | None = None
    """The number of the last ``.eml`` file written (None: not looked up yet)."""

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        assert isinstance(message, EmailMessage)
        mail = Mail(time.time(), list(envelope.rcpt_tos), message)
        with self._lock:
            self.received.append(mail)
            number = self._next_number()
        if self.directory is not None:
            (self.directory / f"{number:05d}.eml").write_bytes(envelope.content)
        log.info("mail to %s: %s", ", ".join(mail.recipients), message["Subject"])
        return "250 OK"

    def _next_number(self) -> int:
        """The number of the next ``.eml`` file: after the highest in ``directory`` (messages
        of earlier runs are kept, never overwritten), or after the messages of this run."""
        if self.directory is None:
            return len(self.received)
        self.directory.mkdir(parents=True, exist_ok=True)
        if self._last is None:
            numbers = [int(p.stem) for p in self.directory.glob("*.eml") if p.stem.isdigit()]
            self._last = max(numbers, default=0)
        self._last += 1
        return self._last

    def start(self) -> None:
        self._controller = Controller(self, hostname=self.host, port=self.port)
        self._controller.start()

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()

    def to(self, address: str) -> list[Mail]:
        with self._lock:
            return [m for m in self.received if address in m.recipients]


# --- as a process ----------------------------------------------------------------------


class StandInSettings(ServiceSettings):
    """The stand-ins' own settings: only the ``STANDIN_KAFKA_*`` security ones are used."""

    model_config = SettingsConfigDict(env_prefix="STANDIN_", extra="ignore", env_file=None)


async def _serve(kafka: str, smtp_port: int, mail_dir: Path | None) -> None:
    mail = MailSink(port=smtp_port, directory=mail_dir)
    mail.start()
    payments = PaymentStandIn(KafkaTransport(kafka, security=StandInSettings().kafka_security()))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    await payments.start()
    log.info("payment stand-in on %s, mail sink on 127.0.0.1:%d", kafka, smtp_port)
    try:
        await stop.wait()
    finally:
        await payments.stop()
        mail.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description="payment service and mail server stand-ins")
    parser.add_argument("--kafka", default="127.0.0.1:9092")
    parser.add_argument("--smtp-port", type=int, default=2525)
    parser.add_argument("--mail-dir", type=Path, default=None)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    asyncio.run(_serve(args.kafka, args.smtp_port, args.mail_dir))


if __name__ == "__main__":
    main()
