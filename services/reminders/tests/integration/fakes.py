"""Real servers standing in for the outside world: an SMTP server and an SMS provider.

Both listen on real local sockets; the service talks to them exactly as it would to the
real ones.
"""

from __future__ import annotations

import asyncio
import contextlib
import email
import email.policy
import json
import socket
import threading
import time
from dataclasses import dataclass, field
from email.message import EmailMessage
from typing import Any

from aiosmtpd.controller import Controller


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Received:
    message: EmailMessage
    recipients: list[str]
    arrived_at: float

    @property
    def message_id(self) -> str:
        return str(self.message["Message-ID"])


@dataclass
class SmtpSink:
    """An aiosmtpd server that keeps every message it accepts.

    ``refuse``: recipients answered ``451`` (a server in trouble, try again later).
    ``stall_after``: once that many messages arrived, the next ones are *received* (kept in
    ``received``, as a server that got the data) but not answered until ``release()``.
    """

    port: int = field(default_factory=free_port)
    received: list[Received] = field(default_factory=list)
    refuse: set[str] = field(default_factory=set)
    stall_after: int | None = None
    _released: threading.Event = field(default_factory=threading.Event)
    _controller: Controller | None = None

    def start(self) -> None:
        self._controller = Controller(self, hostname="127.0.0.1", port=self.port)
        self._controller.start()

    def stop(self) -> None:
        self.release()
        if self._controller is not None:
            self._controller.stop()

    def release(self) -> None:
        self._released.set()

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, rcpt_options: list[str]
    ) -> str:
        if address in self.refuse:
            return "451 4.3.0 Mailbox temporarily unavailable, try again later"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        assert isinstance(message, EmailMessage)
        self.received.append(Received(message, list(envelope.rcpt_tos), time.time()))
        if self.stall_after is not None and len(self.received) > self.stall_after:
            await asyncio.to_thread(self._released.wait)
        return "250 Message accepted for delivery"

    def to(self, address: str) -> list[Received]:
        return [r for r in self.received if address in r.recipients]


@dataclass
class SmsRequest:
    headers: dict[str, str]
    body: dict[str, Any]


@dataclass
class SmsProvider:
    """A minimal HTTP/1.1 server taking ``POST`` requests, answering ``status``."""

    token: str = "sms-token-123"
    status: int = 200
    failing: set[str] = field(default_factory=set)
    """Phone numbers answered with 500 whatever ``status`` says."""
    requests: list[SmsRequest] = field(default_factory=list)
    _server: asyncio.Server | None = None

    @property
    def url(self) -> str:
        assert self._server is not None
        port = self._server.sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}/v1/messages"

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    def to(self, phone: str) -> list[SmsRequest]:
        return [r for r in self.requests if r.body.get("to") == phone]

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError):
            while request_line := await reader.readline():
                headers: dict[str, str] = {}
                while (line := await reader.readline()) not in (b"\r\n", b""):
                    name, _, value = line.decode().partition(":")
                    headers[name.strip().lower()] = value.strip()
                body = await reader.readexactly(int(headers.get("content-length", "0")))
                assert request_line.startswith(b"POST /v1/messages ")
                payload = json.loads(body)
                self.requests.append(SmsRequest(headers=headers, body=payload))
                status = 500 if payload.get("to") in self.failing else self.status
                answer = json.dumps({"accepted": status < 300}).encode()
                writer.write(
                    f"HTTP/1.1 {status} X\r\nContent-Type: application/json\r\n"
                    f"Content-Length: {len(answer)}\r\n\r\n".encode()
                    + answer
                )
                await writer.drain()
        writer.close()
