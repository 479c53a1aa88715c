"""The request guard: bodies over the limit and NUL characters in the URL never reach a route."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI, Request
from pydantic import BaseModel
from starlette.types import Message

from platform_runtime.http.app import create_service_app
from platform_runtime.http.auth import CurrentUser, JwtVerifier
from platform_runtime.http.guards import RequestGuardMiddleware
from platform_runtime.http.metrics import Metrics
from platform_runtime.http.problems import reason_phrase

LIMIT = 4096
CHUNK = 1024


class Note(BaseModel):
    text: str


def _service(verifier: JwtVerifier) -> tuple[FastAPI, list[str]]:
    """A service whose routes record that they ran."""
    ran: list[str] = []
    app = create_service_app(
        title="Notes",
        version="1",
        verifier=verifier,
        metrics=Metrics(),
        checks={},
        max_body_bytes=LIMIT,
    )

    @app.post("/notes", status_code=201)
    async def add(note: Note, user: CurrentUser) -> dict[str, str]:
        ran.append(note.text)
        return {"text": note.text}

    @app.get("/notes")
    async def search(q: str = "") -> dict[str, str]:
        ran.append(q)
        return {"q": q}

    return app, ran


class Stream:
    """A request body sent chunk by chunk; counts how many chunks the server took."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.sent = 0

    async def __aiter__(self) -> AsyncIterator[bytes]:
        while self.sent * CHUNK < self.total:
            self.sent += 1
            yield b"x" * CHUNK


def _assert_too_large(response: httpx.Response) -> None:
    assert response.status_code == 413
    assert response.headers["content-type"] == "application/problem+json"
    assert response.headers["connection"] == "close"
    body = response.json()
    assert body["status"] == 413
    assert body["title"] == reason_phrase(413)  # "Content Too Large" (RFC 9110) from 3.13
    assert f"larger than {LIMIT} bytes" in body["detail"]


async def test_a_body_declared_larger_than_the_limit_is_refused_unread_and_unauthenticated(
    verifier: JwtVerifier, client: Any
) -> None:
    app, ran = _service(verifier)
    body = Stream(10 * 1024 * 1024)

    async with client(app) as http:
        response = await http.post(
            "/notes", content=body, headers={"Content-Length": str(body.total)}
        )
        after = await http.get("/notes", params={"q": "still here"})

    _assert_too_large(response)
    assert response.headers["x-correlation-id"]
    assert body.sent == 0  # not a byte of it was read
    assert ran == ["still here"]
    assert after.status_code == 200


async def test_a_chunked_body_is_cut_off_as_soon_as_it_passes_the_limit(
    verifier: JwtVerifier, client: Any, make_token: Any
) -> None:
    app, ran = _service(verifier)
    body = Stream(10 * 1024 * 1024)  # no Content-Length: sent chunked

    async with client(app) as http:
        response = await http.post(
            "/notes", content=body, headers={"Authorization": f"Bearer {make_token()}"}
        )

    _assert_too_large(response)
    assert body.sent == LIMIT // CHUNK + 1  # the chunk that passed the limit, no more
    assert ran == []


async def test_a_body_within_the_limit_is_served(
    verifier: JwtVerifier, client: Any, make_token: Any
) -> None:
    app, ran = _service(verifier)
    text = "y" * (LIMIT - 20)

    async with client(app) as http:
        response = await http.post(
            "/notes", json={"text": text}, headers={"Authorization": f"Bearer {make_token()}"}
        )

    assert response.status_code == 201
    assert ran == [text]


async def test_a_body_over_the_limit_is_counted_as_a_413(
    verifier: JwtVerifier, client: Any
) -> None:
    metrics = Metrics()
    app = create_service_app(
        title="Notes", version="1", verifier=verifier, metrics=metrics, checks={}, max_body_bytes=10
    )

    async with client(app) as http:
        await http.post("/anything", content=b"x" * 11)

    labels = {"method": "POST", "route": "<unmatched>", "status": "413"}
    assert metrics.registry.get_sample_value("http_requests_total", labels) == 1


@pytest.mark.parametrize(
    ("query", "name"),
    [({"q": "a\x00b"}, "q"), ({"q\x00": "x"}, "q%00"), ({"q": "ok", "r": "\x00"}, "r")],
)
async def test_a_nul_character_in_a_query_parameter_is_refused_naming_it(
    verifier: JwtVerifier, client: Any, query: dict[str, str], name: str
) -> None:
    app, ran = _service(verifier)

    async with client(app) as http:
        response = await http.get("/notes", params=query)

    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["errors"] == [
        {
            "loc": ["query", name],
            "msg": "must not contain the NUL character (U+0000)",
            "type": "nul_character",
        }
    ]
    assert ran == []


async def test_a_nul_character_in_the_path_is_refused(verifier: JwtVerifier, client: Any) -> None:
    app, _ = _service(verifier)

    async with client(app) as http:
        response = await http.get("/notes%00")

    assert response.status_code == 422
    assert response.json()["errors"][0]["loc"] == ["path"]
    assert response.json()["instance"] == "/notes%00"


async def test_a_query_with_an_escaped_percent_sign_is_not_mistaken_for_a_nul(
    verifier: JwtVerifier, client: Any
) -> None:
    app, ran = _service(verifier)

    async with client(app) as http:
        response = await http.get("/notes", params={"q": "100%00 sure"})  # sent as 100%2500

    assert response.status_code == 200
    assert ran == ["100%00 sure"]


async def _reads_its_body_itself(scope: Any, receive: Any, send: Any) -> None:
    """An app with no problem handlers, reading its whole body, then answering."""
    request = Request(scope, receive)
    body = await request.body()
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": str(len(body)).encode()})


async def _answers_then_reads(scope: Any, receive: Any, send: Any) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await Request(scope, receive).body()


async def test_the_guard_answers_413_itself_when_no_handler_does(client: Any) -> None:
    guarded = RequestGuardMiddleware(_reads_its_body_itself, max_body_bytes=LIMIT)

    async with client(guarded) as http:
        small = await http.post("/", content=b"x" * LIMIT)
        large = await http.post("/", content=Stream(2 * LIMIT))

    assert small.text == str(LIMIT)
    _assert_too_large(large)


async def test_a_body_passing_the_limit_after_the_answer_started_is_left_to_the_server(
    client: Any,
) -> None:
    guarded = RequestGuardMiddleware(_answers_then_reads, max_body_bytes=LIMIT)

    async with client(guarded) as http:
        with pytest.raises(Exception, match="413"):
            await http.post("/", content=Stream(2 * LIMIT))


async def test_what_is_not_an_http_request_passes_untouched() -> None:
    seen: list[str] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        seen.append(scope["type"])

    async def nothing() -> Message:
        raise AssertionError("nothing is received")

    async def send_nothing(message: Message) -> None:
        raise AssertionError("nothing is sent")

    await RequestGuardMiddleware(app, max_body_bytes=0)({"type": "lifespan"}, nothing, send_nothing)

    assert seen == ["lifespan"]


def test_a_negative_limit_is_refused() -> None:
    with pytest.raises(ValueError, match="max_body_bytes"):
        RequestGuardMiddleware(_reads_its_body_itself, max_body_bytes=-1)
