"""Problem details: every failure answers with an RFC 9457 body a client can rely on."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from http import HTTPStatus
from typing import Any

import pytest
from fastapi import FastAPI, HTTPException
from fastapi.responses import StreamingResponse
from pydantic import BaseModel
from starlette.types import Message, Receive, Scope, Send

from platform_runtime.http.problems import (
    PROBLEM_RESPONSES,
    UNAVAILABLE_DETAIL,
    UNEXPECTED_ERROR_DETAIL,
    ProblemError,
    UnhandledErrorMiddleware,
    install_problem_handlers,
    problem_response,
    problem_type_for,
    reason_phrase,
)

PROBLEM_JSON = "application/problem+json"


class DomainError(Exception):
    """Stands in for a domain package's base exception (no HTTP knowledge)."""


class SlotNotFoundError(DomainError):
    pass


class SlotAlreadyBookedError(DomainError):
    pass


class DoubleBookingAttemptError(SlotAlreadyBookedError):
    pass


class QuotaReachedError(DomainError):
    def __init__(self, message: str, *, rule: str, limit: str) -> None:
        super().__init__(message)
        self.problem_extensions = {"rule": rule, "limit": limit}


class PaymentRequired(ProblemError):
    status = 402
    title = "Payment needed"
    type_ = "urn:problem:payment_required"


class Gone(ProblemError):
    status = 410


class Booking(BaseModel):
    slot_id: int
    name: str


def _app(mapping: dict[type[Exception], int] | None = None) -> FastAPI:
    app = FastAPI()
    install_problem_handlers(
        app,
        mapping=mapping or {DomainError: 400, SlotNotFoundError: 404, SlotAlreadyBookedError: 409},
    )

    @app.get("/raise/{kind}")
    async def raise_(kind: str) -> None:
        errors: dict[str, Exception] = {
            "not-found": SlotNotFoundError("slot 7 does not exist"),
            "conflict": SlotAlreadyBookedError("slot 7 is already booked"),
            "subclass": DoubleBookingAttemptError("you already booked slot 7"),
            "base": DomainError("the request makes no sense"),
            "quota": QuotaReachedError("3 per week; you have 3", rule="quota", limit="3"),
            "payment": PaymentRequired("top up first", balance=0, currency="EUR"),
            "gone": Gone("that slot has passed"),
            "http": HTTPException(429, "slow down", headers={"Retry-After": "5"}),
            "http-structured": HTTPException(400, detail={"field": "name"}),
            "not-modified": HTTPException(304),
            "crash": RuntimeError("password=hunter2 leaked in a message"),
        }
        raise errors[kind]

    @app.post("/bookings")
    async def create(booking: Booking, notify: bool = False) -> Booking:
        return booking

    @app.get("/bookings")
    async def list_them() -> list[Booking]:
        return []

    return app


async def test_a_problem_error_answers_with_its_status_title_type_and_extensions(
    client: Any,
) -> None:
    async with client(_app()) as http:
        response = await http.get("/raise/payment")

    assert response.status_code == 402
    assert response.headers["content-type"] == PROBLEM_JSON
    assert response.json() == {
        "type": "urn:problem:payment_required",
        "title": "Payment needed",
        "status": 402,
        "detail": "top up first",
        "instance": "/raise/payment",
        "balance": 0,
        "currency": "EUR",
    }


async def test_a_mapped_error_with_problem_extensions_names_them_in_its_body(
    client: Any,
) -> None:
    async with client(_app()) as http:
        response = await http.get("/raise/quota")

    assert response.status_code == 400
    assert response.json() == {
        "type": "urn:problem:quota_reached_error",
        "title": "Bad Request",
        "status": 400,
        "detail": "3 per week; you have 3",
        "instance": "/raise/quota",
        "rule": "quota",
        "limit": "3",
    }


async def test_a_problem_error_without_a_title_uses_the_reason_phrase(client: Any) -> None:
    async with client(_app()) as http:
        response = await http.get("/raise/gone")

    assert response.json() == {
        "type": "about:blank",
        "title": "Gone",
        "status": 410,
        "detail": "that slot has passed",
        "instance": "/raise/gone",
    }


@pytest.mark.parametrize(
    ("kind", "status", "title", "type_", "detail"),
    [
        (
            "not-found",
            404,
            "Not Found",
            "urn:problem:slot_not_found_error",
            "slot 7 does not exist",
        ),
        (
            "conflict",
            409,
            "Conflict",
            "urn:problem:slot_already_booked_error",
            "slot 7 is already booked",
        ),
        ("base", 400, "Bad Request", "urn:problem:domain_error", "the request makes no sense"),
    ],
)
async def test_a_mapped_domain_error_answers_with_the_mapped_status(
    client: Any, kind: str, status: int, title: str, type_: str, detail: str
) -> None:
    async with client(_app()) as http:
        response = await http.get(f"/raise/{kind}")

    assert response.status_code == status
    assert response.headers["content-type"] == PROBLEM_JSON
    assert response.json() == {
        "type": type_,
        "title": title,
        "status": status,
        "detail": detail,
        "instance": f"/raise/{kind}",
    }


async def test_an_unmapped_subclass_takes_the_status_of_its_closest_mapped_ancestor(
    client: Any,
) -> None:
    async with client(_app()) as http:
        response = await http.get("/raise/subclass")

    assert response.status_code == 409  # SlotAlreadyBookedError, not DomainError's 400
    assert response.json()["type"] == "urn:problem:double_booking_attempt_error"


async def test_a_domain_error_mapped_to_422_lists_itself_as_the_one_issue(client: Any) -> None:
    async with client(_app(mapping={DomainError: 422})) as http:
        response = await http.get("/raise/base")

    assert response.status_code == 422
    assert response.json() == {
        "type": "urn:problem:domain_error",
        "title": "Unprocessable Entity",
        "status": 422,
        "detail": "the request makes no sense",
        "instance": "/raise/base",
        "errors": [{"loc": [], "msg": "the request makes no sense", "type": "domain_error"}],
    }


async def test_an_http_exception_keeps_its_status_detail_and_headers(client: Any) -> None:
    async with client(_app()) as http:
        response = await http.get("/raise/http")

    assert response.status_code == 429
    assert response.headers["retry-after"] == "5"
    assert response.headers["content-type"] == PROBLEM_JSON
    assert response.json() == {
        "type": "about:blank",
        "title": "Too Many Requests",
        "status": 429,
        "detail": "slow down",
        "instance": "/raise/http",
    }


async def test_a_structured_http_exception_detail_is_kept_as_data(client: Any) -> None:
    async with client(_app()) as http:
        response = await http.get("/raise/http-structured")

    assert response.status_code == 400
    body = response.json()
    assert "detail" not in body
    assert body["data"] == {"field": "name"}


async def test_a_bodiless_http_exception_status_gets_no_body(client: Any) -> None:
    async with client(_app()) as http:
        response = await http.get("/raise/not-modified")

    assert response.status_code == 304
    assert response.content == b""


async def test_an_unknown_path_answers_with_a_404_problem(client: Any) -> None:
    async with client(_app()) as http:
        response = await http.get("/nowhere")

    assert response.status_code == 404
    assert response.headers["content-type"] == PROBLEM_JSON
    assert response.json()["instance"] == "/nowhere"


async def test_a_wrong_method_answers_with_a_405_problem_and_the_allow_header(
    client: Any,
) -> None:
    async with client(_app()) as http:
        response = await http.delete("/bookings")

    assert response.status_code == 405
    assert response.headers["allow"] == "GET, POST"  # every route of the path, not the first
    assert response.headers["content-type"] == PROBLEM_JSON


async def test_an_invalid_request_answers_422_listing_each_problem(client: Any) -> None:
    async with client(_app()) as http:
        response = await http.post(
            "/bookings?notify=perhaps", json={"slot_id": "seven", "extra": b"\xff".hex()}
        )

    assert response.status_code == 422
    assert response.headers["content-type"] == PROBLEM_JSON
    body = response.json()
    assert body["title"] == HTTPStatus(422).phrase
    assert body["instance"] == "/bookings"
    locations = {tuple(error["loc"]) for error in body["errors"]}
    assert locations == {("query", "notify"), ("body", "slot_id"), ("body", "name")}
    for error in body["errors"]:
        assert set(error) == {"loc", "msg", "type"}, "no input echo, no ctx objects"
        assert error["msg"]
        assert error["type"]


async def test_malformed_json_answers_422_without_echoing_the_body(client: Any) -> None:
    async with client(_app()) as http:
        response = await http.post(
            "/bookings",
            content=b'{"slot_id": 1, "name": oops',
            headers={"content-type": "application/json"},
        )

    assert response.status_code == 422
    assert "oops" not in response.text
    [error] = response.json()["errors"]
    assert error["type"] == "json_invalid"
    assert set(error) == {"loc", "msg", "type"}


async def test_a_body_that_is_not_even_text_answers_with_a_400_problem(client: Any) -> None:
    async with client(_app()) as http:
        response = await http.post(
            "/bookings", content=b"\xff\xfe{", headers={"content-type": "application/json"}
        )

    assert response.status_code == 400
    assert response.headers["content-type"] == PROBLEM_JSON
    assert response.json()["title"] == "Bad Request"


async def test_an_unexpected_error_answers_500_without_leaking_its_message(
    client: Any, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.ERROR, logger="platform_runtime.http.problems"):
        async with client(_app()) as http:
            response = await http.get("/raise/crash")

    assert response.status_code == 500
    assert response.headers["content-type"] == PROBLEM_JSON
    assert "hunter2" not in response.text
    assert response.json() == {
        "type": "about:blank",
        "title": "Internal Server Error",
        "status": 500,
        "detail": UNEXPECTED_ERROR_DETAIL,
        "instance": "/raise/crash",
    }
    [record] = caplog.records
    assert record.exc_info is not None
    assert "hunter2" in caplog.text, "the traceback is logged for the operator"
    assert "Unhandled error on GET /raise/crash" in record.getMessage()


async def test_an_error_raised_by_an_outer_middleware_still_answers_with_a_500_problem(
    client: Any, caplog: pytest.LogCaptureFixture
) -> None:
    app = _app()

    class Explodes:
        def __init__(self, app: Any) -> None:
            self.app = app

        async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
            raise RuntimeError("secret middleware failure")

    app.add_middleware(Explodes)

    async with client(app, raise_app_exceptions=False) as http:
        response = await http.get("/raise/gone")

    assert response.status_code == 500
    assert response.headers["content-type"] == PROBLEM_JSON
    assert response.json()["detail"] == UNEXPECTED_ERROR_DETAIL
    assert "secret" not in response.text
    assert "secret middleware failure" in caplog.text


async def test_an_error_after_the_response_started_is_logged_and_left_to_the_server(
    client: Any, caplog: pytest.LogCaptureFixture
) -> None:
    app = _app()

    async def chunks() -> AsyncIterator[bytes]:
        yield b"first chunk"
        raise RuntimeError("stream broke")

    @app.get("/stream")
    async def stream() -> StreamingResponse:
        return StreamingResponse(chunks())

    with pytest.raises(RuntimeError, match="stream broke"):
        async with client(app) as http:
            await http.get("/stream")

    assert "Unhandled error on GET /stream" in caplog.text


async def test_the_unhandled_error_middleware_ignores_non_http_traffic() -> None:
    seen: list[str] = []

    async def inner(scope: Scope, receive: Receive, send: Send) -> None:
        seen.append(scope["type"])

    async def receive() -> Message:
        return {"type": "lifespan.startup"}

    async def send(message: Message) -> None:
        return None

    await UnhandledErrorMiddleware(inner)({"type": "lifespan"}, receive, send)

    assert seen == ["lifespan"]


def test_mapping_an_exception_to_a_non_error_status_is_refused() -> None:
    with pytest.raises(ValueError, match="DomainError is mapped to 200"):
        install_problem_handlers(FastAPI(), mapping={DomainError: 200})


def test_problem_response_omits_empty_members_and_keeps_extensions_and_headers() -> None:
    response = problem_response(
        409,
        "Conflict",
        type_="urn:problem:x",
        headers={"Retry-After": "1"},
        conflicting_id="b-1",
        hint=None,
    )

    assert response.status_code == 409
    assert response.media_type == PROBLEM_JSON
    assert response.headers["retry-after"] == "1"
    assert response.body == (
        b'{"type":"urn:problem:x","title":"Conflict","status":409,"conflicting_id":"b-1"}'
    )


@pytest.mark.parametrize(
    ("exception", "urn"),
    [
        (SlotAlreadyBookedError, "urn:problem:slot_already_booked_error"),
        (type("HTTPTimeout", (Exception,), {}), "urn:problem:http_timeout"),
        (type("Slot2Taken", (Exception,), {}), "urn:problem:slot2_taken"),
        (ValueError, "urn:problem:value_error"),
    ],
)
def test_problem_types_are_snake_case_urns_of_the_class_name(
    exception: type[Exception], urn: str
) -> None:
    assert problem_type_for(exception) == urn


def test_an_unknown_status_code_gets_a_generic_reason_phrase() -> None:
    assert reason_phrase(599) == "Error"
    assert reason_phrase(409) == "Conflict"


def test_problem_responses_document_problem_bodies_in_openapi() -> None:
    app = _app()

    @app.get("/documented/{item_id}", responses=PROBLEM_RESPONSES)
    async def documented(item_id: int) -> dict[str, int]:
        return {"item_id": item_id}

    responses = app.openapi()["paths"]["/documented/{item_id}"]["get"]["responses"]

    assert set(responses) == {"200", "400", "401", "403", "404", "409", "413", "422"}
    for status in ("400", "401", "403", "404", "409", "422"):
        content = responses[status]["content"]
        assert list(content) == [PROBLEM_JSON], "no stray application/json body"
        schema = content[PROBLEM_JSON]["schema"]
        assert {"type", "title", "status", "detail", "instance"} <= set(schema["properties"])
        assert "$defs/" not in str(schema), "embedded schemas must not point at $defs"
    error_item = responses["422"]["content"][PROBLEM_JSON]["schema"]["properties"]["errors"]
    assert set(error_item["items"]["properties"]) == {"loc", "msg", "type"}


async def test_an_unreachable_dependency_answers_503_to_retry_and_is_logged_without_traceback(
    client: Any, caplog: pytest.LogCaptureFixture
) -> None:
    app = FastAPI()
    install_problem_handlers(app, unavailable=lambda exc: isinstance(exc, ConnectionError))

    @app.get("/down")
    async def down() -> None:
        raise ConnectionError("connection to 10.0.0.7:5432 refused")

    @app.get("/crash")
    async def crash() -> None:
        raise RuntimeError("a bug")

    with caplog.at_level(logging.WARNING, logger="platform_runtime.http.problems"):
        async with client(app) as http:
            response = await http.get("/down")
            crashed = await http.get("/crash")

    assert response.status_code == 503
    assert response.headers["retry-after"] == "1"
    assert response.headers["content-type"] == PROBLEM_JSON
    assert "10.0.0.7" not in response.text
    assert response.json()["detail"] == UNAVAILABLE_DETAIL
    assert crashed.status_code == 500  # anything else is still a bug
    warning = next(r for r in caplog.records if "unavailable" in r.getMessage())
    assert warning.exc_info is None
