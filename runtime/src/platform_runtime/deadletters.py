"""Dead letters: list what the consumer groups gave up on, and replay it to its topic.

Every service has the operator command (a kernel command of :mod:`platform_runtime.cli`)::

    <service> dead-letters list TOPIC [--offset P:O ...] [--since WHEN] [--consumer GROUP]
                                      [--json]
    <service> dead-letters replay TOPIC (--offset P:O ... | --since WHEN | --all)
                                        [--consumer GROUP] [--dry-run]

``TOPIC`` is an event topic (``payments.events``) or its dead-letter topic
(``payments.events.dlq``). A dead letter is named by its place on the dead-letter topic,
``PARTITION:OFFSET`` (``3:17``), as ``list`` shows it. ``WHEN`` is an instant with its UTC
offset (``2026-11-30T08:00:00Z``) or a time ago (``90m``, ``6h``, ``2d``), compared with the
time the record was dead-lettered.

A dead letter (written by :class:`platform_runtime.messaging.EventConsumer`) is the record as it was
read, key, value and headers, plus the headers that say why (``dlq_reason``, ``dlq_kind``),
which consumer group gave up (``dlq_consumer``), where the record was
(``dlq_original_topic``, ``dlq_original_partition``, ``dlq_original_offset``) and when
(``dlq_failed_at``).

An event its own service could not publish (the broker refused it for good) is parked on the
same dead-letter topic by the outbox relay, with ``dlq_source: outbox`` instead of a consumer
group (``list`` shows ``outbox`` as its consumer). A dead letter whose value was cut to fit
(``dlq_value_truncated``) is listed but never replayed: its whole record is not there.

Replaying publishes each chosen dead letter to its original topic with its key, its value
and its original headers (all but the ``dlq_*`` ones), plus ``dlq_replay_of``: the dead
letter it repeats, ``<dead-letter topic>:<partition>:<offset>``. The event keeps its id, so
a consumer group that applied it before finds it in its inbox and changes nothing, while the
group that gave up on it (its failed transaction released the inbox claim) applies it now,
or dead-letters it again with ``dlq_replay_of`` among the headers. Replaying a dead letter
twice is therefore harmless. Records are published with the services' own producer
(idempotent, ``acks=all``), in the order of their dead-letter partition (one key's records
keep their order); dead letters are read without a consumer group and stay where they are
(Kafka deletes records only when their retention runs out). A replay shows its progress on
stderr.

Exit codes: 0 done; 1 Kafka could not be reached, or a replay stopped or left dead letters
out (the message says which); 2 bad arguments, among them a topic that has no dead-letter
topic on the broker and a position where the dead-letter topic holds no record; 3 nothing
to list or replay (the dead-letter topic is empty, or no dead letter matches).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import enum
import functools
import json
import logging
import os
import re
import sys
from collections.abc import AsyncGenerator, AsyncIterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol, TextIO

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError

from booking_contracts.topics import DLQ_SUFFIX, dead_letter_topic
from platform_runtime.errors import KernelError, describe
from platform_runtime.kafka import KafkaPublisher, make_admin, make_reader
from platform_runtime.progress import ProgressBar
from platform_runtime.settings import ServiceSettings
from platform_runtime.text import one_line
from platform_runtime.transport import KafkaRecord

REPLAY_HEADER = "dlq_replay_of"
"""The header of a replayed record: the dead letter it repeats (``topic:partition:offset``)."""
DEAD_LETTER_PREFIX = "dlq_"
"""Headers the dead-letter topic added; a replay leaves them out."""
REPLAY_CHUNK = 500
"""Records published at once (then the progress is shown)."""
REASON_WIDTH = 200
"""Characters of the reason that ``list`` shows (``--json`` gives it whole)."""


class Exit(enum.IntEnum):
    OK = 0
    FAILED = 1
    USAGE = 2
    NOTHING = 3


class Refused(KernelError):
    """Arguments that parse but do not fit what the broker holds (exit 2)."""


@dataclass(frozen=True, order=True)
class Position:
    """Where a record is on its topic: ``PARTITION:OFFSET``."""

    partition: int
    offset: int

    def __str__(self) -> str:
        return f"{self.partition}:{self.offset}"

    @classmethod
    def parse(cls, text: str) -> Position:
        match = re.fullmatch(r"([0-9]+):([0-9]+)", text.strip())
        if match is None:
            raise ValueError(f"{text!r} is not a position PARTITION:OFFSET (e.g. 3:17)")
        return cls(int(match[1]), int(match[2]))


@dataclass(frozen=True)
class DeadLetter:
    """One record of a dead-letter topic."""

    topic: str
    position: Position
    timestamp_ms: int
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes], ...] = ()

    @classmethod
    def of(cls, record: Any) -> DeadLetter:
        """From an aiokafka ``ConsumerRecord``."""
        return cls(
            topic=record.topic,
            position=Position(record.partition, record.offset),
            timestamp_ms=record.timestamp,
            key=record.key,
            value=record.value,
            headers=tuple(record.headers or ()),
        )

    def header(self, name: str) -> str | None:
        """The value of the first header called ``name``, if any."""
        for key, value in self.headers:
            if key == name:
                return value.decode(errors="replace")
        return None

    @property
    def failed_at(self) -> datetime:
        """When the consumer group gave up (``dlq_failed_at``; else the record's time)."""
        text = self.header("dlq_failed_at")
        if text:
            with contextlib.suppress(ValueError):
                failed_at = datetime.fromisoformat(text)
                if failed_at.tzinfo is not None:
                    return failed_at.astimezone(UTC)
        return datetime.fromtimestamp(self.timestamp_ms / 1000, UTC)

    @property
    def kind(self) -> str:
        return self.header("dlq_kind") or "?"

    @property
    def reason(self) -> str:
        return self.header("dlq_reason") or ""

    @property
    def consumer(self) -> str:
        """The consumer group that gave up, or ``outbox`` for an event its service could not
        publish (parked by :class:`platform_runtime.outbox.OutboxRelay`)."""
        return self.header("dlq_consumer") or self.header("dlq_source") or "?"

    @property
    def event_type(self) -> str:
        return self.header("ce_type") or self._envelope_member("type") or "?"

    @property
    def event_id(self) -> str | None:
        return self.header("ce_id") or self._envelope_member("id")

    def _envelope_member(self, name: str) -> str | None:
        """A member of the envelope in the value, for a record without the ``ce_*`` headers
        (another system's producer may not write them)."""
        member = self._envelope.get(name)
        return member if isinstance(member, str) else None

    @functools.cached_property
    def _envelope(self) -> dict[str, Any]:
        try:
            parsed = json.loads(self.value or b"")
        except (ValueError, RecursionError):  # not JSON, or JSON no parser should take
            return {}
        return parsed if isinstance(parsed, dict) else {}

    @property
    def original_topic(self) -> str | None:
        return self.header("dlq_original_topic")

    def unreplayable(self, source: str) -> str | None:
        """Why this record cannot be replayed to ``source``, if it cannot."""
        if self.original_topic != source:
            topic = one_line(self.original_topic or "missing")
            return f"its dlq_original_topic is {topic!r}, not {source!r}"
        cut = self.header("dlq_value_truncated")
        if cut is not None:
            return (
                f"its value was cut to fit the dead-letter topic (it had {one_line(cut)} bytes): "
                "the whole record is not there to replay"
            )
        return None

    def replay(self) -> KafkaRecord:
        """The record to publish again: to its original topic, as it was read there, saying
        which dead letter it repeats."""
        headers = [(k, v) for k, v in self.headers if not k.startswith(DEAD_LETTER_PREFIX)]
        headers.append((REPLAY_HEADER, f"{self.topic}:{self.position}".encode()))
        return KafkaRecord(
            topic=self.original_topic or "", key=self.key, value=self.value, headers=headers
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "dead_letter_topic": self.topic,
            "partition": self.position.partition,
            "offset": self.position.offset,
            "failed_at": self.failed_at.isoformat(),
            "kind": self.kind,
            "consumer": self.consumer,
            "event_type": self.event_type,
            "event_id": self.event_id,
            "key": None if self.key is None else self.key.decode(errors="replace"),
            "reason": self.reason,
            "original_topic": self.original_topic,
            "original_partition": _number(self.header("dlq_original_partition")),
            "original_offset": _number(self.header("dlq_original_offset")),
            "replay_of": self.header(REPLAY_HEADER),
        }


def _number(text: str | None) -> int | None:
    return int(text) if text is not None and text.isdigit() else None


@dataclass(frozen=True)
class Selection:
    """The dead letters at ``positions`` (any, if none are given), dead-lettered at
    ``since`` or later, by the consumer group ``consumer``."""

    positions: frozenset[Position] = frozenset()
    since: datetime | None = None
    consumer: str | None = None

    def matches(self, letter: DeadLetter) -> bool:
        return (
            (not self.positions or letter.position in self.positions)
            and (self.since is None or letter.failed_at >= self.since)
            and (self.consumer is None or letter.consumer == self.consumer)
        )

    def describe(self) -> str:
        """`` at 0:1, 0:2 since … of group``, or nothing for every dead letter."""
        parts = []
        if self.positions:
            parts.append("at " + ", ".join(map(str, sorted(self.positions))))
        if self.since is not None:
            parts.append(f"dead-lettered since {_instant(self.since)}")
        if self.consumer is not None:
            parts.append(f"of {self.consumer}")
        return "".join(f" {part}" for part in parts)


@dataclass
class DeadLetterTopic:
    """A dead-letter topic as it is now, read without a consumer group (nothing is
    committed): ``beginning`` and ``end`` are, per partition, the offset of its oldest record
    still kept and the offset its next record will get."""

    name: str
    source: str
    source_exists: bool
    beginning: dict[int, int]
    end: dict[int, int]
    reader: AIOKafkaConsumer
    idle_timeout_s: float = 15.0
    scanned: int = 0
    to_scan: int = 0
    seen: set[Position] = field(default_factory=set)

    @property
    def records(self) -> int:
        return sum(self.end[p] - self.beginning[p] for p in self.end)

    def check(self, selection: Selection) -> None:
        """Refuse positions where the topic holds no record."""
        missing = sorted(p for p in selection.positions if not self._holds(p))
        if not missing:
            return
        partitions = sorted({p.partition for p in missing})
        holds = "; ".join(self._holdings(partition) for partition in partitions)
        raise Refused(
            f"{self.name} holds no record at {', '.join(map(str, missing))} ({holds}): "
            "see `dead-letters list`"
        )

    def _holds(self, position: Position) -> bool:
        first = self.beginning.get(position.partition)
        return first is not None and first <= position.offset < self.end[position.partition]

    def _holdings(self, partition: int) -> str:
        if partition not in self.end:
            return f"it has no partition {partition}, only 0 to {max(self.end)}"
        first, end = self.beginning[partition], self.end[partition]
        if first == end:
            return f"partition {partition} holds none"
        return f"partition {partition} holds offsets {first} to {end - 1}"

    async def scan(self, selection: Selection) -> AsyncGenerator[DeadLetter, None]:
        """The dead letters that ``selection`` matches, each partition's in offset order,
        among the records the topic held when it was opened."""
        ranges = self._ranges(selection)
        self.scanned, self.to_scan = 0, sum(end - start for start, end in ranges.values())
        self.seen = set()
        partitions = {TopicPartition(self.name, p): bounds for p, bounds in ranges.items()}
        if not partitions:
            return
        self.reader.assign(list(partitions))
        for tp, (start, _) in partitions.items():
            self.reader.seek(tp, start)
        remaining = set(partitions)
        loop = asyncio.get_running_loop()
        heard_at = loop.time()
        while remaining:
            fetched = await self.reader.getmany(*remaining, timeout_ms=200, max_records=500)
            if fetched:
                heard_at = loop.time()
            for tp, records in fetched.items():
                for record in records:
                    if record.offset >= partitions[tp][1]:
                        break
                    self.scanned += 1
                    letter = DeadLetter.of(record)
                    self.seen.add(letter.position)
                    if selection.matches(letter):
                        yield letter
            for tp in list(remaining):
                if await self.reader.position(tp) >= partitions[tp][1]:
                    remaining.discard(tp)
                    self.reader.pause(tp)
            if remaining and loop.time() - heard_at > self.idle_timeout_s:
                raise TimeoutError(f"no record came from {self.name} in {self.idle_timeout_s:g}s")

    def _ranges(self, selection: Selection) -> dict[int, tuple[int, int]]:
        """Per partition to read, the offsets from and to (exclusive)."""
        if selection.positions:
            offsets: dict[int, list[int]] = {}
            for position in selection.positions:
                offsets.setdefault(position.partition, []).append(position.offset)
            return {p: (min(o), max(o) + 1) for p, o in offsets.items()}
        return {p: (self.beginning[p], e) for p, e in self.end.items() if e > self.beginning[p]}


@contextlib.asynccontextmanager
async def opened(
    settings: ServiceSettings, topic: str, *, client_id: str
) -> AsyncIterator[DeadLetterTopic]:
    """The dead-letter topic of ``topic`` (an event topic or the dead-letter topic itself);
    :class:`Refused` if the broker has none."""
    source = topic.removesuffix(DLQ_SUFFIX)
    name = dead_letter_topic(source)
    admin = make_admin(
        settings.kafka_bootstrap_servers,
        client_id=client_id,
        request_timeout_ms=settings.kafka_request_timeout_ms,
        security=settings.kafka_security(),
    )
    reader = make_reader(
        settings.kafka_bootstrap_servers,
        client_id=client_id,
        request_timeout_ms=settings.kafka_request_timeout_ms,
        security=settings.kafka_security(),
        auto_offset_reset="earliest",  # a record deleted meanwhile: go on with the next
    )
    try:
        await admin.start()
        # Every topic's metadata: asking for one by name may make the broker create it.
        described = {t["topic"]: t for t in await admin.describe_topics() if not t["error_code"]}
        if name not in described:
            others = sorted(t for t in described if t.endswith(DLQ_SUFFIX))
            known = f"the dead-letter topics are {_names(others)}" if others else "it has none"
            raise Refused(f"the broker has no topic {name} ({known})")
        await reader.start()
        partitions = [TopicPartition(name, p["partition"]) for p in described[name]["partitions"]]
        beginning = await reader.beginning_offsets(partitions)
        end = await reader.end_offsets(partitions)
        yield DeadLetterTopic(
            name=name,
            source=source,
            source_exists=source in described,
            beginning={tp.partition: offset for tp, offset in beginning.items()},
            end={tp.partition: offset for tp, offset in end.items()},
            reader=reader,
            idle_timeout_s=settings.kafka_request_timeout_ms / 1000,
        )
    finally:
        with contextlib.suppress(Exception):
            await reader.stop()
        with contextlib.suppress(Exception):
            await admin.close()


# --- list ---------------------------------------------------------------------------------

_COLUMNS = ("OFFSET", "FAILED AT", "KIND", "CONSUMER", "EVENT TYPE", "REASON")
_WIDTHS = (9, 20, 17, 24, 24)


def table_row(cells: Sequence[str]) -> str:
    padded = [f"{cell:<{width}}" for cell, width in zip(cells, _WIDTHS, strict=False)]
    return "  ".join([*padded, *cells[len(_WIDTHS) :]]).rstrip() + "\n"


def table_header() -> str:
    return table_row(_COLUMNS)


def describe_row(letter: DeadLetter) -> str:
    """One line of ``list``: control characters in what the record carries become spaces."""
    reason = " ".join(one_line(letter.reason).split())
    if len(reason) > REASON_WIDTH:
        reason = reason[: REASON_WIDTH - 1] + "…"
    cells = [
        str(letter.position),
        _instant(letter.failed_at),
        letter.kind,
        letter.consumer,
        letter.event_type,
        reason,
    ]
    return table_row([one_line(cell) for cell in cells])


async def list_letters(
    topic: DeadLetterTopic, selection: Selection, *, as_json: bool, out: TextIO, err: TextIO
) -> Exit:
    if not topic.records:
        err.write(f"{topic.name} holds no dead letters\n")
        return Exit.NOTHING
    topic.check(selection)
    count = 0
    async with contextlib.aclosing(topic.scan(selection)) as letters:
        async for letter in letters:
            if as_json:
                out.write(json.dumps(letter.as_dict()) + "\n")
            else:
                out.write((table_header() if not count else "") + describe_row(letter))
            count += 1
    if not count:
        err.write(f"no dead letter on {topic.name}{selection.describe()}\n")
        return Exit.NOTHING
    err.write(f"{_letters(count)} on {topic.name}{selection.describe()}\n")
    return Exit.OK


# --- replay -------------------------------------------------------------------------------


class Publisher(Protocol):
    async def send_records(self, records: Sequence[KafkaRecord]) -> None:
        """Publish ``records`` in order; return once the broker acknowledged every one."""

    async def stop(self) -> None: ...


async def replay_letters(
    topic: DeadLetterTopic,
    selection: Selection,
    publisher: Publisher,
    *,
    dry_run: bool,
    progress: ProgressBar,
    out: TextIO,
    err: TextIO,
) -> Exit:
    if not topic.records:
        err.write(f"{topic.name} holds no dead letters\n")
        return Exit.NOTHING
    topic.check(selection)
    if not topic.source_exists:
        raise Refused(f"the broker has no topic {topic.source} to replay to")
    replayed: list[Position] = []
    left_out: list[str] = []
    batch: list[DeadLetter] = []
    done = "chosen" if dry_run else "replayed"

    async def publish() -> None:
        if not dry_run:
            await publisher.send_records([letter.replay() for letter in batch])
        replayed.extend(letter.position for letter in batch)
        batch.clear()
        progress.update(topic.scanned, topic.to_scan, f"{len(replayed)} {done}")

    try:
        async with contextlib.aclosing(topic.scan(selection)) as letters:
            async for letter in letters:
                why_not = letter.unreplayable(topic.source)
                if why_not is not None:
                    left_out.append(f"{letter.position} ({why_not})")
                    continue
                if dry_run:
                    first = not replayed and not batch
                    out.write((table_header() if first else "") + describe_row(letter))
                batch.append(letter)
                if len(batch) >= REPLAY_CHUNK:
                    await publish()
                else:
                    progress.update(topic.scanned, topic.to_scan, f"{len(replayed)} {done}")
        if batch:
            await publish()
    except (KafkaError, OSError, TimeoutError) as exc:
        progress.close()
        not_done = f"from {batch[0].position} on" if batch else "the rest"
        err.write(
            f"replay stopped: {describe(exc)}. {_letters(len(replayed))} of {topic.name} "
            f"replayed to {topic.source}{_positions(replayed)}; {not_done} not, or only in "
            "part: the same replay again is safe (what was replayed is applied once)\n"
        )
        return Exit.FAILED
    progress.close()
    missing = sorted(selection.positions - topic.seen)
    left_out += [f"{position} (no record there)" for position in missing]
    if not replayed and not left_out:
        err.write(f"no dead letter on {topic.name}{selection.describe()}\n")
        return Exit.NOTHING
    verb = "would replay" if dry_run else "replayed"
    out_stream = err if dry_run else out
    out_stream.write(
        f"{verb} {_letters(len(replayed))} of {topic.name} to {topic.source}"
        f"{_positions(replayed)}\n"
    )
    if left_out:
        err.write(f"not replayed: {'; '.join(left_out)}\n")
        return Exit.FAILED
    return Exit.OK


def _names(names: Sequence[str], most: int = 12) -> str:
    more = f" and {len(names) - most} more" if len(names) > most else ""
    return ", ".join(names[:most]) + more


def _letters(count: int) -> str:
    return f"{count} dead letter{'' if count == 1 else 's'}"


def _positions(positions: Sequence[Position], most: int = 10) -> str:
    if not positions:
        return ""
    shown = ", ".join(map(str, positions[:most]))
    more = f" and {len(positions) - most} more" if len(positions) > most else ""
    return f" ({shown}{more})"


def _instant(moment: datetime) -> str:
    return f"{moment.astimezone(UTC):%Y-%m-%dT%H:%M:%SZ}"


# --- the command --------------------------------------------------------------------------


def parse_positions(text: str) -> list[Position]:
    """``3:17`` or ``3:17,3:18`` (an ``argparse`` type)."""
    try:
        return [Position.parse(part) for part in text.split(",")]
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


_AGO = re.compile(r"([0-9]+)([smhd])")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}


def parse_since(text: str, *, now: datetime | None = None) -> datetime:
    """An instant with its UTC offset, or a time ago: ``90m``, ``6h``, ``2d`` (an
    ``argparse`` type)."""
    ago = _AGO.fullmatch(text.strip())
    if ago is not None:
        return (now or datetime.now(UTC)) - timedelta(**{_UNITS[ago[2]]: int(ago[1])})
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is neither an instant (2026-11-30T08:00:00Z) nor a time ago (90m, 6h, 2d)"
        ) from None
    if moment.tzinfo is None:
        raise argparse.ArgumentTypeError(f"{text!r} has no UTC offset (add one, e.g. Z)")
    return moment.astimezone(UTC)


def _topic_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "topic", metavar="TOPIC", help="an event topic (payments.events) or its .dlq topic"
    )


def _offsets_argument(parser: argparse.ArgumentParser | argparse._MutuallyExclusiveGroup) -> None:
    parser.add_argument(
        "--offset",
        dest="positions",
        type=parse_positions,
        action="extend",
        metavar="P:O",
        help="a dead letter by PARTITION:OFFSET on the dead-letter topic, as `list` shows it "
        "(repeat, or separate with commas)",
    )


def _since_argument(parser: argparse.ArgumentParser | argparse._MutuallyExclusiveGroup) -> None:
    parser.add_argument(
        "--since",
        type=parse_since,
        metavar="WHEN",
        help="dead-lettered at or after WHEN: an instant with its offset "
        "(2026-11-30T08:00:00Z) or a time ago (90m, 6h, 2d)",
    )


def configure(parser: argparse.ArgumentParser) -> None:
    parser.description = __doc__.split("\n\n")[0] if __doc__ else None
    actions = parser.add_subparsers(dest="action", required=True, metavar="{list,replay}")
    listing = actions.add_parser(
        "list", help="show the dead letters of a topic: offset, time, kind, consumer, type, reason"
    )
    _topic_argument(listing)
    _offsets_argument(listing)
    _since_argument(listing)
    listing.add_argument("--consumer", metavar="GROUP", help="dead-lettered by this group only")
    listing.add_argument(
        "--json", action="store_true", help="one JSON object a line, with the reason in full"
    )
    replay = actions.add_parser(
        "replay",
        help="publish dead letters again to their topic (idempotent consumers apply each once)",
    )
    _topic_argument(replay)
    chosen = replay.add_mutually_exclusive_group(required=True)
    _offsets_argument(chosen)
    _since_argument(chosen)
    chosen.add_argument("--all", action="store_true", help="every dead letter of the topic")
    replay.add_argument("--consumer", metavar="GROUP", help="dead-lettered by this group only")
    replay.add_argument(
        "--dry-run", action="store_true", help="show what would be replayed; publish nothing"
    )


def run(settings: ServiceSettings, args: argparse.Namespace) -> int:
    """The command, as the service's CLI runs it (the Kafka client's own chatter below
    warnings is left out of its output)."""
    kafka_log = logging.getLogger("aiokafka")
    level = kafka_log.level
    kafka_log.setLevel(max(level, logging.WARNING))
    try:
        return asyncio.run(main(settings, args, out=sys.stdout, err=sys.stderr))
    except BrokenPipeError:  # whoever read the output (`| head`) had enough of it
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # nothing left to flush into a closed pipe
        return Exit.OK
    finally:
        kafka_log.setLevel(level)


async def main(
    settings: ServiceSettings,
    args: argparse.Namespace,
    *,
    out: TextIO,
    err: TextIO,
    publisher: Publisher | None = None,
    progress: ProgressBar | None = None,
) -> Exit:
    """``dead-letters list|replay`` with parsed ``args``."""
    command = f"{settings.service_name} dead-letters {args.action}"
    selection = Selection(
        positions=frozenset(args.positions or ()), since=args.since, consumer=args.consumer
    )
    client_id = f"{settings.service_name}-dead-letters"
    try:
        async with opened(settings, args.topic, client_id=client_id) as topic:
            if args.action == "list":
                return await list_letters(topic, selection, as_json=args.json, out=out, err=err)
            sink = publisher or KafkaPublisher(
                settings.kafka_bootstrap_servers,
                client_id=client_id,
                request_timeout_ms=settings.kafka_request_timeout_ms,
                security=settings.kafka_security(),
            )
            try:
                return await replay_letters(
                    topic,
                    selection,
                    sink,
                    dry_run=args.dry_run,
                    progress=progress or ProgressBar(err, label=f"replay {topic.name}"),
                    out=out,
                    err=err,
                )
            finally:
                if publisher is None:
                    await sink.stop()
    except Refused as exc:
        err.write(f"{command}: {exc}\n")
        return Exit.USAGE
    except BrokenPipeError:
        raise
    except (KafkaError, OSError, TimeoutError) as exc:
        err.write(
            f"{command}: cannot read {args.topic} from Kafka at "
            f"{settings.kafka_bootstrap_servers}: {describe(exc)}\n"
        )
        return Exit.FAILED
