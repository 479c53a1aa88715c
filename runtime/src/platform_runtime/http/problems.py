"""RFC 9457 problem details: one error body shape for every failure of every service.

Clients get ``application/problem+json`` with ``type``, ``title``, ``status``, ``detail`` and
``instance`` whatever went wrong, whether a route raised, validation failed, a token was
refused or the code crashed. Domain packages keep their HTTP-free exceptions; a service maps
them to statuses once, with ``install_problem_handlers(app, mapping={SlotTaken: 409})``.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Mapping
from http import HTTPStatus
from typing import Any, Final

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict
from starlette.exceptions import HTTPException
from starlette.routing import Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from platform_runtime.errors import KernelError
from platform_runtime.observability import correlation_id

PROBLEM_MEDIA_TYPE: Final = "application/problem+json"
UNEXPECTED_ERROR_DETAIL: Final = (
    "An unexpected error occurred. Quote the correlation id when reporting it."
)
VALIDATION_DETAIL: Final = "The request did not validate; see errors."
UNAVAILABLE_DETAIL: Final = (
    "A service this request needs is unreachable for the moment; nothing was changed. "
    "Retry shortly (with the same Idempotency-Key, where the request has one)."
)

_logger = logging.getLogger(__name__)


class ProblemDetails(BaseModel):
    """The RFC 9457 body; services may add extension members (e.g. ``errors``)."""

    model_config = ConfigDict(extra="allow")

    type: str = "about:blank"
    title: str
    status: int
    detail: str | None = None
    instance: str | None = None


class ValidationIssue(BaseModel):
    """One reason a request did not validate: where, what, and a machine-readable code."""

    loc: list[str | int]
    msg: str
    type: str


class ValidationProblemDetails(ProblemDetails):
    """The 422 body: a problem with the list of validation issues."""

    errors: list[ValidationIssue]


class ProblemError(KernelError):
    """An error raised by HTTP-facing code that knows its own status.

    Subclass it and set ``status`` (and optionally ``title`` and ``type_``); ``title``
    defaults to the reason phrase of ``status``. Keyword arguments become extension members
    of the body. Domain code should not use it: map domain exceptions instead.
    """

    status: int = 400
    title: str = ""
    type_: str = "about:blank"

    def __init__(self, detail: str, **extensions: Any) -> None:
        super().__init__(detail)
        self.detail = detail
        self.extensions = extensions


def reason_phrase(status: int) -> str:
    """The HTTP reason phrase of ``status`` ("Conflict"), or "Error" for unknown codes."""
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


def problem_type_for(exc_type: type[BaseException]) -> str:
    """A stable problem type URN derived from the exception class name.

    ``SlotAlreadyBookedError`` -> ``urn:problem:slot_already_booked_error``. It changes only
    if the class is renamed, so clients can switch on it.
    """
    snake = re.sub(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])", "_", exc_type.__name__)
    return f"urn:problem:{snake.lower()}"


def problem_response(
    status: int,
    title: str,
    detail: str | None = None,
    *,
    type_: str = "about:blank",
    instance: str | None = None,
    headers: Mapping[str, str] | None = None,
    **extensions: Any,
) -> JSONResponse:
    """A ``JSONResponse`` carrying a problem body with the problem media type.

    Members whose value is ``None`` are omitted rather than sent as ``null``.
    """
    problem = ProblemDetails(
        type=type_, title=title, status=status, detail=detail, instance=instance, **extensions
    )
    return JSONResponse(
        problem.model_dump(mode="json", exclude_none=True),
        status_code=status,
        headers=dict(headers) if headers is not None else None,
        media_type=PROBLEM_MEDIA_TYPE,
    )


def _status_for(exc: Exception, statuses: Mapping[type, int]) -> int:
    """The status of the most specific mapped class ``exc`` is an instance of.

    Only called for exceptions whose handler was registered for a mapped class, so one of
    the classes of the MRO is always mapped.
    """
    return next(statuses[klass] for klass in type(exc).__mro__ if klass in statuses)


def _unexpected_error_response(instance: str) -> JSONResponse:
    return problem_response(
        500,
        reason_phrase(500),
        UNEXPECTED_ERROR_DETAIL,
        instance=instance,
        correlation_id=correlation_id.get(),
    )


def _validation_issues(exc: RequestValidationError) -> list[dict[str, Any]]:
    """Only ``loc``, ``msg`` and ``type``: ``input`` may echo secrets or raw bytes and
    ``ctx`` may hold exception objects, neither of which belongs in a response."""
    return [
        ValidationIssue(
            loc=[part if isinstance(part, int) else str(part) for part in error.get("loc", ())],
            msg=str(error.get("msg", "")),
            type=str(error.get("type", "")),
        ).model_dump()
        for error in exc.errors()
    ]


class UnhandledErrorMiddleware:
    """Turns an exception that escaped every handler into a 500 problem.

    It sits inside the user middleware (correlation id, metrics), unlike Starlette's
    ``ServerErrorMiddleware``, so the 500 still carries the correlation id header, is
    counted with its route, and the traceback is logged with the correlation id. The
    exception text is logged, never sent. If the response had already started there is
    nothing left to replace, so the exception is logged and re-raised for the server.

    An exception for which ``unavailable`` is true (the database went away, e.g. a pooled
    connection found dead on its first use after a restart) answers 503 with
    ``Retry-After`` instead: the transaction did not commit, so the request may be retried.
    """

    def __init__(
        self, app: ASGIApp, unavailable: Callable[[BaseException], bool] | None = None
    ) -> None:
        self.app = app
        self.unavailable = unavailable

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        response_started = False

        async def tracking_send(message: Message) -> None:
            nonlocal response_started
            if message["type"] == "http.response.start":
                response_started = True
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except Exception as exc:
            request = Request(scope)
            if response_started or self.unavailable is None or not self.unavailable(exc):
                _logger.exception("Unhandled error on %s %s", request.method, request.url.path)
                if response_started:
                    raise
                response = _unexpected_error_response(request.url.path)
            else:
                _logger.warning(
                    "%s %s: a dependency is unavailable (%s: %s)",
                    request.method,
                    request.url.path,
                    type(exc).__name__,
                    exc,
                )
                response = problem_response(
                    503,
                    reason_phrase(503),
                    UNAVAILABLE_DETAIL,
                    instance=request.url.path,
                    headers={"Retry-After": "1"},
                )
            await response(scope, receive, send)


_METHODS = ("DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT")


def _allowed_methods(request: Request) -> str:
    """Every method some route of the path accepts: Starlette's own 405 names only those of
    the first route, though each method of a path is a route of its own."""
    routes = request.app.router.routes
    return ", ".join(
        method
        for method in _METHODS
        if any(r.matches(dict(request.scope, method=method))[0] is Match.FULL for r in routes)
    )


def install_problem_handlers(
    app: FastAPI,
    *,
    mapping: Mapping[type[Exception], int] = {},
    unavailable: Callable[[BaseException], bool] | None = None,
) -> None:
    """Make every error of ``app`` answer with a problem body.

    * :class:`ProblemError` -> its own status, title and type;
    * an instance of a class in ``mapping`` -> the mapped status (the most specific class in
      the exception's MRO wins), the reason phrase as title, ``str(exc)`` as detail and
      ``urn:problem:<snake_case_class_name>`` as type; a 422 also gets an ``errors`` list
      with that one issue, so every 422 has the same shape; an exception with a
      ``problem_extensions`` mapping adds its members to the body (a refused rule and its
      limit, say);
    * Starlette/FastAPI ``HTTPException`` (including unknown routes and wrong methods) -> its
      status, detail and headers;
    * ``RequestValidationError`` -> 422 with an ``errors`` list of ``{loc, msg, type}``;
    * an exception ``unavailable`` accepts -> 503 with ``Retry-After``;
    * anything else -> 500 with a generic detail; the exception is logged with its traceback.

    Call it before the application starts (it adds a middleware).
    """
    statuses: dict[type, int] = dict(mapping)
    for exc_type, status in statuses.items():
        if not 400 <= status <= 599:
            raise ValueError(f"{exc_type.__name__} is mapped to {status}, not an error status")

    async def on_problem_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, ProblemError)
        return problem_response(
            exc.status,
            exc.title or reason_phrase(exc.status),
            exc.detail,
            type_=exc.type_,
            instance=request.url.path,
            **exc.extensions,
        )

    async def on_mapped_error(request: Request, exc: Exception) -> Response:
        status = _status_for(exc, statuses)
        type_ = problem_type_for(type(exc))
        # A 422 always carries ``errors``, whether the schema or the domain refused the input.
        extensions: dict[str, Any] = dict(getattr(exc, "problem_extensions", None) or {})
        if status == 422:
            extensions["errors"] = [{"loc": [], "msg": str(exc), "type": type_.rsplit(":", 1)[-1]}]
        return problem_response(
            status,
            reason_phrase(status),
            str(exc),
            type_=type_,
            instance=request.url.path,
            **extensions,
        )

    async def on_http_exception(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        if exc.status_code in {204, 304}:  # these responses must not have a body
            return Response(status_code=exc.status_code, headers=exc.headers)
        detail: Any = exc.detail
        extensions = {} if isinstance(detail, str) else {"data": jsonable_encoder(detail)}
        headers = exc.headers
        if exc.status_code == 405:
            headers = dict(headers or {}) | {"Allow": _allowed_methods(request)}
        return problem_response(
            exc.status_code,
            reason_phrase(exc.status_code),
            detail if isinstance(detail, str) else None,
            instance=request.url.path,
            headers=headers,
            **extensions,
        )

    async def on_validation_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        return problem_response(
            422,
            reason_phrase(422),
            VALIDATION_DETAIL,
            instance=request.url.path,
            errors=_validation_issues(exc),
        )

    async def on_unexpected_error(request: Request, exc: Exception) -> Response:
        # Last resort for errors raised outside the middleware below (e.g. by a middleware
        # added later); Starlette's ServerErrorMiddleware re-raises them for the server.
        _logger.error("Unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
        return _unexpected_error_response(request.url.path)

    app.add_exception_handler(ProblemError, on_problem_error)
    for exc_type in statuses:
        app.add_exception_handler(exc_type, on_mapped_error)
    app.add_exception_handler(HTTPException, on_http_exception)
    app.add_exception_handler(RequestValidationError, on_validation_error)
    app.add_exception_handler(Exception, on_unexpected_error)
    app.add_middleware(UnhandledErrorMiddleware, unavailable=unavailable)


def _inline_definitions(schema: dict[str, Any]) -> dict[str, Any]:
    """Replace ``#/$defs/...`` references by their target.

    A schema embedded in an OpenAPI operation cannot keep JSON Schema ``$defs``: the
    reference would resolve against the OpenAPI document, not the schema.
    """
    definitions = schema.pop("$defs", {})

    def resolve(node: Any) -> Any:
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str) and ref.startswith("#/$defs/"):
                return resolve(definitions[ref.removeprefix("#/$defs/")])
            return {key: resolve(value) for key, value in node.items()}
        if isinstance(node, list):
            return [resolve(item) for item in node]
        return node

    resolved: dict[str, Any] = resolve(schema)
    return resolved


def _problem_response_doc(description: str, model: type[ProblemDetails]) -> dict[str, Any]:
    return {
        "description": description,
        "content": {PROBLEM_MEDIA_TYPE: {"schema": _inline_definitions(model.model_json_schema())}},
    }


PROBLEM_RESPONSES: Final[dict[int | str, dict[str, Any]]] = {
    400: _problem_response_doc("Bad request", ProblemDetails),
    401: _problem_response_doc("Missing or invalid bearer token", ProblemDetails),
    403: _problem_response_doc("Authenticated but not allowed", ProblemDetails),
    404: _problem_response_doc("Not found", ProblemDetails),
    409: _problem_response_doc("Conflicts with the current state", ProblemDetails),
    413: _problem_response_doc("Request body too large", ProblemDetails),
    422: _problem_response_doc("Request validation failed", ValidationProblemDetails),
}
"""Pass as ``responses=`` to a route or router so its OpenAPI shows the problem bodies."""
