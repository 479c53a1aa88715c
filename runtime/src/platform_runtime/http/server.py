"""How the services' HTTP server (uvicorn) is run: its options and a bound on request heads.

uvicorn parses HTTP with httptools when it is installed (it is: ``uvicorn[standard]``), and
httptools puts no bound on the request line and headers: a client could send headers until
the process runs out of memory. uvicorn bounds them only for its pure-Python h11 parser
(``h11_max_incomplete_event_size``), which is several times slower. The services therefore
run :class:`BoundedHeadHttpToolsProtocol`, httptools with that same option honoured: a request
whose line and headers outgrow it is answered 431 (a problem body) and its connection closed.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any, Final

from uvicorn.config import Config
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.server import ServerState

from platform_runtime.http.problems import PROBLEM_MEDIA_TYPE
from platform_runtime.settings import ServiceSettings

PROTOCOL: Final = "platform_runtime.http.server:BoundedHeadHttpToolsProtocol"
"""uvicorn's ``http`` option naming the protocol (a string: the worker processes of
``serve --workers N`` import it themselves)."""
DEFAULT_MAX_HEAD_BYTES: Final = 16 * 1024
"""h11's default bound, used when the server is configured without one."""
LINGER_S: Final = 2.0
"""After a 431, or a 413 to a body still arriving, how long incoming bytes are read and
dropped before the connection is closed: closing at once, with unread bytes, would reset the
connection and could lose the answer."""
_HEAD_ENDS: Final = (b"\r\n\r\n", b"\n\n")
_TITLE: Final = "Request Header Fields Too Large"


def uvicorn_options(settings: ServiceSettings) -> dict[str, Any]:
    """The options every service's uvicorn runs with, from its settings."""
    return {
        "http": PROTOCOL,
        "h11_max_incomplete_event_size": settings.http_max_header_bytes,
        "timeout_keep_alive": settings.http_keep_alive_s,
        "log_config": None,
        "access_log": False,
    }


class BoundedHeadHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with the request head (line and headers) bounded by
    ``h11_max_incomplete_event_size`` bytes.

    The bytes of a head are counted as they arrive, before httptools buffers them. A chunk
    that takes the count over the bound is refused unless the head ends within the bound
    in it. Bytes of a pipelined request that arrive together with the end of the previous
    one are not counted (at most one network read).
    """

    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        self.max_head_bytes = config.h11_max_incomplete_event_size or DEFAULT_MAX_HEAD_BYTES
        self._in_head = True
        self._head_bytes = 0
        self._head_tail = b""  # the last bytes of the head so far: its end may straddle reads
        self._refused = False
        self._in_body = False
        self._linger: asyncio.TimerHandle | None = None

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return  # read and dropped until the connection closes
        if self._in_head and self._head_outgrows_bound(data):
            self._refuse_head()
            return
        super().data_received(data)

    def on_headers_complete(self) -> None:
        self._in_head = False
        self._head_bytes = 0
        self._head_tail = b""
        super().on_headers_complete()
        self._in_body = True
        self.cycle.transport = _CloseAfterBody(self)  # type: ignore[assignment]

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._in_head = True
        self._in_body = False

    def close_after_answer(self) -> None:
        """Close the connection once an answer is written: at once if the request was read
        whole, else after a linger, so that the client reads the answer (a 413 to a body
        still arriving) rather than a reset."""
        if self._in_body and not self._refused:
            self._refused = True
            self._linger_then_close()
        elif not self._refused:
            self.transport.close()

    def _linger_then_close(self) -> None:
        if self.transport.can_write_eof():
            self.transport.write_eof()
            self._linger = self.loop.call_later(LINGER_S, self.transport.close)
        else:  # pragma: no cover - TCP transports can always write EOF
            self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._linger is not None:
            self._linger.cancel()
        super().connection_lost(exc)

    def _head_outgrows_bound(self, data: bytes) -> bool:
        """Count ``data`` into the head; true if the head is longer than the bound."""
        seen = self._head_tail + data
        received = self._head_bytes + len(data)
        self._head_bytes = received
        self._head_tail = seen[-3:]
        if received <= self.max_head_bytes:
            return False
        ends = [at + len(end) for end in _HEAD_ENDS if (at := seen.find(end)) >= 0]
        if not ends:
            return True
        head_length = received - len(seen) + min(ends)
        return head_length > self.max_head_bytes

    def _refuse_head(self) -> None:
        """Answer 431 with a problem body, then read and drop until the client closes."""
        self._refused = True
        self.logger.warning("Request head longer than %d bytes refused (431).", self.max_head_bytes)
        body = json.dumps(
            {
                "type": "about:blank",
                "title": _TITLE,
                "status": 431,
                "detail": f"The request line and headers are longer than {self.max_head_bytes} "
                "bytes, the most this service accepts.",
            }
        ).encode()
        head = [f"HTTP/1.1 431 {_TITLE}\r\n".encode()]
        head += [
            name + b": " + value + b"\r\n" for name, value in self.server_state.default_headers
        ]
        head += [
            f"content-type: {PROBLEM_MEDIA_TYPE}\r\n".encode(),
            f"content-length: {len(body)}\r\n".encode(),
            b"connection: close\r\n\r\n",
        ]
        self.transport.write(b"".join(head) + body)
        self._linger_then_close()


class _CloseAfterBody:
    """The connection as a request's cycle sees it: its ``close`` lingers while the request's
    body is still arriving (:meth:`BoundedHeadHttpToolsProtocol.close_after_answer`)."""

    def __init__(self, protocol: BoundedHeadHttpToolsProtocol) -> None:
        self._protocol = protocol
        self._transport = protocol.transport

    def close(self) -> None:
        self._protocol.close_after_answer()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)
