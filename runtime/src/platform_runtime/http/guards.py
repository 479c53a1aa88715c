"""What the HTTP layer refuses before any route runs: oversized bodies, NUL in the URL.

A route reads its whole body before it authenticates the caller (FastAPI parses the body
first), so without a bound anyone, with or without a token, could make a process hold a body
of any size in memory. :class:`RequestGuardMiddleware` answers with a problem instead:

- a body whose ``Content-Length`` exceeds the limit: 413 at once, nothing of it read and no
  route run (whatever the path or method);
- a body without a declared length (chunked) that grows past the limit while a route reads
  it: 413 as soon as the limit is passed, the rest never read;
- a NUL character in the path or a query parameter (PostgreSQL stores no NUL in text, so
  such a value could only end in a 500): 422 naming the parameter.

A 413 closes the connection (``Connection: close``): the rest of the body is not worth
receiving. FastAPI offers a limit of its own (``FastAPI(max_body_size=...)``), left unset
here: its 413 is not a problem body, and comes only after routing (a route that does not read
its body still runs).
"""

from __future__ import annotations

from urllib.parse import parse_qsl

from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from platform_runtime.http.inputs import NUL_CHARACTER
from platform_runtime.http.problems import VALIDATION_DETAIL, problem_response, reason_phrase


class RequestBodyTooLarge(HTTPException):
    """A request body passed the limit while it was read (a 413 problem, connection closed).

    An ``HTTPException``, so that FastAPI lets it through its body parsing to the problem
    handlers; the middleware answers it itself when it escapes them."""

    def __init__(self, limit: int) -> None:
        super().__init__(
            status_code=413,
            detail=too_large_detail(limit),
            headers={"Connection": "close"},
        )


def too_large_detail(limit: int) -> str:
    return f"The request body is larger than {limit} bytes, the most this service accepts."


class RequestGuardMiddleware:
    """Pure ASGI middleware: bounds request bodies and refuses NUL in the URL (see module)."""

    def __init__(self, app: ASGIApp, *, max_body_bytes: int) -> None:
        if max_body_bytes < 0:
            raise ValueError("max_body_bytes must not be negative")
        self.app = app
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if (refusal := _nul_in_url(scope)) is not None:
            await refusal(scope, receive, send)
            return
        declared = _declared_length(scope)
        if declared is not None and declared > self.max_body_bytes:
            await self._too_large(scope, receive, send)
            return

        limit = self.max_body_bytes
        received = 0
        response_started = False

        async def bounded_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise RequestBodyTooLarge(limit)
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal response_started
            if message["type"] == "http.response.start":
                response_started = True
            await send(message)

        try:
            await self.app(scope, bounded_receive, tracking_send)
        except RequestBodyTooLarge:
            if response_started:
                raise
            await self._too_large(scope, receive, send)

    async def _too_large(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = problem_response(
            413,
            reason_phrase(413),
            too_large_detail(self.max_body_bytes),
            instance=scope["path"],
            headers={"Connection": "close"},
        )
        await response(scope, receive, send)


def _declared_length(scope: Scope) -> int | None:
    """The ``Content-Length`` of the request, or None (the server refuses a malformed one)."""
    value = Headers(scope=scope).get("content-length")
    if value is None or not value.isdigit():
        return None
    return int(value)


def _nul_in_url(scope: Scope) -> JSONResponse | None:
    """A 422 problem naming each part of the URL that holds a NUL character, or None."""
    issues = []
    if "\x00" in scope["path"]:
        issues.append(_nul_issue(["path"]))
    query: bytes = scope.get("query_string", b"")
    if b"%00" in query or b"\x00" in query:
        pairs = parse_qsl(query.decode("latin-1"), keep_blank_values=True, errors="replace")
        issues.extend(
            _nul_issue(["query", _printable(name)])
            for name, value in pairs
            if "\x00" in name or "\x00" in value
        )
    if not issues:
        return None
    return problem_response(
        422,
        reason_phrase(422),
        VALIDATION_DETAIL,
        instance=_printable(scope["path"]),
        errors=issues,
    )


def _nul_issue(loc: list[str]) -> dict[str, object]:
    return {"loc": loc, "msg": "must not contain the NUL character (U+0000)", "type": NUL_CHARACTER}


def _printable(text: str) -> str:
    return text.replace("\x00", "%00")
