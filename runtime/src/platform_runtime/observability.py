"""Structured logging and the correlation id that ties one user action together.

A correlation id enters with an HTTP request (``X-Correlation-ID``) or a Kafka message
(the ``correlationid`` CloudEvents extension), lives in a :class:`~contextvars.ContextVar`
while that request or message is handled, is copied into events published meanwhile, and is
stamped on every log line. Grepping the logs of all services for one id then shows the whole
story of a booking, across process boundaries.

Logs are one JSON object per line on stdout so the container runtime and the log pipeline
need no parsing rules; ``json=False`` gives a readable line for a developer terminal.
"""

from __future__ import annotations

import json as jsonlib
import logging
import sys
import uuid
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

from starlette.datastructures import Headers, MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from booking_contracts.bounds import is_sane_correlation_id

correlation_id: ContextVar[str | None] = ContextVar("correlation_id", default=None)
"""The correlation id of the request or message being handled, if any."""

CORRELATION_ID_HEADER = "X-Correlation-ID"

_STANDARD_RECORD_ATTRIBUTES = frozenset(
    logging.LogRecord("", logging.INFO, "", 0, "", None, None).__dict__
) | {"message", "asctime", "taskName", "correlation_id"}
"""Attributes every LogRecord has; anything else on a record came from ``extra=``."""

_TEXT_FORMAT = "%(asctime)s %(levelname)-8s %(name)s [%(correlation_id)s] %(message)s"


def new_correlation_id() -> str:
    """A fresh, unguessable id (32 lowercase hex characters)."""
    return uuid.uuid4().hex


def is_valid_correlation_id(value: str) -> bool:
    """Whether an id supplied by a caller is safe to log and echo back.

    The id ends up in log lines, response headers and Kafka headers, so anything long or
    containing characters outside ``[A-Za-z0-9._:-]`` (log injection, header splitting) is
    refused and replaced rather than sanitised.
    """
    return is_sane_correlation_id(value)


class CorrelationIdFilter(logging.Filter):
    """Stamps the current correlation id on each record as ``record.correlation_id``.

    Doing it on the record (rather than only reading the context var while formatting) keeps
    the id when records are formatted later or elsewhere, e.g. behind a ``QueueHandler``.
    An id given explicitly through ``extra=`` is left alone.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "correlation_id", None) is None:
            record.correlation_id = correlation_id.get()
        return True


class JsonFormatter(logging.Formatter):
    """Formats a record as a single-line JSON object.

    Keys: ``ts`` (UTC, ISO 8601 with ``Z``), ``level``, ``logger``, ``message``, ``service``,
    ``correlation_id``, every ``extra=`` field of the call, and ``exception`` / ``stack``
    when present. The fixed keys win over an ``extra=`` field of the same name, so a careless
    call cannot forge the level or the service.
    """

    def __init__(self, service: str | None = None) -> None:
        super().__init__()
        self._service = service

    def format(self, record: logging.LogRecord) -> str:
        document: dict[str, Any] = {
            key: value
            for key, value in record.__dict__.items()
            if key not in _STANDARD_RECORD_ATTRIBUTES
        }
        document.update(
            ts=datetime.fromtimestamp(record.created, tz=UTC)
            .isoformat(timespec="milliseconds")
            .replace("+00:00", "Z"),
            level=record.levelname,
            logger=record.name,
            message=record.getMessage(),
            service=self._service,
            correlation_id=getattr(record, "correlation_id", None) or correlation_id.get(),
        )
        if record.exc_info:
            document["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            document["stack"] = self.formatStack(record.stack_info)
        return jsonlib.dumps(document, default=str, ensure_ascii=False)


class _ProcessStreamHandler(logging.Handler):
    """Writes each record to whatever ``sys.stdout`` (or ``sys.stderr``) is *at emit time*.

    A plain ``StreamHandler(sys.stdout)`` pins the stream object it was created with, which
    breaks as soon as stdout is swapped (test capture, tooling) and the old one is closed.
    """

    def __init__(self, *, to_stderr: bool) -> None:
        super().__init__()
        self.to_stderr = to_stderr

    def emit(self, record: logging.LogRecord) -> None:
        try:
            stream = sys.stderr if self.to_stderr else sys.stdout
            stream.write(self.format(record) + "\n")
            stream.flush()
        except Exception:
            self.handleError(record)


def configure_logging(
    service: str, level: str = "INFO", *, json: bool = True, to_stderr: bool = False
) -> None:
    """Send every log record of the process to stdout, as JSON lines by default.

    ``to_stderr``: to stderr instead, for a command whose stdout is its result (a document, a
    listing), so that redirecting it to a file keeps the logs out.

    Configures the root logger; calling it again replaces the handler it installed earlier
    instead of adding a second one (so records are never printed twice), and leaves handlers
    installed by others (pytest's capture, for instance) in place.

    Raises ``ValueError`` for an unknown level name.
    """
    root = logging.getLogger()
    for handler in list(root.handlers):
        if isinstance(handler, _ProcessStreamHandler):
            root.removeHandler(handler)
            handler.close()
    handler = _ProcessStreamHandler(to_stderr=to_stderr)
    handler.addFilter(CorrelationIdFilter())
    handler.setFormatter(JsonFormatter(service) if json else logging.Formatter(_TEXT_FORMAT))
    root.setLevel(level.upper())
    root.addHandler(handler)


class CorrelationIdMiddleware:
    """Pure ASGI middleware giving every HTTP request a correlation id.

    Takes the caller's ``X-Correlation-ID`` when it is sane (see
    :func:`is_valid_correlation_id`), otherwise mints a new one; exposes it through the
    :data:`correlation_id` context var for the duration of the request (logs, published
    events) and echoes it on the response so the caller can quote it in a support request.
    """

    def __init__(self, app: ASGIApp, *, header_name: str = CORRELATION_ID_HEADER) -> None:
        self.app = app
        self.header_name = header_name

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        incoming = Headers(scope=scope).get(self.header_name)
        value = (
            incoming
            if incoming is not None and is_valid_correlation_id(incoming)
            else new_correlation_id()
        )

        async def send_with_header(message: Message) -> None:
            if message["type"] == "http.response.start":
                message.setdefault("headers", [])
                MutableHeaders(scope=message)[self.header_name] = value
            await send(message)

        token = correlation_id.set(value)
        try:
            await self.app(scope, receive, send_with_header)
        finally:
            correlation_id.reset(token)
