"""The kernel's one clock type, stoppable sleep, retry policy, exception tree and description."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
from aiokafka.errors import KafkaConnectionError

from platform_runtime.cli import UsageError
from platform_runtime.deadletters import Refused
from platform_runtime.errors import KernelError, describe
from platform_runtime.http.auth import AuthenticationError
from platform_runtime.http.pagination import InvalidCursor
from platform_runtime.http.problems import ProblemError
from platform_runtime.kafka_security import KafkaSecurityError
from platform_runtime.messaging import BatchItemError, PermanentEventError
from platform_runtime.settings import InsecureSettings
from platform_runtime.timing import RetryPolicy, sleep_unless
from platform_runtime.tokens import NotForDevelopment


def test_backoff_doubles_up_to_the_cap_and_gives_up_at_the_last_attempt() -> None:
    policy = RetryPolicy(4, initial=timedelta(seconds=30), maximum=timedelta(minutes=1))

    assert [policy.backoff(n).total_seconds() for n in (1, 2, 3, 4)] == [30, 60, 60, 60]
    assert [policy.gives_up(n) for n in (1, 3, 4)] == [False, False, True]


async def test_a_stop_cuts_the_sleep_short_and_is_reported() -> None:
    stop = asyncio.Event()
    assert await sleep_unless(stop, 0) is False

    stop.set()
    # an hour's sleep returns at once once stopped: the test would hit its timeout otherwise
    assert await sleep_unless(stop, 3600) is True


@pytest.mark.parametrize(
    ("exc", "described"),
    [
        (ValueError("bad amount"), "ValueError: bad amount"),
        (TimeoutError(), "TimeoutError"),
        (OSError("  connection reset \n"), "OSError: connection reset"),
        (KafkaConnectionError("oops"), "KafkaConnectionError: oops"),
    ],
)
def test_an_exception_is_described_in_one_line_with_its_type(
    exc: BaseException, described: str
) -> None:
    assert describe(exc) == described


def test_a_message_that_names_its_type_already_is_not_prefixed_twice() -> None:
    class NamesItself(Exception):
        def __str__(self) -> str:
            return "NamesItself: partition 3 is gone"

    assert describe(NamesItself()) == "NamesItself: partition 3 is gone"


@pytest.mark.parametrize(
    "error",
    [
        InsecureSettings,
        NotForDevelopment,
        UsageError,
        Refused,
        KafkaSecurityError,
        AuthenticationError,
        ProblemError,
        InvalidCursor,
        PermanentEventError,
        BatchItemError,
    ],
)
def test_every_error_the_kernel_raises_on_purpose_is_a_kernel_error(error: type) -> None:
    assert issubclass(error, KernelError)


def test_errors_that_were_value_errors_still_are() -> None:
    assert issubclass(InvalidCursor, ValueError)
    assert issubclass(KafkaSecurityError, ValueError)
