"""Free TCP ports on 127.0.0.1 for the servers the tests start.

Suites that run side by side (``make test`` runs the e2e lane beside the others) are each
given a range of their own in ``TEST_PORT_RANGE`` (``low-high``, below the kernel's ephemeral
range): a port one suite picked and has not bound yet is then never picked by the other, nor
taken by an outgoing connection. Without it, the kernel picks (``bind`` to port 0)."""

from __future__ import annotations

import os
import random
import socket
from collections.abc import Iterator
from contextlib import ExitStack

RANGE_VARIABLE = "TEST_PORT_RANGE"

_handed_out: set[int] = set()
"""Every port this process handed out: never handed out again."""


def port_range(value: str) -> range:
    """``low-high`` (both included) as a range; a clear error for anything else."""
    try:
        low, high = (int(part) for part in value.split("-"))
    except ValueError:
        raise ValueError(
            f"{RANGE_VARIABLE}={value!r}: expected low-high, e.g. 20000-25999"
        ) from None
    if not 1024 <= low < high <= 65535:
        raise ValueError(f"{RANGE_VARIABLE}={value!r}: expected 1024 <= low < high <= 65535")
    return range(low, high + 1)


def _candidates() -> Iterator[int]:
    """Ports to try: the range given, from a random place in it and round once; else the
    kernel's pick, as often as asked."""
    value = os.environ.get(RANGE_VARIABLE)
    if not value:
        while True:
            yield 0
    ports = port_range(value)
    start = random.randrange(len(ports))  # processes of one lane one after another: spread out
    for i in range(len(ports)):
        yield ports[(start + i) % len(ports)]
    raise RuntimeError(f"no free port left in {RANGE_VARIABLE}={value}")


def free_ports(count: int) -> list[int]:
    """``count`` ports free a moment ago, distinct from each other and from every port handed
    out before in this process. A port is free when picked, not yet taken by the server it is
    for: picked one after another, two could be the same (the kernel may hand a port just
    released out again), and a broker given one port for two listeners does not start, nor a
    second service on a port the first has not bound yet."""
    with ExitStack() as sockets:
        ports: list[int] = []
        candidates = _candidates()
        while len(ports) < count:
            s = sockets.enter_context(socket.socket())
            try:
                s.bind(("127.0.0.1", next(candidates)))  # held until all are picked
            except OSError:
                continue  # taken (or lingering) in the range given: the next one
            port = int(s.getsockname()[1])
            if port not in _handed_out:
                ports.append(port)
        _handed_out.update(ports)
        return ports


def free_port() -> int:
    (port,) = free_ports(1)
    return port
