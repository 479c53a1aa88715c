"""What ``dead-letters`` reads from a dead letter, how it shows it, and the arguments it takes."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from platform_runtime import deadletters
from platform_runtime.deadletters import (
    REPLAY_HEADER,
    DeadLetter,
    DeadLetterTopic,
    Position,
    Refused,
    Selection,
    describe_row,
    parse_positions,
    parse_since,
)
from platform_runtime.settings import ServiceSettings

FAILED_AT = datetime(2026, 11, 30, 8, 15, 30, 123456, tzinfo=UTC)


def letter(*headers: tuple[str, str], position: Position = Position(2, 17)) -> DeadLetter:
    return DeadLetter(
        topic="payments.events.dlq",
        position=position,
        timestamp_ms=1_700_000_000_000,
        key=b"booking-1",
        value=b"{}",
        headers=tuple((k, v.encode()) for k, v in headers),
    )


DEAD = letter(
    ("ce_id", "5c0d"),
    ("ce_type", "PaymentSucceeded.v1"),
    ("dlq_reason", "BookingNotFound: booking-1 is not known"),
    ("dlq_kind", "rejected"),
    ("dlq_consumer", "booking-payments"),
    ("dlq_original_topic", "payments.events"),
    ("dlq_original_partition", "2"),
    ("dlq_original_offset", "40"),
    ("dlq_failed_at", FAILED_AT.isoformat()),
    ("dlq_replay_of", "payments.events.dlq:2:3"),
)


def test_a_dead_letter_says_why_who_gave_up_on_it_and_where_it_came_from() -> None:
    assert DEAD.as_dict() == {
        "dead_letter_topic": "payments.events.dlq",
        "partition": 2,
        "offset": 17,
        "failed_at": FAILED_AT.isoformat(),
        "kind": "rejected",
        "consumer": "booking-payments",
        "event_type": "PaymentSucceeded.v1",
        "event_id": "5c0d",
        "key": "booking-1",
        "reason": "BookingNotFound: booking-1 is not known",
        "original_topic": "payments.events",
        "original_partition": 2,
        "original_offset": 40,
        "replay_of": "payments.events.dlq:2:3",
    }


def test_its_replay_keeps_key_value_and_original_headers_and_names_the_dead_letter() -> None:
    record = DEAD.replay()

    assert (record.topic, record.key, record.value) == ("payments.events", b"booking-1", b"{}")
    assert list(record.headers) == [
        ("ce_id", b"5c0d"),
        ("ce_type", b"PaymentSucceeded.v1"),
        (REPLAY_HEADER, b"payments.events.dlq:2:17"),
    ]


def test_a_record_without_the_dead_letter_headers_is_shown_for_what_little_it_says() -> None:
    bare = letter(("dlq_failed_at", "yesterday"), ("dlq_original_offset", "x"))

    assert bare.failed_at == datetime.fromtimestamp(1_700_000_000, UTC)
    assert letter(("dlq_failed_at", "2026-11-30T08:00:00")).failed_at == bare.failed_at
    assert (bare.kind, bare.consumer, bare.event_type, bare.reason) == ("?", "?", "?", "")
    assert bare.as_dict()["original_offset"] is None
    assert bare.as_dict()["original_topic"] is None
    keyless = DeadLetter("t.dlq", Position(0, 0), 0, None, None)
    assert keyless.as_dict()["key"] is None
    assert keyless.event_type == "?"
    assert letter(("dlq_source", "outbox")).consumer == "outbox"


def test_a_row_is_one_line_whatever_the_record_carries() -> None:
    hostile = letter(
        ("ce_type", "Evil\x1b[2J.v1"),
        ("dlq_kind", "rejected"),
        ("dlq_reason", "first line\nsecond\r\n" + "x" * 300),
        ("dlq_failed_at", FAILED_AT.isoformat()),
    )

    row = describe_row(hostile)

    assert row.endswith("\n")
    assert row.count("\n") == 1
    assert "\x1b" not in row
    assert row.startswith("2:17       2026-11-30T08:15:30Z  rejected")
    assert "first line second " in row
    assert row.rstrip("\n").endswith("x…")
    assert len(row.split("first line")[1]) < 200


def test_a_selection_matches_by_position_time_and_consumer() -> None:
    everything = Selection()
    chosen = Selection(
        positions=frozenset({Position(2, 17), Position(0, 1)}),
        since=FAILED_AT - timedelta(seconds=1),
        consumer="booking-payments",
    )

    assert everything.matches(DEAD)
    assert everything.describe() == ""
    assert chosen.matches(DEAD)
    assert not Selection(positions=frozenset({Position(2, 18)})).matches(DEAD)
    assert not Selection(since=FAILED_AT + timedelta(seconds=1)).matches(DEAD)
    assert not Selection(consumer="booking-inventory").matches(DEAD)
    assert chosen.describe() == (
        " at 0:1, 2:17 dead-lettered since 2026-11-30T08:15:29Z of booking-payments"
    )


def test_positions_and_times_are_read_as_an_operator_writes_them() -> None:
    now = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)

    assert parse_positions("3:17") == [Position(3, 17)]
    assert parse_positions(" 3:17,0:2 ") == [Position(3, 17), Position(0, 2)]
    assert str(Position(3, 17)) == "3:17"
    assert parse_since("90m", now=now) == now - timedelta(minutes=90)
    assert parse_since("2d", now=now) == now - timedelta(days=2)
    assert parse_since("2026-11-30T10:00:00+02:00") == datetime(2026, 11, 30, 8, tzinfo=UTC)
    assert parse_since("2026-11-30T08:00:00Z") == datetime(2026, 11, 30, 8, tzinfo=UTC)
    assert datetime.now(UTC) - parse_since("1s") < timedelta(minutes=1)


@pytest.mark.parametrize(
    ("parse", "text", "message"),
    [
        (parse_positions, "17", "'17' is not a position PARTITION:OFFSET (e.g. 3:17)"),
        (parse_positions, "3:-1", "'3:-1' is not a position"),
        (parse_since, "yesterday", "'yesterday' is neither an instant"),
        (parse_since, "2026-11-30T08:00:00", "has no UTC offset"),
    ],
)
def test_malformed_arguments_are_refused_saying_what_is_expected(
    parse: Any, text: str, message: str
) -> None:
    with pytest.raises(argparse.ArgumentTypeError) as refused:
        parse(text)

    assert message in str(refused.value)


class StalledReader:
    """A reader that never gets a record (a broker that stopped answering)."""

    def assign(self, partitions: list[TopicPartition]) -> None:
        self.partitions = partitions

    def seek(self, partition: TopicPartition, offset: int) -> None:
        """Nothing to seek."""

    async def getmany(self, *partitions: TopicPartition, **_: Any) -> dict[Any, Any]:
        await asyncio.sleep(0)
        return {}

    async def position(self, partition: TopicPartition) -> int:
        return 0

    def pause(self, partition: TopicPartition) -> None:
        """Nothing to pause."""


def topic(beginning: dict[int, int], end: dict[int, int]) -> DeadLetterTopic:
    return DeadLetterTopic(
        name="payments.events.dlq",
        source="payments.events",
        source_exists=True,
        beginning=beginning,
        end=end,
        reader=cast(AIOKafkaConsumer, StalledReader()),
        idle_timeout_s=0.0,
    )


def test_positions_outside_what_the_topic_holds_are_refused_saying_what_it_holds() -> None:
    dlq = topic({0: 0, 1: 5, 2: 3}, {0: 4, 1: 5, 2: 9})

    dlq.check(Selection(positions=frozenset({Position(0, 3), Position(2, 3)})))
    with pytest.raises(Refused) as refused:
        dlq.check(Selection(positions=frozenset({Position(1, 5), Position(2, 2), Position(7, 0)})))

    assert str(refused.value) == (
        "payments.events.dlq holds no record at 1:5, 2:2, 7:0 (partition 1 holds none; "
        "partition 2 holds offsets 3 to 8; it has no partition 7, only 0 to 2): "
        "see `dead-letters list`"
    )
    assert dlq.records == 10


async def test_a_topic_that_stops_answering_ends_the_scan_with_a_timeout() -> None:
    dlq = topic({0: 0}, {0: 2})

    with pytest.raises(TimeoutError, match=r"no record came from payments\.events\.dlq"):
        async for _ in dlq.scan(Selection()):
            pass  # pragma: no cover - nothing comes

    assert dlq.to_scan == 2


def test_output_that_is_read_only_in_part_is_no_failure(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    async def reader_went_away(*args: Any, **kwargs: Any) -> deadletters.Exit:
        raise BrokenPipeError  # as when the output goes through `| head`

    monkeypatch.setattr(deadletters, "main", reader_went_away)
    kafka_log = logging.getLogger("aiokafka")
    before = kafka_log.level
    with (tmp_path / "stdout").open("w") as stdout:
        monkeypatch.setattr(sys, "stdout", stdout)
        code = deadletters.run(ServiceSettings(), argparse.Namespace())

    assert code == deadletters.Exit.OK
    assert kafka_log.level == before  # quieter only while the command ran


@pytest.mark.parametrize(
    ("value", "event_type", "event_id"),
    [
        (
            b'{"id": "5c0d", "type": "PaymentSucceeded.v1", "data": {}}',
            "PaymentSucceeded.v1",
            "5c0d",
        ),
        (b'{"id": 7, "type": ["x"]}', "?", None),
        (b"[1, 2]", "?", None),
        (b"\xff not json", "?", None),
        (b"[" * 100_000, "?", None),
    ],
    ids=["envelope", "odd-members", "not-an-object", "not-json", "too-deep"],
)
def test_without_the_ce_headers_the_type_and_id_come_from_the_envelope_if_there_is_one(
    value: bytes, event_type: str, event_id: str | None
) -> None:
    bare = DeadLetter("payments.events.dlq", Position(0, 0), 0, None, value)

    assert (bare.event_type, bare.as_dict()["event_id"]) == (event_type, event_id)
