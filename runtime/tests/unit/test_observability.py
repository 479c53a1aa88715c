"""Logs and correlation ids: one JSON line per record, one id per user action."""

from __future__ import annotations

import json
import logging
import re
import sys
from datetime import datetime
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from starlette.types import Message, Receive, Scope, Send

from platform_runtime.observability import (
    CorrelationIdFilter,
    CorrelationIdMiddleware,
    JsonFormatter,
    configure_logging,
    correlation_id,
    is_valid_correlation_id,
    new_correlation_id,
)

HEX_ID = re.compile(r"[0-9a-f]{32}")


def _record(message: str = "hello %s", *args: Any, **attributes: Any) -> logging.LogRecord:
    record = logging.LogRecord(
        "booking.api", logging.WARNING, __file__, 1, message, args or ("world",), None
    )
    record.__dict__.update(attributes)
    return record


def _log_lines(output: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in output.splitlines() if line.startswith("{")]


def _app() -> FastAPI:
    app = FastAPI()
    app.add_middleware(CorrelationIdMiddleware)

    @app.get("/work")
    async def work() -> dict[str, str | None]:
        logging.getLogger("booking.api").info("working on it")
        return {"correlation_id": correlation_id.get()}

    return app


async def _get(app: FastAPI, headers: dict[str, Any] | None = None) -> httpx.Response:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
        return await http.get("/work", headers=headers)


# --- correlation ids ----------------------------------------------------------------------


def test_new_correlation_ids_are_unique_hex_strings() -> None:
    ids = {new_correlation_id() for _ in range(100)}

    assert len(ids) == 100
    assert all(HEX_ID.fullmatch(value) for value in ids)


@pytest.mark.parametrize(
    ("value", "valid"),
    [
        ("3f2a9c", True),
        ("req-2024.11:edge_7", True),
        ("x" * 128, True),
        ("x" * 129, False),
        ("", False),
        ("has space", False),
        ("line\r\nX-Injected: yes", False),
        ("ünïcode", False),
    ],
)
def test_only_sane_correlation_ids_are_accepted(value: str, valid: bool) -> None:
    assert is_valid_correlation_id(value) is valid


# --- the JSON formatter -------------------------------------------------------------------


def test_a_record_becomes_one_json_line_with_the_standard_fields() -> None:
    token = correlation_id.set("cid-1")
    try:
        line = JsonFormatter("booking").format(_record())
    finally:
        correlation_id.reset(token)

    assert "\n" not in line
    document = json.loads(line)
    assert document.keys() == {"ts", "level", "logger", "message", "service", "correlation_id"}
    assert document["level"] == "WARNING"
    assert document["logger"] == "booking.api"
    assert document["message"] == "hello world"
    assert document["service"] == "booking"
    assert document["correlation_id"] == "cid-1"
    assert document["ts"].endswith("Z")
    assert datetime.fromisoformat(document["ts"].replace("Z", "+00:00")).utcoffset() is not None


def test_a_record_outside_any_request_has_a_null_correlation_id() -> None:
    document = json.loads(JsonFormatter("booking").format(_record()))

    assert document["correlation_id"] is None


def test_extra_fields_of_the_log_call_are_included() -> None:
    record = _record(booking_id="b-1", attempt=3, when=datetime(2030, 1, 1))

    document = json.loads(JsonFormatter().format(record))

    assert document["booking_id"] == "b-1"
    assert document["attempt"] == 3
    assert document["when"] == "2030-01-01 00:00:00", "values JSON cannot hold become text"
    assert document["service"] is None


def test_extra_fields_cannot_forge_the_standard_fields() -> None:
    record = _record(service="evil", level="DEBUG", ts="yesterday")

    document = json.loads(JsonFormatter("booking").format(record))

    assert document["service"] == "booking"
    assert document["level"] == "WARNING"
    assert document["ts"] != "yesterday"


def test_an_exception_is_logged_with_its_traceback_and_a_stack_when_asked() -> None:
    try:
        raise ValueError("bad slot")
    except ValueError:
        exc_info = sys.exc_info()
    record = _record(exc_info=exc_info, stack_info="Stack (most recent call last): here")

    document = json.loads(JsonFormatter().format(record))

    assert document["exception"].startswith("Traceback (most recent call last)")
    assert "ValueError: bad slot" in document["exception"]
    assert document["stack"].startswith("Stack")


def test_the_filter_stamps_the_current_id_but_keeps_an_explicit_one() -> None:
    token = correlation_id.set("from-context")
    try:
        stamped, explicit = _record(), _record(correlation_id="from-message")
        CorrelationIdFilter().filter(stamped)
        CorrelationIdFilter().filter(explicit)
    finally:
        correlation_id.reset(token)

    assert stamped.correlation_id == "from-context"  # type: ignore[attr-defined]
    assert explicit.correlation_id == "from-message"  # type: ignore[attr-defined]
    assert json.loads(JsonFormatter().format(explicit))["correlation_id"] == "from-message"


# --- configure_logging --------------------------------------------------------------------


def test_configured_logging_prints_json_lines_on_stdout(
    root_logger: logging.Logger, capsys: pytest.CaptureFixture[str]
) -> None:
    configure_logging("timeslots", "debug")

    logging.getLogger("timeslots.db").debug("pool ready", extra={"size": 10})

    [line] = _log_lines(capsys.readouterr().out)
    assert line["service"] == "timeslots"
    assert line["level"] == "DEBUG"
    assert line["message"] == "pool ready"
    assert line["size"] == 10
    assert root_logger.level == logging.DEBUG


def test_configuring_logging_twice_does_not_print_records_twice(
    root_logger: logging.Logger, capsys: pytest.CaptureFixture[str]
) -> None:
    configure_logging("booking")
    handlers_after_first = len(root_logger.handlers)
    configure_logging("booking")
    logging.getLogger("booking").info("once")

    assert len(root_logger.handlers) == handlers_after_first
    assert [line["message"] for line in _log_lines(capsys.readouterr().out)] == ["once"]


def test_text_logging_is_available_for_a_terminal_and_shows_the_correlation_id(
    root_logger: logging.Logger, capsys: pytest.CaptureFixture[str]
) -> None:
    configure_logging("booking", json=False)

    token = correlation_id.set("cid-42")
    try:
        logging.getLogger("booking").warning("slot %s taken", 7)
    finally:
        correlation_id.reset(token)

    output = capsys.readouterr().out
    assert "WARNING" in output
    assert "booking [cid-42] slot 7 taken" in output
    assert not output.startswith("{")


def test_an_unknown_level_is_refused(root_logger: logging.Logger) -> None:
    with pytest.raises(ValueError, match="LOUD"):
        configure_logging("booking", "loud")


def test_a_record_that_cannot_be_written_is_reported_not_raised(
    root_logger: logging.Logger,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    configure_logging("booking")
    monkeypatch.setattr(logging, "raiseExceptions", True)

    class Broken:
        def write(self, text: str) -> None:
            raise OSError("disk full")

    monkeypatch.setattr(sys, "stdout", Broken())
    logging.getLogger("booking").error("lost")  # must not raise

    assert "disk full" in capsys.readouterr().err


# --- the middleware -----------------------------------------------------------------------


async def test_the_log_line_carries_the_correlation_id_from_the_request_header(
    root_logger: logging.Logger, capsys: pytest.CaptureFixture[str]
) -> None:
    configure_logging("booking")

    response = await _get(_app(), headers={"X-Correlation-ID": "checkout-7f3a"})

    assert response.headers["x-correlation-id"] == "checkout-7f3a"
    assert response.json() == {"correlation_id": "checkout-7f3a"}
    [line] = [
        line for line in _log_lines(capsys.readouterr().out) if line["logger"] == "booking.api"
    ]
    assert line["message"] == "working on it"
    assert line["correlation_id"] == "checkout-7f3a"


async def test_a_request_without_a_correlation_id_gets_a_fresh_one() -> None:
    response = await _get(_app())

    assert HEX_ID.fullmatch(response.headers["x-correlation-id"])
    assert response.json() == {"correlation_id": response.headers["x-correlation-id"]}


@pytest.mark.parametrize("incoming", ["has spaces", "x" * 129, "a;b", "é"])
async def test_an_invalid_incoming_correlation_id_is_replaced(incoming: str) -> None:
    response = await _get(_app(), headers={"X-Correlation-ID": incoming.encode()})

    assert HEX_ID.fullmatch(response.headers["x-correlation-id"])
    assert response.json()["correlation_id"] == response.headers["x-correlation-id"]


async def test_the_correlation_id_does_not_outlive_the_request() -> None:
    await _get(_app(), headers={"X-Correlation-ID": "short-lived"})

    assert correlation_id.get() is None


async def test_the_header_is_added_even_when_the_response_declares_no_headers() -> None:
    sent: list[Message] = []

    async def bare_app(scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 204})
        await send({"type": "http.response.body", "body": b""})

    async def receive() -> Message:
        return {"type": "http.request", "body": b""}

    async def send(message: Message) -> None:
        sent.append(message)

    scope = {"type": "http", "headers": [(b"x-correlation-id", b"abc")]}
    await CorrelationIdMiddleware(bare_app)(scope, receive, send)

    assert sent[0]["headers"] == [(b"x-correlation-id", b"abc")]


async def test_the_middleware_ignores_non_http_traffic() -> None:
    seen: list[str | None] = []

    async def inner(scope: Scope, receive: Receive, send: Send) -> None:
        seen.append(correlation_id.get())

    async def receive() -> Message:
        return {"type": "lifespan.startup"}

    async def send(message: Message) -> None:
        return None

    await CorrelationIdMiddleware(inner)({"type": "lifespan"}, receive, send)

    assert seen == [None]
