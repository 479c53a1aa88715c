"""Fixtures shared by the HTTP kit tests: a signing secret, a verifier, an in-process client."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from platform_runtime.http.auth import JwtConfig, JwtVerifier
from platform_runtime.tokens import issue_token

SECRET = "unit-test-secret-that-is-long-enough-0123456789"

ClientFactory = Callable[..., AbstractAsyncContextManager[httpx.AsyncClient]]


@pytest.fixture
def secret() -> str:
    return SECRET


@pytest.fixture
def verifier() -> JwtVerifier:
    return JwtVerifier(JwtConfig(secret=SECRET))


@pytest.fixture
def make_token() -> Callable[..., str]:
    """``make_token(subject="u1", roles=["admin"])``: an HS256 token the verifier accepts."""

    def make(**overrides: Any) -> str:
        arguments: dict[str, Any] = {"secret_or_private_key": SECRET, "subject": "user-1"}
        arguments.update(overrides)
        return issue_token(**arguments)

    return make


@pytest.fixture
def client() -> ClientFactory:
    """``async with client(app) as http:`` talks to ``app`` in-process over ASGI."""

    @asynccontextmanager
    async def open_client(
        app: FastAPI, *, raise_app_exceptions: bool = True
    ) -> AsyncIterator[httpx.AsyncClient]:
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=raise_app_exceptions)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
            yield http

    return open_client
