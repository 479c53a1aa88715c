"""Every Kafka topic of the platform, in one place.

One topic per producing service (the payment service is not ours but its topic is part of
the contract), keyed by aggregate id so that the events of one booking, one room or one
reminder keep their order. Each topic has a dead-letter twin, ``<topic>.dlq``.
"""

TIMESLOTS_EVENTS = "timeslots.events"
"""Rooms and slots as the timeslot service publishes them (key: room id)."""

BOOKING_EVENTS = "booking.events"
"""The booking lifecycle, refund requests included (key: booking id)."""

PAYMENT_EVENTS = "payments.events"
"""Payment outcomes published by the external payment service (key: booking id)."""

REMINDER_JOBS = "reminders.jobs"
"""Due reminders handed from the dispatcher to the delivery workers (key: reminder id)."""

REMINDER_EVENTS = "reminders.events"
"""What became of a reminder: sent or finally failed (key: booking id)."""

DLQ_SUFFIX = ".dlq"

ALL_TOPICS: tuple[str, ...] = (
    TIMESLOTS_EVENTS,
    BOOKING_EVENTS,
    PAYMENT_EVENTS,
    REMINDER_JOBS,
    REMINDER_EVENTS,
)


MAX_DEAD_LETTER_VALUE_BYTES = 512 * 1024
"""A dead letter's value is cut to this (and says so in ``dlq_value_truncated``), so that a
dead letter always fits the broker's record limit (1 MiB by default) with its headers."""


def dead_letter_topic(topic: str) -> str:
    """The dead-letter topic of ``topic``."""
    return topic + DLQ_SUFFIX
