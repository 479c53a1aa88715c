"""The edges that deliver: email over SMTP (aiosmtplib) and SMS through an HTTP provider."""

from __future__ import annotations

import time
from dataclasses import dataclass

import aiosmtplib
import httpx


class DeliveryError(Exception):
    """The provider refused or could not take the message (retried with backoff)."""


class PlaintextLoginRefused(DeliveryError):
    """A login is configured but the SMTP server offers no encryption: nothing is sent."""


@dataclass(frozen=True, slots=True)
class SmtpConfig:
    """``use_tls``: implicit TLS (SMTPS). ``start_tls``: True requires STARTTLS, False never,
    None when the server offers it; with a ``username`` it is required whatever it says, so
    a login never travels over an unencrypted connection."""

    host: str
    port: int
    use_tls: bool = False
    start_tls: bool | None = None
    username: str | None = None
    password: str | None = None
    timeout_s: float = 20.0
    idle_s: float = 10.0


class SmtpConnection:
    """One SMTP session reused for many messages (one per concurrent sender).

    A connection idle for longer than ``idle_s`` is replaced before the next message, since
    servers drop idle clients; after any error it is closed, and the next message opens a
    new one. Nothing is resent here: a failed message is retried later, with backoff.
    """

    def __init__(self, config: SmtpConfig) -> None:
        self.config = config
        self._client: aiosmtplib.SMTP | None = None
        self._last_used = 0.0

    async def send(self, sender: str, recipient: str, message: bytes) -> None:
        if self._client is not None and time.monotonic() - self._last_used > self.config.idle_s:
            await self.close()
        try:
            if self._client is None:
                self._client = await self._connect()
            await self._client.sendmail(sender, [recipient], message)
        except Exception:
            await self.close()
            raise
        self._last_used = time.monotonic()

    async def _connect(self) -> aiosmtplib.SMTP:
        c = self.config
        if c.username is not None and not c.use_tls:
            return await self._connect_starttls_then_login(c.username)
        client = aiosmtplib.SMTP(
            hostname=c.host,
            port=c.port,
            use_tls=c.use_tls,
            start_tls=c.start_tls,
            username=c.username,
            password=c.password,
            timeout=c.timeout_s,
        )
        await client.connect()
        return client

    async def _connect_starttls_then_login(self, username: str) -> aiosmtplib.SMTP:
        """A login on a connection that starts unencrypted: STARTTLS first, or nothing at
        all (not even the ``AUTH`` command) goes to a server that does not offer it."""
        c = self.config
        client = aiosmtplib.SMTP(hostname=c.host, port=c.port, start_tls=False, timeout=c.timeout_s)
        await client.connect()
        try:
            await client.ehlo()
            if not client.supports_extension("starttls"):
                raise PlaintextLoginRefused(
                    f"the SMTP server {c.host}:{c.port} does not offer STARTTLS, and the "
                    "login is never sent unencrypted: use implicit TLS "
                    "(REMINDERS_SMTP_USE_TLS=true) or a server that offers STARTTLS"
                )
            await client.starttls()
            await client.login(username, c.password or "")
        except BaseException:
            client.close()
            raise
        return client

    async def close(self) -> None:
        client, self._client = self._client, None
        if client is None:
            return
        try:
            await client.quit()
        except Exception:
            client.close()


@dataclass(frozen=True, slots=True)
class SmsConfig:
    url: str
    token: str | None = None
    timeout_s: float = 10.0


class SmsSender:
    """``POST {to, text, message_id}`` as JSON; anything but a 2xx answer is a failure.

    ``message_id`` (also sent as ``Idempotency-Key``) is the reminder's stable id: a
    provider that honours it drops the rare repeat after a worker crash.
    """

    def __init__(self, config: SmsConfig) -> None:
        self.config = config
        headers = {"Authorization": f"Bearer {config.token}"} if config.token else {}
        self._client = httpx.AsyncClient(headers=headers, timeout=config.timeout_s)

    async def send(self, *, to: str, text: str, message_id: str) -> None:
        response = await self._client.post(
            self.config.url,
            json={"to": to, "text": text, "message_id": message_id},
            headers={"Idempotency-Key": message_id},
        )
        if not response.is_success:
            raise DeliveryError(
                f"SMS provider answered {response.status_code}: {response.text[:200]}"
            )

    async def close(self) -> None:
        await self._client.aclose()
