"""The kernel's exceptions, and the one way it describes any exception in a line.

Every exception the kernel raises on purpose derives from :class:`KernelError`, so that a
caller can tell "the kernel refused" from a bug or a driver's error::

    KernelError
    ├── InsecureSettings     settings        development-only settings outside development
    ├── NotForDevelopment    tokens          the settings forbid signing development tokens
    ├── UsageError           cli             arguments that make no sense together (exit 2)
    ├── Refused              deadletters     arguments that do not fit the broker (exit 2)
    ├── KafkaSecurityError   kafka_security  security settings that do not fit (a ValueError)
    ├── AuthenticationError  http.auth       a bearer token that cannot be trusted (401)
    ├── ProblemError         http.problems   an HTTP-facing error that knows its status;
    │                                        the services' domain errors derive from it
    ├── InvalidCursor        http.pagination a page cursor of another shape (422; a ValueError)
    ├── PermanentEventError  messaging       an event that can never be applied (dead letter)
    └── BatchItemError       messaging       the n-th event of a batch failed with ``error``

(modules under ``platform_runtime``.)

The event catalogue's decoding errors (``booking_contracts.envelope.EventDecodeError``,
``MalformedEvent``, ``UnknownEventType``) are ``ValueError``\\ s outside this tree on purpose:
the catalogue imports nothing of the runtime, so that other teams can use it alone.
"""

from __future__ import annotations


class KernelError(Exception):
    """Raised by the kernel on purpose; the message says what happened and, where it can, what
    to do about it."""


def describe(exc: BaseException) -> str:
    """``Type: message`` in one line (the message alone when it names its type already, as
    aiokafka's do; the type alone when there is no message)."""
    name, text = type(exc).__name__, str(exc).strip()
    if not text:
        return name
    return text if text.startswith(name) else f"{name}: {text}"
