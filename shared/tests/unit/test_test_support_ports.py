"""The free ports every suite's servers get (``tests.support.ports``): picked one after another
with bind-and-release, about 1 in 60 of 400 repeated here, and a repeat started a Kafka broker
with both its listeners on one port, which fails."""

from __future__ import annotations

import socket

from tests.support.ports import free_port, free_ports


def test_ports_handed_out_never_repeat_and_are_free() -> None:
    ports = free_ports(200) + [free_port() for _ in range(200)]

    assert len(set(ports)) == len(ports)
    for port in ports[:20] + ports[-20:]:
        with socket.socket() as s:
            s.bind(("127.0.0.1", port))  # nothing holds it
