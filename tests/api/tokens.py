"""Bearer tokens the services must refuse, each claiming the admin role (so that a token let
through by mistake would open every door, not just some)."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from platform_runtime.settings import DEV_JWT_SECRET
from platform_runtime.tokens import issue_token
from platform_tooling.client import token

ANOTHER_SECRET = "a-secret-the-platform-never-heard-of-0123456789"
"""As long as the real one (HS256 wants 32 bytes), so only the signature gives it away."""

SUBJECT = "intruder"
ROLES = ("admin",)


def expired() -> str:
    """Signed with the platform's secret, but its hour ended an hour ago (beyond any leeway)."""
    return issue_token(
        secret_or_private_key=DEV_JWT_SECRET,
        subject=SUBJECT,
        roles=ROLES,
        email=f"{SUBJECT}@example.com",
        ttl=timedelta(hours=1),
        now=datetime.now(UTC) - timedelta(hours=2),
    )


def forged() -> str:
    """Well-formed and current, signed with a secret that is not the platform's."""
    return token(SUBJECT, ROLES, secret=ANOTHER_SECRET)


def unsigned() -> str:
    """``alg: none``: valid claims and no signature at all."""
    now = int(datetime.now(UTC).timestamp())
    header = {"alg": "none", "typ": "JWT"}
    claims = {
        "sub": SUBJECT,
        "roles": list(ROLES),
        "email": f"{SUBJECT}@example.com",
        "iat": now,
        "exp": now + 3600,
    }
    return f"{_segment(header)}.{_segment(claims)}."


def _segment(value: Mapping[str, object]) -> str:
    raw = json.dumps(value, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


@dataclass(frozen=True)
class BadCredentials:
    """A way of calling without valid credentials, and what the refusal must say."""

    name: str
    headers: Callable[[], dict[str, str]]
    challenge: str
    """What the ``WWW-Authenticate`` header must contain."""
    reason: str
    """What the problem's ``detail`` must contain."""

    def __str__(self) -> str:
        return self.name


def _bearer(make: Callable[[], str]) -> Callable[[], dict[str, str]]:
    return lambda: {"Authorization": f"Bearer {make()}"}


BAD_CREDENTIALS = (
    BadCredentials("no-token", lambda: {}, "Bearer", "bearer token is required"),
    BadCredentials("expired", _bearer(expired), 'error="invalid_token"', "expired"),
    BadCredentials("forged", _bearer(forged), 'error="invalid_token"', "signature is invalid"),
    BadCredentials("alg-none", _bearer(unsigned), 'error="invalid_token"', "algorithm"),
)
