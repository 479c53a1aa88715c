"""Free TCP ports on 127.0.0.1 for the servers the tests start."""

from __future__ import annotations

import socket
from contextlib import ExitStack

_handed_out: set[int] = set()
"""Every port this process handed out: never handed out again."""


def free_ports(count: int) -> list[int]:
    """``count`` ports free a moment ago, distinct from each other and from every port handed
    out before in this process. A port is free when picked, not yet taken by the server it is
    for: picked one after another, two could be the same (the kernel may hand a port just
    released out again), and a broker given one port for two listeners does not start, nor a
    second service on a port the first has not bound yet."""
    with ExitStack() as sockets:
        ports: list[int] = []
        while len(ports) < count:
            s = sockets.enter_context(socket.socket())
            s.bind(("127.0.0.1", 0))  # held until all are picked: each bind gets a new port
            port = int(s.getsockname()[1])
            if port not in _handed_out:
                ports.append(port)
        _handed_out.update(ports)
        return ports


def free_port() -> int:
    (port,) = free_ports(1)
    return port
