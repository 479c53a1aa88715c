"""Bearer authentication: who gets in, who is turned away, and what they are told."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from fastapi import FastAPI

from platform_runtime.http.auth import (
    AdminUser,
    AuthenticationError,
    CurrentUser,
    JwtConfig,
    JwtVerifier,
    Principal,
    install_auth,
)
from platform_runtime.http.problems import install_problem_handlers
from platform_runtime.tokens import issue_token

SECRET = "unit-test-secret-that-is-long-enough-0123456789"
OTHER_SECRET = "another-secret-that-is-also-long-enough-9876543210"


def _pem_private(key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()


def _pem_public(key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey) -> str:
    return (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


@pytest.fixture(scope="module")
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def ec_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _hs256_with_raw_key(claims: dict[str, Any], key: bytes) -> str:
    """Sign like a naive library would, with any bytes as the HMAC key (PyJWT refuses)."""
    header = json.dumps({"alg": "HS256", "typ": "JWT"}).encode()
    signing_input = f"{_b64(header)}.{_b64(json.dumps(claims).encode())}"
    signature = hmac.new(key, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{_b64(signature)}"


def _claims(**overrides: Any) -> dict[str, Any]:
    now = datetime.now(UTC)
    claims: dict[str, Any] = {"sub": "user-1", "exp": int((now + timedelta(hours=1)).timestamp())}
    claims.update(overrides)
    return {key: value for key, value in claims.items() if value is not None}


def _app(verifier: JwtVerifier) -> FastAPI:
    app = FastAPI()
    install_problem_handlers(app)
    install_auth(app, verifier)

    @app.get("/me")
    async def me(user: CurrentUser) -> dict[str, Any]:
        return {"subject": user.subject, "roles": sorted(user.roles), "email": user.email}

    @app.post("/admin/purge")
    async def purge(admin: AdminUser) -> dict[str, str]:
        return {"purged_by": admin.subject}

    return app


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def _refusal(client: Any, app: FastAPI, token: str) -> httpx.Response:
    async with client(app) as http:
        response: httpx.Response = await http.get("/me", headers=_bearer(token))
        return response


def _assert_invalid_token(response: httpx.Response, reason_fragment: str) -> None:
    assert response.status_code == 401
    assert response.headers["content-type"] == "application/problem+json"
    challenge = response.headers["www-authenticate"]
    assert challenge.startswith('Bearer error="invalid_token"')
    body = response.json()
    assert body["status"] == 401
    assert body["title"] == "Unauthorized"
    assert body["instance"] == "/me"
    assert reason_fragment in body["detail"]
    assert reason_fragment in challenge


# --- configuration -------------------------------------------------------------------------


def test_hs256_config_refuses_a_short_secret() -> None:
    with pytest.raises(ValueError, match="at least 32 bytes"):
        JwtConfig(secret="too-short")


def test_hs256_config_refuses_a_missing_secret() -> None:
    with pytest.raises(ValueError, match="needs a secret"):
        JwtConfig(secret=None)


def test_config_refuses_an_unknown_algorithm() -> None:
    with pytest.raises(ValueError, match="unsupported JWT algorithm 'none'"):
        JwtConfig(algorithm="none", secret=SECRET)


def test_config_refuses_a_negative_leeway() -> None:
    with pytest.raises(ValueError, match="leeway"):
        JwtConfig(secret=SECRET, leeway_seconds=-1)


def test_rs256_config_needs_a_public_key() -> None:
    with pytest.raises(ValueError, match="needs a PEM public key"):
        JwtConfig(algorithm="RS256", secret=SECRET)


def test_rs256_config_refuses_text_that_is_not_a_pem_public_key(
    rsa_key: rsa.RSAPrivateKey,
) -> None:
    with pytest.raises(ValueError, match="not a PEM public key"):
        JwtConfig(algorithm="RS256", public_key=_pem_private(rsa_key))


def test_config_refuses_a_public_key_of_the_wrong_family(
    ec_key: ec.EllipticCurvePrivateKey, rsa_key: rsa.RSAPrivateKey
) -> None:
    with pytest.raises(ValueError, match="does not fit algorithm RS256"):
        JwtConfig(algorithm="RS256", public_key=_pem_public(ec_key))
    with pytest.raises(ValueError, match="does not fit algorithm ES256"):
        JwtConfig(algorithm="ES256", public_key=_pem_public(rsa_key))


def test_a_secret_left_configured_does_not_bother_an_rs256_config(
    rsa_key: rsa.RSAPrivateKey,
) -> None:
    config = JwtConfig(algorithm="RS256", secret="short", public_key=_pem_public(rsa_key))
    assert config.algorithm == "RS256"


# --- the verifier on its own ------------------------------------------------------------


def test_a_valid_token_yields_the_principal_it_describes(
    verifier: JwtVerifier, make_token: Callable[..., str]
) -> None:
    token = make_token(subject="alice", roles=["admin", "staff"], email="alice@example.org")

    principal = verifier.verify(token)

    assert principal == Principal(
        subject="alice", roles=frozenset({"admin", "staff"}), email="alice@example.org"
    )
    assert principal.is_admin


def test_a_token_without_roles_yields_a_plain_user(verifier: JwtVerifier) -> None:
    principal = verifier.verify(jwt.encode(_claims(), SECRET, algorithm="HS256"))

    assert principal.roles == frozenset()
    assert principal.email is None
    assert not principal.is_admin


def test_every_verification_failure_is_an_authentication_error(verifier: JwtVerifier) -> None:
    with pytest.raises(AuthenticationError) as caught:
        verifier.verify("not-a-jwt")

    assert caught.value.reason == "the token is malformed"


def test_a_token_expired_within_the_leeway_is_still_accepted(
    verifier: JwtVerifier, make_token: Callable[..., str]
) -> None:
    issued = datetime.now(UTC) - timedelta(minutes=10, seconds=-20)
    token = make_token(now=issued, ttl=timedelta(minutes=10))  # expired 20 s ago

    assert verifier.verify(token).subject == "user-1"


def test_issue_token_refuses_a_naive_now() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        issue_token(secret_or_private_key=SECRET, subject="x", now=datetime(2030, 1, 1))


def test_issue_token_pins_iat_and_exp_to_now_and_ttl() -> None:
    now = datetime(2030, 1, 1, tzinfo=UTC)

    token = issue_token(
        secret_or_private_key=SECRET, subject="x", now=now, ttl=timedelta(minutes=5)
    )

    claims = jwt.decode(token, options={"verify_signature": False})
    assert claims["iat"] == int(now.timestamp())
    assert claims["exp"] == int(now.timestamp()) + 300


# --- over HTTP ----------------------------------------------------------------------------


async def test_a_valid_token_reaches_the_route_with_the_callers_identity(
    verifier: JwtVerifier, make_token: Callable[..., str], client: Any
) -> None:
    token = make_token(subject="bob", roles=["customer"], email="bob@example.org")

    async with client(_app(verifier)) as http:
        response = await http.get("/me", headers=_bearer(token))

    assert response.status_code == 200
    assert response.json() == {"subject": "bob", "roles": ["customer"], "email": "bob@example.org"}


async def test_a_request_without_a_token_is_refused_with_401(
    verifier: JwtVerifier, client: Any
) -> None:
    async with client(_app(verifier)) as http:
        response = await http.get("/me")

    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json() == {
        "type": "about:blank",
        "title": "Unauthorized",
        "status": 401,
        "detail": "A bearer token is required.",
        "instance": "/me",
    }


async def test_a_non_bearer_authorization_header_is_refused_with_401(
    verifier: JwtVerifier, client: Any
) -> None:
    async with client(_app(verifier)) as http:
        response = await http.get("/me", headers={"Authorization": "Basic dXNlcjpwYXNz"})

    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"


async def test_expired_token_is_refused_with_401(
    verifier: JwtVerifier, make_token: Callable[..., str], client: Any
) -> None:
    token = make_token(now=datetime.now(UTC) - timedelta(hours=2), ttl=timedelta(hours=1))

    _assert_invalid_token(await _refusal(client, _app(verifier), token), "expired")


async def test_token_signed_with_another_secret_is_refused_with_401(
    verifier: JwtVerifier, make_token: Callable[..., str], client: Any
) -> None:
    token = make_token(secret_or_private_key=OTHER_SECRET)

    _assert_invalid_token(await _refusal(client, _app(verifier), token), "signature is invalid")


async def test_unsigned_alg_none_token_is_refused_with_401(
    verifier: JwtVerifier, client: Any
) -> None:
    # alg "none" takes no key, which PyJWT's annotations leave out
    token = jwt.encode(_claims(roles=["admin"]), None, algorithm="none")  # type: ignore[arg-type]

    _assert_invalid_token(await _refusal(client, _app(verifier), token), "algorithm")


async def test_rs256_token_is_refused_by_an_hs256_verifier_with_401(
    verifier: JwtVerifier, rsa_key: rsa.RSAPrivateKey, client: Any
) -> None:
    token = issue_token(
        secret_or_private_key=_pem_private(rsa_key), algorithm="RS256", subject="mallory"
    )

    _assert_invalid_token(await _refusal(client, _app(verifier), token), "algorithm")


async def test_hs256_token_keyed_with_the_public_key_is_refused_by_an_rs256_verifier(
    rsa_key: rsa.RSAPrivateKey, client: Any
) -> None:
    public_pem = _pem_public(rsa_key)
    rs256 = JwtVerifier(JwtConfig(algorithm="RS256", public_key=public_pem))
    forged = _hs256_with_raw_key(_claims(roles=["admin"]), public_pem.encode())

    _assert_invalid_token(await _refusal(client, _app(rs256), forged), "algorithm")


async def test_token_without_sub_is_refused_with_401(verifier: JwtVerifier, client: Any) -> None:
    token = jwt.encode(_claims(sub=None), SECRET, algorithm="HS256")

    _assert_invalid_token(await _refusal(client, _app(verifier), token), "sub claim")


async def test_token_with_a_blank_sub_is_refused_with_401(
    verifier: JwtVerifier, client: Any
) -> None:
    token = jwt.encode(_claims(sub="  "), SECRET, algorithm="HS256")

    _assert_invalid_token(await _refusal(client, _app(verifier), token), "sub claim")


async def test_token_without_exp_is_refused_with_401(verifier: JwtVerifier, client: Any) -> None:
    token = jwt.encode(_claims(exp=None), SECRET, algorithm="HS256")

    _assert_invalid_token(await _refusal(client, _app(verifier), token), "exp claim")


@pytest.mark.parametrize("roles", ["admin", [1, 2], {"admin": True}])
async def test_token_whose_roles_are_not_a_list_of_strings_is_refused_with_401(
    verifier: JwtVerifier, client: Any, roles: object
) -> None:
    token = jwt.encode(_claims(roles=roles), SECRET, algorithm="HS256")

    _assert_invalid_token(await _refusal(client, _app(verifier), token), "roles claim")


async def test_token_whose_email_is_not_a_string_is_refused_with_401(
    verifier: JwtVerifier, client: Any
) -> None:
    token = jwt.encode(_claims(email=["a@example.org"]), SECRET, algorithm="HS256")

    _assert_invalid_token(await _refusal(client, _app(verifier), token), "email claim")


@pytest.mark.parametrize("email", ["not an address", "a@", "@example.org", "a@b@example.org"])
async def test_token_whose_email_is_not_an_address_is_refused_with_401(
    verifier: JwtVerifier, client: Any, email: str
) -> None:
    token = jwt.encode(_claims(email=email), SECRET, algorithm="HS256")

    _assert_invalid_token(
        await _refusal(client, _app(verifier), token), "email claim is not an e-mail address"
    )


async def test_token_whose_email_is_longer_than_an_address_can_be_is_refused_with_401(
    verifier: JwtVerifier, client: Any
) -> None:
    token = jwt.encode(_claims(email="a" * 250 + "@example.org"), SECRET, algorithm="HS256")

    _assert_invalid_token(await _refusal(client, _app(verifier), token), "email claim")


async def test_token_whose_sub_is_longer_than_a_user_id_can_be_is_refused_with_401(
    verifier: JwtVerifier, client: Any
) -> None:
    longest = jwt.encode(_claims(sub="u" * 255), SECRET, algorithm="HS256")
    too_long = jwt.encode(_claims(sub="u" * 256), SECRET, algorithm="HS256")

    async with client(_app(verifier)) as http:
        accepted = await http.get("/me", headers=_bearer(longest))
    assert accepted.status_code == 200
    assert accepted.json()["subject"] == "u" * 255
    _assert_invalid_token(
        await _refusal(client, _app(verifier), too_long), "sub claim must be at most 255"
    )


@pytest.mark.parametrize("sub", ["user\x00one", "user\none", "user\x7f"])
async def test_token_whose_sub_holds_control_characters_is_refused_with_401(
    verifier: JwtVerifier, client: Any, sub: str
) -> None:
    token = jwt.encode(_claims(sub=sub), SECRET, algorithm="HS256")

    _assert_invalid_token(await _refusal(client, _app(verifier), token), "control characters")


async def test_garbage_instead_of_a_token_is_refused_with_401(
    verifier: JwtVerifier, client: Any
) -> None:
    _assert_invalid_token(await _refusal(client, _app(verifier), "garbage"), "malformed")


async def test_token_not_valid_yet_is_refused_with_401(verifier: JwtVerifier, client: Any) -> None:
    later = int((datetime.now(UTC) + timedelta(minutes=10)).timestamp())
    token = jwt.encode(_claims(nbf=later), SECRET, algorithm="HS256")

    _assert_invalid_token(await _refusal(client, _app(verifier), token), "not valid yet")


async def test_token_from_another_issuer_or_for_another_audience_is_refused_with_401(
    client: Any,
) -> None:
    strict = JwtVerifier(JwtConfig(secret=SECRET, issuer="https://idp", audience="booking"))
    app = _app(strict)

    def token(*, issuer: str | None = None, audience: str | None = None) -> str:
        return issue_token(
            secret_or_private_key=SECRET, subject="u", issuer=issuer, audience=audience
        )

    _assert_invalid_token(
        await _refusal(client, app, token(issuer="https://evil", audience="booking")), "issuer"
    )
    _assert_invalid_token(
        await _refusal(client, app, token(issuer="https://idp", audience="billing")), "audience"
    )
    _assert_invalid_token(await _refusal(client, app, token(audience="booking")), "iss claim")
    accepted = await _refusal(client, app, token(issuer="https://idp", audience="booking"))
    assert accepted.status_code == 200


async def test_a_token_with_an_audience_is_refused_where_none_is_expected(
    verifier: JwtVerifier, make_token: Callable[..., str], client: Any
) -> None:
    token = make_token(audience="someone-else")

    _assert_invalid_token(await _refusal(client, _app(verifier), token), "audience")


async def test_a_plain_user_on_an_admin_route_is_refused_with_403(
    verifier: JwtVerifier, make_token: Callable[..., str], client: Any
) -> None:
    async with client(_app(verifier)) as http:
        response = await http.post("/admin/purge", headers=_bearer(make_token(roles=["staff"])))

    assert response.status_code == 403
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["title"] == "Forbidden"
    assert "admin role" in response.json()["detail"]


async def test_an_admin_on_an_admin_route_is_let_through(
    verifier: JwtVerifier, make_token: Callable[..., str], client: Any
) -> None:
    token = make_token(subject="root", roles=["admin"])

    async with client(_app(verifier)) as http:
        response = await http.post("/admin/purge", headers=_bearer(token))

    assert response.status_code == 200
    assert response.json() == {"purged_by": "root"}


async def test_rs256_tokens_round_trip(rsa_key: rsa.RSAPrivateKey, client: Any) -> None:
    rs256 = JwtVerifier(JwtConfig(algorithm="RS256", public_key=_pem_public(rsa_key)))
    token = issue_token(
        secret_or_private_key=_pem_private(rsa_key),
        algorithm="RS256",
        subject="carol",
        roles=["admin"],
    )

    async with client(_app(rs256)) as http:
        response = await http.post("/admin/purge", headers=_bearer(token))

    assert response.status_code == 200
    assert response.json() == {"purged_by": "carol"}


def test_es256_tokens_round_trip(ec_key: ec.EllipticCurvePrivateKey) -> None:
    es256 = JwtVerifier(JwtConfig(algorithm="ES256", public_key=_pem_public(ec_key)))
    token = issue_token(
        secret_or_private_key=_pem_private(ec_key), algorithm="ES256", subject="dave"
    )

    assert es256.verify(token).subject == "dave"


async def test_a_route_needing_auth_fails_loudly_when_auth_was_not_installed(
    make_token: Callable[..., str], client: Any, caplog: pytest.LogCaptureFixture
) -> None:
    app = FastAPI()
    install_problem_handlers(app)

    @app.get("/me")
    async def me(user: CurrentUser) -> str:
        return user.subject

    async with client(app) as http:
        response = await http.get("/me", headers=_bearer(make_token()))

    assert response.status_code == 500
    assert "install_auth" in caplog.text


def test_openapi_declares_the_bearer_scheme_on_protected_routes(verifier: JwtVerifier) -> None:
    document = _app(verifier).openapi()

    scheme = document["components"]["securitySchemes"]["bearerAuth"]
    assert scheme["type"] == "http"
    assert scheme["scheme"] == "bearer"
    assert document["paths"]["/me"]["get"]["security"] == [{"bearerAuth": []}]
    assert document["paths"]["/admin/purge"]["post"]["security"] == [{"bearerAuth": []}]
