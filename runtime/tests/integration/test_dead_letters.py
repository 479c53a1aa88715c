"""``<service> dead-letters list | replay`` against a real broker and database: an operator
reads why records were dead-lettered and, once the cause is fixed, replays them; each is
applied once however often it is replayed."""

from __future__ import annotations

import argparse
import io
import json
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pytest
from fastapi import FastAPI
from sqlalchemy import insert

from booking_contracts.envelope import Envelope
from platform_runtime import deadletters
from platform_runtime.cli import service_main
from platform_runtime.deadletters import DeadLetter, Exit
from platform_runtime.http.metrics import Metrics
from platform_runtime.kafka import KafkaPublisher, ensure_topics
from platform_runtime.messaging import EventContext
from platform_runtime.progress import ProgressBar
from platform_runtime.settings import ServiceSettings
from platform_runtime.transport import KafkaRecord
from platform_tooling.polling import eventually
from tests.support.kafka import produce, read_topic
from tests.support.threads import in_thread

from .conftest import Db, KernelTestEvent, effects
from .helpers import Refused, consuming, effect_notes, new_consumer, outcome_count

TYPE = KernelTestEvent.type_name()


@dataclass
class Outcome:
    code: int
    out: str
    err: str


def settings_for(bootstrap: str) -> ServiceSettings:
    return ServiceSettings(service_name="kernel", kafka_bootstrap_servers=bootstrap, log_json=False)


async def dead_letters(
    bootstrap: str, *argv: str, publisher: deadletters.Publisher | None = None
) -> Outcome:
    """``kernel dead-letters ARGV``, parsed as the CLI parses it, with its output captured."""
    parser = argparse.ArgumentParser(prog="kernel dead-letters")
    deadletters.configure(parser)
    out, err = io.StringIO(), io.StringIO()
    code = await deadletters.main(
        settings_for(bootstrap),
        parser.parse_args(argv),
        out=out,
        err=err,
        publisher=publisher,
        progress=ProgressBar(err, label="replay", interactive=False),
    )
    return Outcome(code, out.getvalue(), err.getvalue())


def event(note: str) -> Envelope:
    return Envelope.wrap(KernelTestEvent(order_id=uuid.uuid4(), note=note), source="/tests")


async def publish(bootstrap: str, topic: str, *envelopes: Envelope) -> None:
    for envelope in envelopes:
        await produce(
            bootstrap,
            topic,
            [envelope.to_json_bytes()],
            key=str(envelope.subject).encode(),
            headers=[(k, v.encode()) for k, v in envelope.headers().items()],
        )


@dataclass
class Repairable:
    """A consumer group that refuses ``needs-fix`` events until ``fixed`` (a fix deployed)."""

    group: str
    metrics: Metrics
    fixed: bool = False

    async def duplicates(self) -> float:
        return outcome_count(self.metrics, self.group, TYPE, "duplicate")


@asynccontextmanager
async def repairable(
    db: Db, bootstrap: str, topic: str, unique: Callable[[str], str]
) -> AsyncIterator[Repairable]:
    state = Repairable(unique("g"), Metrics())
    sink = KafkaPublisher(bootstrap, client_id=state.group)
    consumer = new_consumer(db, bootstrap, state.group, sink, metrics=state.metrics)

    @consumer.on(KernelTestEvent)
    async def apply(event: KernelTestEvent, ctx: EventContext) -> None:
        await ctx.session.execute(insert(effects).values(order_id=event.order_id, note=event.note))
        if event.note.startswith("needs-fix") and not state.fixed:
            raise Refused("the fix for this order is not deployed yet")

    try:
        async with consuming(consumer):
            yield state
    finally:
        await sink.stop()


async def dead_lettered(bootstrap: str, topic: str, *envelopes: Envelope) -> list[DeadLetter]:
    """The dead letters of ``envelopes``, in their order."""
    ids = [str(e.id).encode() for e in envelopes]
    records = await read_topic(
        bootstrap,
        f"{topic}.dlq",
        at_least=len(ids),
        where=lambda r: dict(r.headers).get("ce_id") in ids,
    )
    letters = {dict(r.headers)["ce_id"]: DeadLetter.of(r) for r in records}
    return [letters[i] for i in ids]


async def test_a_replayed_dead_letter_is_applied_once_however_often_it_is_replayed(
    db: Db, kafka_bootstrap: str, topic: str, unique: Callable[[str], str]
) -> None:
    broken = event("needs-fix-1")
    async with repairable(db, kafka_bootstrap, topic, unique) as group:
        await publish(kafka_bootstrap, topic, broken, event("fine"))
        [letter] = await dead_lettered(kafka_bootstrap, topic, broken)
        await eventually(lambda: effect_notes(db), lambda notes: "fine" in notes)

        listed = await dead_letters(kafka_bootstrap, "list", topic)
        group.fixed = True
        first = await dead_letters(
            kafka_bootstrap, "replay", topic, "--offset", str(letter.position)
        )
        await eventually(lambda: effect_notes(db), lambda notes: "needs-fix-1" in notes)
        second = await dead_letters(
            kafka_bootstrap, "replay", f"{topic}.dlq", "--offset", str(letter.position)
        )
        await eventually(group.duplicates, lambda count: count >= 1)
        notes = await effect_notes(db)

    assert listed.code == Exit.OK, listed.err
    [header, row] = listed.out.splitlines()
    assert header == deadletters.table_header().rstrip("\n")
    assert row.split()[0] == str(letter.position)
    assert row.split()[2:5] == ["rejected", group.group, TYPE]
    assert "Refused: the fix for this order is not deployed yet" in row
    assert f"1 dead letter on {topic}.dlq" in listed.err
    assert first.code == second.code == Exit.OK, first.err + second.err
    assert f"replayed 1 dead letter of {topic}.dlq to {topic} ({letter.position})" in first.out
    assert notes.count("needs-fix-1") == 1
    assert await group.duplicates() == 1


async def test_a_replay_repeats_the_record_as_it_was_saying_which_dead_letter_it_repeats(
    db: Db, kafka_bootstrap: str, topic: str, unique: Callable[[str], str]
) -> None:
    broken = event("needs-fix-2")
    async with repairable(db, kafka_bootstrap, topic, unique):
        await publish(kafka_bootstrap, topic, broken)
        [letter] = await dead_lettered(kafka_bootstrap, topic, broken)
        replayed = await dead_letters(kafka_bootstrap, "replay", topic, "--all")

    [again] = await read_topic(
        kafka_bootstrap,
        topic,
        at_least=1,
        where=lambda r: deadletters.REPLAY_HEADER in dict(r.headers),
    )
    assert replayed.code == Exit.OK, replayed.err
    assert again.key == letter.key == str(broken.subject).encode()
    assert again.value == letter.value == broken.to_json_bytes()
    assert dict(again.headers) == {
        **{k: v.encode() for k, v in broken.headers().items()},
        deadletters.REPLAY_HEADER: f"{topic}.dlq:{letter.position}".encode(),
    }
    assert "replay: 1/1, 1 replayed" in replayed.err  # the last progress line


async def test_replaying_since_a_time_takes_only_what_was_dead_lettered_from_then_on(
    db: Db, kafka_bootstrap: str, topic: str, unique: Callable[[str], str]
) -> None:
    earlier, later = event("needs-fix-earlier"), event("needs-fix-later")
    async with repairable(db, kafka_bootstrap, topic, unique) as group:
        await publish(kafka_bootstrap, topic, earlier)
        [first] = await dead_lettered(kafka_bootstrap, topic, earlier)
        await publish(kafka_bootstrap, topic, later)
        await dead_lettered(kafka_bootstrap, topic, later)
        since = (first.failed_at + timedelta(microseconds=1)).isoformat()
        group.fixed = True

        rehearsal = await dead_letters(
            kafka_bootstrap, "replay", topic, "--since", since, "--dry-run"
        )
        replayed = await dead_letters(
            kafka_bootstrap, "replay", topic, "--since", since, "--consumer", group.group
        )
        await eventually(lambda: effect_notes(db), lambda notes: "needs-fix-later" in notes)
        listed = await dead_letters(kafka_bootstrap, "list", topic, "--since", since, "--json")

    assert rehearsal.code == Exit.OK
    assert "needs-fix" not in rehearsal.out  # the table shows the records' places, not values
    assert len(rehearsal.out.splitlines()) == 2  # the header and the later one
    assert "would replay 1 dead letter" in rehearsal.err
    assert replayed.code == Exit.OK, replayed.err
    assert await effect_notes(db) == ["needs-fix-later"]
    [described] = [json.loads(line) for line in listed.out.splitlines()]
    assert described["event_id"] == str(later.id)
    assert described["kind"] == "rejected"
    assert described["consumer"] == group.group
    assert described["original_topic"] == topic
    assert described["reason"] == "Refused: the fix for this order is not deployed yet"


async def test_an_empty_dead_letter_topic_says_so_with_its_own_exit_code(
    kafka_bootstrap: str, topic: str
) -> None:
    listed = await dead_letters(kafka_bootstrap, "list", topic)
    replayed = await dead_letters(kafka_bootstrap, "replay", topic, "--all")

    assert listed.code == replayed.code == Exit.NOTHING
    assert listed.code == 3  # the exit status a script sees
    assert listed.out == replayed.out == ""
    assert f"{topic}.dlq holds no dead letters" in listed.err
    assert f"{topic}.dlq holds no dead letters" in replayed.err


async def test_an_unknown_topic_is_refused_naming_the_dead_letter_topics_there(
    kafka_bootstrap: str, topic: str, unique: Callable[[str], str]
) -> None:
    missing = unique("no-such-topic")

    listed = await dead_letters(kafka_bootstrap, "list", missing)

    assert listed.code == Exit.USAGE
    assert listed.code == 2  # the exit status a script sees
    assert f"kernel dead-letters list: the broker has no topic {missing}.dlq" in listed.err
    assert "(the dead-letter topics are " in listed.err


async def test_positions_where_the_topic_holds_nothing_are_refused_and_nothing_is_replayed(
    kafka_bootstrap: str, topic: str
) -> None:
    await produce(kafka_bootstrap, f"{topic}.dlq", [b"dead"], key=b"k")
    [record] = await read_topic(kafka_bootstrap, f"{topic}.dlq", at_least=1)
    here = f"{record.partition}:{record.offset}"

    replayed = await dead_letters(
        kafka_bootstrap, "replay", topic, "--offset", f"{here},{record.partition}:7,99:0"
    )

    assert replayed.code == Exit.USAGE
    assert f"holds no record at {record.partition}:7, 99:0" in replayed.err
    assert f"partition {record.partition} holds offsets 0 to 0" in replayed.err
    assert "it has no partition 99" in replayed.err
    assert replayed.out == ""


async def test_records_that_are_not_dead_letters_of_the_topic_are_left_out_and_said_so(
    kafka_bootstrap: str, topic: str
) -> None:
    await produce(
        kafka_bootstrap,
        f"{topic}.dlq",
        [b"a"],
        key=b"k",
        headers=[("dlq_original_topic", b"elsewhere"), ("dlq_kind", b"rejected")],
    )
    await produce(kafka_bootstrap, f"{topic}.dlq", [b"b"], key=b"k")
    await produce(
        kafka_bootstrap,
        f"{topic}.dlq",
        [b"{cut short"],
        key=b"k",
        headers=[("dlq_original_topic", topic.encode()), ("dlq_value_truncated", b"900000")],
    )

    listed = await dead_letters(kafka_bootstrap, "list", topic, "--consumer", "nobody")
    none = await dead_letters(kafka_bootstrap, "replay", topic, "--all", "--consumer", "nobody")
    replayed = await dead_letters(kafka_bootstrap, "replay", topic, "--all")

    assert listed.code == none.code == Exit.NOTHING
    assert f"no dead letter on {topic}.dlq of nobody" in listed.err
    assert f"no dead letter on {topic}.dlq of nobody" in none.err
    assert replayed.code == Exit.FAILED
    assert "replayed 0 dead letters" in replayed.out
    assert "its dlq_original_topic is 'elsewhere'" in replayed.err
    assert "its dlq_original_topic is 'missing'" in replayed.err
    assert "its value was cut to fit the dead-letter topic (it had 900000 bytes)" in replayed.err


class BrokenPublisher:
    """Takes the first batch, then the broker goes away."""

    def __init__(self) -> None:
        self.sent: list[KafkaRecord] = []

    async def send_records(self, records: Sequence[KafkaRecord]) -> None:
        if self.sent:
            raise OSError("the broker went away")
        self.sent.extend(records)

    async def stop(self) -> None:
        """Nothing to stop."""


async def test_a_replay_that_stops_says_what_was_replayed_and_that_running_it_again_is_safe(
    kafka_bootstrap: str, topic: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(deadletters, "REPLAY_CHUNK", 2)
    headers = [("dlq_original_topic", topic.encode())]
    await produce(kafka_bootstrap, f"{topic}.dlq", [b"1", b"2", b"3"], key=b"k", headers=headers)
    publisher = BrokenPublisher()

    replayed = await dead_letters(kafka_bootstrap, "replay", topic, "--all", publisher=publisher)

    assert replayed.code == Exit.FAILED
    assert [record.value for record in publisher.sent] == [b"1", b"2"]
    assert "replay stopped: OSError: the broker went away" in replayed.err
    assert f"2 dead letters of {topic}.dlq replayed to {topic}" in replayed.err
    assert "the same replay again is safe" in replayed.err


async def test_kafka_out_of_reach_is_a_failure_with_a_message() -> None:
    listed = await dead_letters("127.0.0.1:1", "list", "payments.events")

    assert listed.code == Exit.FAILED
    assert "cannot read payments.events from Kafka at 127.0.0.1:1" in listed.err


def no_app(settings: ServiceSettings) -> FastAPI:
    raise AssertionError("dead-letters needs no app")


@pytest.mark.usefixtures("root_logger")
async def test_every_service_has_the_command(
    kafka_bootstrap: str, unique: Callable[[str], str], capsys: pytest.CaptureFixture[str]
) -> None:
    topic = unique("kernel-cli")
    await ensure_topics(kafka_bootstrap, [topic])

    def run(argv: list[str]) -> int:
        return service_main(
            settings_factory=lambda: settings_for(kafka_bootstrap),
            app_factory=no_app,
            alembic_ini=Path("unused.ini"),
            argv=argv,
        )

    code = await in_thread(run, ["dead-letters", "list", topic])
    with pytest.raises(SystemExit) as exit_info:
        run(["dead-letters", "replay", topic, "--offset", "seven"])
    err = capsys.readouterr().err

    assert code == Exit.NOTHING
    assert f"{topic}.dlq holds no dead letters" in err
    assert exit_info.value.code == 2
    assert "'seven' is not a position PARTITION:OFFSET" in err


async def test_dead_letters_of_a_topic_that_is_gone_are_not_replayed(
    kafka_bootstrap: str, unique: Callable[[str], str]
) -> None:
    gone = unique("gone")
    await produce(kafka_bootstrap, f"{gone}.dlq", [b"dead"], key=b"k")  # the broker creates it

    replayed = await dead_letters(kafka_bootstrap, "replay", gone, "--all")
    nobody = await dead_letters(kafka_bootstrap, "list", gone, "--consumer", "nobody")

    assert replayed.code == Exit.USAGE
    assert f"the broker has no topic {gone} to replay to" in replayed.err
    assert nobody.code == Exit.NOTHING
