"""Real servers standing in for the outside world: an SMTP server and an SMS provider.

Both listen on real local sockets; the service talks to them exactly as it would to the
real ones.
"""

from __future__ import annotations

import asyncio
import contextlib
import email
import email.policy
import ipaddress
import json
import ssl
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.support.ports import free_port
from tests.support.threads import in_thread


def self_signed_tls(directory: Path) -> tuple[ssl.SSLContext, Path]:
    """A server TLS context for 127.0.0.1, and the certificate file a client must trust."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "SMTP sink")])
    now = datetime.now(UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(key.public_key()), False)
        .sign(key, hashes.SHA256())
    )
    certificate_file, key_file = directory / "smtp.crt", directory / "smtp.key"
    certificate_file.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(certificate_file, key_file)
    return context, certificate_file


@dataclass
class Received:
    message: EmailMessage
    recipients: list[str]
    arrived_at: float
    raw: bytes
    """The message as it travelled, before any parsing."""

    @property
    def message_id(self) -> str:
        return str(self.message["Message-ID"])


@dataclass
class SmtpSink:
    """An aiosmtpd server that keeps every message it accepts.

    ``refuse``: recipients answered ``451`` (a server in trouble, try again later).
    ``stall_after``: once that many messages arrived, the next ones are *received* (kept in
    ``received``, as a server that got the data) but not answered until ``release()``.
    ``tls``: STARTTLS offered with this server context (:func:`self_signed_tls`).
    ``offer_login``: ``AUTH`` offered, after STARTTLS when there is ``tls``, else on the
    unencrypted connection, as a careless server does; ``logins`` records every login.
    """

    port: int = field(default_factory=free_port)
    received: list[Received] = field(default_factory=list)
    refuse: set[str] = field(default_factory=set)
    stall_after: int | None = None
    tls: ssl.SSLContext | None = None
    offer_login: bool = False
    logins: list[tuple[str, str, bool]] = field(default_factory=list)
    """(mechanism, user name, over TLS) of each ``AUTH`` the server received."""
    _released: threading.Event = field(default_factory=threading.Event)
    _controller: Controller | None = None

    def start(self) -> None:
        options: dict[str, Any] = {"tls_context": self.tls}
        if self.offer_login:
            options |= {"auth_require_tls": self.tls is not None, "authenticator": self._login}
        self._controller = Controller(self, hostname="127.0.0.1", port=self.port, **options)
        self._controller.start()

    def _login(
        self, server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any
    ) -> AuthResult:
        self.logins.append((mechanism, auth_data.login.decode(), session.ssl is not None))
        return AuthResult(success=True)

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
        self.received.append(
            Received(message, list(envelope.rcpt_tos), time.time(), envelope.content)
        )
        if self.stall_after is not None and len(self.received) > self.stall_after:
            await in_thread(self._released.wait)
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
