"""JWT bearer authentication: who is calling, and may they do this.

The services never issue tokens for end users (an identity provider does); they only verify
them, statelessly, with a shared secret (HS*) or the provider's public key (RS*/PS*/ES*).
Exactly one algorithm is accepted per deployment, chosen by configuration and never by the
token, which shuts out ``alg: none`` and algorithm-confusion tokens.

FastAPI routes declare ``user: CurrentUser`` or ``admin: AdminUser``; a missing or bad token
becomes a 401 problem with ``WWW-Authenticate: Bearer`` (RFC 6750), a non-admin on an admin
route a 403.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass
from typing import Annotated, Any, Final

import jwt
from cryptography.hazmat.primitives.asymmetric.ec import EllipticCurvePublicKey
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey
from cryptography.hazmat.primitives.serialization import load_pem_public_key
from fastapi import Depends, FastAPI, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import TypeAdapter, ValidationError
from starlette.exceptions import HTTPException

from booking_contracts.bounds import EmailAddress
from platform_runtime.errors import KernelError

HMAC_ALGORITHMS: Final = frozenset({"HS256", "HS384", "HS512"})
RSA_ALGORITHMS: Final = frozenset({"RS256", "RS384", "RS512", "PS256", "PS384", "PS512"})
EC_ALGORITHMS: Final = frozenset({"ES256", "ES384", "ES512"})
MIN_HMAC_SECRET_BYTES: Final = 32
ADMIN_ROLE: Final = "admin"
MAX_SUBJECT_CHARS: Final = 255
MAX_EMAIL_CHARS: Final = 254
"""The longest address SMTP can carry (RFC 5321 §4.5.3.1.3 with its RFC 3696 erratum)."""
_EMAIL: Final = TypeAdapter(EmailAddress)

_VERIFIER_STATE_KEY: Final = "jwt_verifier"
_BEARER_SCHEME: Final = HTTPBearer(
    scheme_name="bearerAuth",
    description="A JWT issued by the identity provider: `Authorization: Bearer <token>`.",
    auto_error=False,
)
"""Only declares the security scheme in OpenAPI; the 401 answers are ours."""


class AuthenticationError(KernelError):
    """A token could not be trusted; ``reason`` says why in a few words, safe to show."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class JwtConfig:
    """How tokens are verified. Checked eagerly so a misconfigured service fails at start.

    ``secret`` is used with HS* and must be at least 32 bytes (RFC 7518 §3.2);
    ``public_key`` is a PEM public key used with RS*/PS* (RSA) or ES* (EC). The key that
    does not belong to ``algorithm`` is ignored. ``issuer`` and ``audience``, when set, must
    match the token's ``iss`` and ``aud``; ``leeway_seconds`` tolerates clock skew.
    """

    algorithm: str = "HS256"
    secret: str | None = None
    public_key: str | None = None
    issuer: str | None = None
    audience: str | None = None
    leeway_seconds: int = 30

    def __post_init__(self) -> None:
        if self.leeway_seconds < 0:
            raise ValueError("leeway_seconds must not be negative")
        if self.algorithm in HMAC_ALGORITHMS:
            if not self.secret:
                raise ValueError(f"JWT algorithm {self.algorithm} needs a secret")
            if len(self.secret.encode()) < MIN_HMAC_SECRET_BYTES:
                raise ValueError(
                    f"JWT secret for {self.algorithm} must be at least "
                    f"{MIN_HMAC_SECRET_BYTES} bytes long"
                )
        elif self.algorithm in RSA_ALGORITHMS | EC_ALGORITHMS:
            self.verification_key()  # validates presence, format and key type
        else:
            supported = ", ".join(sorted(HMAC_ALGORITHMS | RSA_ALGORITHMS | EC_ALGORITHMS))
            raise ValueError(
                f"unsupported JWT algorithm {self.algorithm!r}; use one of {supported}"
            )

    def verification_key(self) -> Any:
        """The key object that verifies signatures for ``algorithm``."""
        if self.algorithm in HMAC_ALGORITHMS:
            return self.secret
        if not self.public_key:
            raise ValueError(f"JWT algorithm {self.algorithm} needs a PEM public key")
        try:
            key = load_pem_public_key(self.public_key.encode())
        except ValueError as exc:
            raise ValueError(f"JWT public key is not a PEM public key: {exc}") from exc
        expected = RSAPublicKey if self.algorithm in RSA_ALGORITHMS else EllipticCurvePublicKey
        if not isinstance(key, expected):
            raise ValueError(f"JWT public key does not fit algorithm {self.algorithm}")
        return key


@dataclass(frozen=True)
class Principal:
    """The authenticated caller: the token's subject, roles and e-mail address."""

    subject: str
    roles: frozenset[str]
    email: str | None = None

    @property
    def is_admin(self) -> bool:
        return ADMIN_ROLE in self.roles


class JwtVerifier:
    """Turns a bearer token into a :class:`Principal`, or raises :class:`AuthenticationError`.

    A token is accepted only if it is signed with the configured algorithm and key, is not
    expired, has a ``sub`` of 1-255 characters without control characters, and (when
    configured) the expected ``iss`` and ``aud``. ``roles`` must be a list of strings when
    present; ``email`` an e-mail address. A token that breaks one of these is refused (401)
    rather than half-used: its ``sub`` could not be stored as a user id, its ``email`` would
    fail as a booking's contact.
    """

    def __init__(self, config: JwtConfig) -> None:
        self.config = config
        self._key = config.verification_key()
        required = ["exp", "sub"]
        if config.issuer is not None:
            required.append("iss")
        if config.audience is not None:
            required.append("aud")
        self._required_claims = required

    def verify(self, token: str) -> Principal:
        claims = self._decode(token)
        roles = claims.get("roles", [])
        if not isinstance(roles, list) or not all(isinstance(role, str) for role in roles):
            raise AuthenticationError("the roles claim must be a list of strings")
        return Principal(
            subject=_subject(claims["sub"]), roles=frozenset(roles), email=_email(claims)
        )

    def _decode(self, token: str) -> dict[str, Any]:
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                self._key,
                algorithms=[self.config.algorithm],
                issuer=self.config.issuer,
                audience=self.config.audience,
                leeway=self.config.leeway_seconds,
                options={"require": self._required_claims},
            )
        except jwt.ExpiredSignatureError as exc:
            raise AuthenticationError("the token has expired") from exc
        except jwt.ImmatureSignatureError as exc:
            raise AuthenticationError("the token is not valid yet") from exc
        except jwt.InvalidSignatureError as exc:
            raise AuthenticationError("the token signature is invalid") from exc
        except jwt.InvalidAlgorithmError as exc:
            raise AuthenticationError("the token algorithm is not accepted") from exc
        except jwt.InvalidIssuerError as exc:
            raise AuthenticationError("the token issuer is not accepted") from exc
        except jwt.InvalidAudienceError as exc:
            raise AuthenticationError("the token audience is not accepted") from exc
        except jwt.MissingRequiredClaimError as exc:
            raise AuthenticationError(f"the token lacks the {exc.claim} claim") from exc
        except jwt.InvalidTokenError as exc:
            raise AuthenticationError("the token is malformed") from exc
        return claims


def _subject(claim: Any) -> str:
    """The ``sub`` claim, which every service stores as the caller's id: a string of
    1-255 characters (the width of the user id columns), no control characters."""
    if not isinstance(claim, str) or not claim.strip():
        raise AuthenticationError("the sub claim must be a non-empty string")
    if len(claim) > MAX_SUBJECT_CHARS:
        raise AuthenticationError(
            f"the sub claim must be at most {MAX_SUBJECT_CHARS} characters long"
        )
    if any(unicodedata.category(char) == "Cc" for char in claim):
        raise AuthenticationError("the sub claim must not contain control characters")
    return claim


def _email(claims: dict[str, Any]) -> str | None:
    """The ``email`` claim, when present: an address a booking's reminders can go to."""
    claim = claims.get("email")
    if claim is None:
        return None
    if not isinstance(claim, str):
        raise AuthenticationError("the email claim must be a string")
    if not _is_email_address(claim):
        raise AuthenticationError("the email claim is not an e-mail address")
    return claim


def _is_email_address(text: str) -> bool:
    """Whether ``text`` is an address by the rules of the contact in the events
    (``EmailAddress`` caches the addresses it accepted: the same callers come back with the
    same claim, and the check costs more than the rest of a token's verification)."""
    if len(text) > MAX_EMAIL_CHARS:
        return False
    try:
        _EMAIL.validate_python(text)
    except ValidationError:
        return False
    return True


def install_auth(app: FastAPI, verifier: JwtVerifier) -> None:
    """Make ``verifier`` the one :func:`current_principal` uses for ``app``."""
    setattr(app.state, _VERIFIER_STATE_KEY, verifier)


def _unauthorized(detail: str, challenge: str) -> HTTPException:
    return HTTPException(status_code=401, detail=detail, headers={"WWW-Authenticate": challenge})


async def current_principal(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_BEARER_SCHEME)],
) -> Principal:
    """FastAPI dependency: the caller of the request, from its bearer token.

    No bearer token -> 401 with a bare ``Bearer`` challenge; a token that fails verification
    -> 401 with ``error="invalid_token"`` and the reason (RFC 6750 §3).
    """
    verifier = getattr(request.app.state, _VERIFIER_STATE_KEY, None)
    if not isinstance(verifier, JwtVerifier):
        raise RuntimeError("install_auth(app, verifier) must be called before serving")
    if credentials is None:
        raise _unauthorized("A bearer token is required.", "Bearer")
    try:
        return verifier.verify(credentials.credentials)
    except AuthenticationError as exc:
        challenge = f'Bearer error="invalid_token", error_description="{exc.reason}"'
        raise _unauthorized(f"The bearer token was refused: {exc.reason}.", challenge) from exc


CurrentUser = Annotated[Principal, Depends(current_principal)]
"""Route parameter type for "any authenticated caller"."""


async def require_admin(principal: CurrentUser) -> Principal:
    """FastAPI dependency: the caller, who must hold the ``admin`` role (else 403)."""
    if not principal.is_admin:
        raise HTTPException(
            status_code=403,
            detail="This operation requires the admin role.",
            headers={"WWW-Authenticate": 'Bearer error="insufficient_scope"'},
        )
    return principal


AdminUser = Annotated[Principal, Depends(require_admin)]
"""Route parameter type for "an authenticated caller with the admin role"."""
