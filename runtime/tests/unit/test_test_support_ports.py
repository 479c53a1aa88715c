"""The free ports every suite's servers get (``tests.support.ports``): picked one after another
with bind-and-release, about 1 in 60 of 400 repeated here, and a repeat started a Kafka broker
with both its listeners on one port, which fails."""

from __future__ import annotations

import socket

import pytest

from tests.support.ports import RANGE_VARIABLE, free_port, free_ports, port_range


def test_ports_handed_out_never_repeat_and_are_free() -> None:
    ports = free_ports(200) + [free_port() for _ in range(200)]

    assert len(set(ports)) == len(ports)
    for port in ports[:20] + ports[-20:]:
        with socket.socket() as s:
            s.bind(("127.0.0.1", port))  # nothing holds it


def test_a_suite_given_a_range_gets_free_ports_from_it_only(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    low = 19000  # below the ranges `make test` gives its lanes, and the kernel's own
    monkeypatch.setenv(RANGE_VARIABLE, f"{low}-{low + 4}")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", low + 2))

        ports = free_ports(4)  # five in the range, one of them bound: the other four

    assert sorted(ports) == [low, low + 1, low + 3, low + 4]


def test_a_range_used_up_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(RANGE_VARIABLE, "19010-19011")
    free_ports(2)  # both handed out now: never again in this process

    with pytest.raises(RuntimeError, match="no free port left in TEST_PORT_RANGE=19010-19011"):
        free_port()


@pytest.mark.parametrize("value", ["20000", "a-b", "30000-20000", "80-90"])
def test_a_malformed_range_is_refused(value: str) -> None:
    with pytest.raises(ValueError, match="TEST_PORT_RANGE"):
        port_range(value)
