"""Signing tokens: the way an identity provider would, and ``<service> token`` for developers.

The services only verify tokens (:mod:`platform_runtime.http.auth`); in production an identity
provider issues them. On a development machine ``<service> token SUBJECT [--role ROLE]...`` prints
one that the service accepts: signed with its HS* secret (the public development secret unless
``<SERVICE>_JWT_SECRET`` is set), with its issuer and audience when those are set. The
command refuses to run unless ``<SERVICE>_DEVELOPMENT`` is true, and it cannot sign for a
service that verifies with a public key (RS*/ES*: only the provider holds the private key).

This module imports only PyJWT and the settings, so the command answers in well under a
second (no web framework, database or Kafka client is loaded for it).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt

from platform_runtime.errors import KernelError
from platform_runtime.settings import DEV_JWT_SECRET, ServiceSettings


def issue_token(
    *,
    secret_or_private_key: str,
    algorithm: str = "HS256",
    subject: str,
    roles: Iterable[str] = (),
    email: str | None = None,
    ttl: timedelta = timedelta(hours=1),
    issuer: str | None = None,
    audience: str | None = None,
    now: datetime | None = None,
) -> str:
    """Sign a token the way the identity provider would (tests, demo, benchmarks).

    ``now`` (timezone-aware) pins ``iat``; ``exp`` is ``now + ttl``.
    """
    issued_at = datetime.now(UTC) if now is None else now
    if issued_at.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    claims: dict[str, Any] = {
        "sub": subject,
        "roles": list(roles),
        "iat": int(issued_at.timestamp()),
        "exp": int((issued_at + ttl).timestamp()),
    }
    if email is not None:
        claims["email"] = email
    if issuer is not None:
        claims["iss"] = issuer
    if audience is not None:
        claims["aud"] = audience
    return jwt.encode(claims, secret_or_private_key, algorithm=algorithm)


class NotForDevelopment(KernelError):
    """The service's settings do not allow signing development tokens (the message says why
    and what to set)."""


def development_token(
    settings: ServiceSettings,
    *,
    subject: str,
    roles: Iterable[str] = (),
    email: str | None = None,
    ttl: timedelta = timedelta(hours=1),
) -> str:
    """A token ``settings``' service accepts, for a development machine only."""
    prefix = str(settings.model_config.get("env_prefix", ""))
    if not settings.development:
        raise NotForDevelopment(
            f"{settings.service_name} token signs development tokens only: set "
            f"{prefix}DEVELOPMENT=true (as make up does; never where anyone but developers "
            "reaches the service)"
        )
    if settings.jwt_public_key or not settings.jwt_algorithm.startswith("HS"):
        raise NotForDevelopment(
            f"{settings.service_name} verifies {settings.jwt_algorithm} tokens with a public "
            "key: only the identity provider that holds the private key can sign them"
        )
    secret = settings.jwt_secret.get_secret_value() if settings.jwt_secret else ""
    return issue_token(
        secret_or_private_key=secret or DEV_JWT_SECRET,
        algorithm=settings.jwt_algorithm,
        subject=subject,
        roles=roles,
        email=email,
        ttl=ttl,
        issuer=settings.jwt_issuer,
        audience=settings.jwt_audience,
    )


MAX_MINUTES = 24 * 60


def configure(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Print a token this service accepts, for a development machine "
        "(needs <SERVICE>_DEVELOPMENT=true)."
    )
    parser.add_argument("subject", help="the user id the token names (its 'sub' claim)")
    parser.add_argument(
        "--role",
        dest="roles",
        action="append",
        default=[],
        metavar="ROLE",
        help="a role of the user, e.g. admin (repeat for several)",
    )
    parser.add_argument(
        "--email", help="the 'email' claim (default: SUBJECT@example.com; '' for none)"
    )
    parser.add_argument(
        "--minutes",
        type=int,
        default=60,
        choices=range(1, MAX_MINUTES + 1),
        metavar=f"1..{MAX_MINUTES}",
        help="how long the token is valid (default: %(default)s)",
    )


def run(settings: ServiceSettings, args: argparse.Namespace) -> int:
    email = f"{args.subject}@example.com" if args.email is None else (args.email or None)
    try:
        token = development_token(
            settings,
            subject=args.subject,
            roles=args.roles,
            email=email,
            ttl=timedelta(minutes=args.minutes),
        )
    except NotForDevelopment as exc:
        sys.stderr.write(f"refused: {exc}\n")
        return 2
    sys.stdout.write(f"{token}\n")
    return 0
