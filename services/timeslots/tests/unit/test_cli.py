"""The ``timeslots`` console command an operator runs."""

from __future__ import annotations

import io
import json
import uuid
from datetime import date
from decimal import Decimal

import pytest

from booking_contracts.money import Money
from tests.support.service import check_cli_prints_a_token, check_cli_prints_openapi
from timeslots import domain
from timeslots.cli import main
from timeslots.operations import (
    GenerationReport,
    ProgressBar,
    RoomResult,
    override_price,
)
from timeslots.settings import TimeslotsSettings

ROOM = "7b0c5a4e-3d1f-4a59-9f55-0e6c2f1f3a01"
UNREACHABLE_DB = "postgresql+asyncpg://nobody:nothing@127.0.0.1:1/none"


@pytest.mark.usefixtures("root_logger")
def test_openapi_prints_the_service_api_document(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    check_cli_prints_openapi("timeslots", "Timeslots service", monkeypatch, capsys)


def run(argv: list[str]) -> int:
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    code = exit_info.value.code
    assert isinstance(code, int)
    return code


@pytest.mark.usefixtures("root_logger")
def test_asyncapi_documents_the_slot_events_out_and_the_booking_and_offer_events_in(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert run(["asyncapi"]) == 0

    document = json.loads(capsys.readouterr().out)
    assert document["info"]["title"] == "Timeslots service"
    sent = document["operations"]["send.timeslots.events"]
    assert {"$ref": "#/channels/timeslots.events/messages/SlotsGenerated.v1"} in sent["messages"]
    received = document["operations"]["receive.timeslots-booking-counts.booking.events"]
    assert [m["$ref"].rsplit("/", 1)[1] for m in received["messages"]] == [
        "BookingCancelled.v1",
        "BookingCreated.v1",
        "BookingExpired.v1",
        "BookingRescheduled.v1",
        "WaitlistLeft.v1",
        "WaitlistOfferLapsed.v1",
        "WaitlistOfferMade.v1",
        "WaitlistOfferTaken.v1",
    ]


@pytest.mark.usefixtures("root_logger")
@pytest.mark.parametrize(
    ("arguments", "complaint"),
    [
        (["--from", "2030-01-07", "--to", "2030-01-08"], "one of the arguments --room --all-rooms"),
        (
            ["--all-rooms", "--room", ROOM, "--from", "2030-01-07", "--to", "2030-01-08"],
            "not allowed with argument",
        ),
        (["--room", "12", "--from", "2030-01-07", "--to", "2030-01-08"], "invalid UUID value"),
        (["--all-rooms", "--from", "07.01.2030", "--to", "2030-01-08"], "is not a date"),
        (["--all-rooms", "--to", "2030-01-08"], "the following arguments are required: --from"),
        (["--all-rooms", "--from", "2030-01-08", "--to", "2030-01-07"], "is before --from"),
        (["--all-rooms", "--from", "2030-01-01", "--to", "2031-12-31"], "more than the 366"),
        (
            ["--all-rooms", "--from", "2030-01-07", "--to", "2030-01-08", "--price-override", "-1"],
            "not an amount of zero or more",
        ),
        (
            ["--all-rooms", "--from", "2030-01-07", "--to", "2030-01-08", "--price-override", "x"],
            "not an amount like 12.50",
        ),
        (
            [
                "--all-rooms",
                "--from",
                "2030-01-07",
                "--to",
                "2030-01-08",
                "--price-override",
                "NaN",
            ],
            "not an amount of zero or more",
        ),
        (
            ["--all-rooms", "--from", "2030-01-07", "--to", "2030-01-08", "--jobs", "0"],
            "--jobs must be 1 to 32",
        ),
    ],
)
def test_generate_refuses_bad_arguments_with_exit_code_2(
    arguments: list[str],
    complaint: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("TIMESLOTS_DATABASE_URL", UNREACHABLE_DB)

    assert run(["generate", *arguments]) == 2

    captured = capsys.readouterr()
    assert complaint in captured.err
    assert "usage: timeslots generate" in captured.err
    assert captured.out == ""


@pytest.mark.usefixtures("root_logger")
def test_generate_without_a_database_says_so_and_exits_1(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("TIMESLOTS_DATABASE_URL", UNREACHABLE_DB)

    assert run(["generate", "--all-rooms", "--from", "2030-01-07", "--to", "2030-01-08"]) == 1

    captured = capsys.readouterr()
    assert "timeslots generate: ConnectionRefusedError" in captured.err
    assert captured.out == ""


@pytest.mark.usefixtures("root_logger")
def test_generate_reports_a_room_it_cannot_reach_as_failed(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("TIMESLOTS_DATABASE_URL", UNREACHABLE_DB)
    argv = [
        "generate",
        "--room",
        ROOM,
        "--room",
        ROOM,
        "--from",
        "2030-01-07",
        "--to",
        "2030-01-07",
    ]

    assert run([*argv, "--json"]) == 1

    captured = capsys.readouterr()
    summary = json.loads(captured.out)
    assert summary["rooms"] == 1  # the repeated room counts once
    assert summary["failed"] == [
        {"room_id": ROOM, "reason": summary["failed"][0]["reason"]},
    ]
    assert summary["failed"][0]["reason"].startswith("ConnectionRefusedError: ")
    assert captured.err.startswith("generate rooms: 1/1, 1 failed, 0 slots created, ")
    assert captured.err.count("\n") == 1
    assert "\r" not in captured.err


def report(*results: RoomResult, seconds: float = 2.0) -> GenerationReport:
    return GenerationReport(
        date_from=date(2030, 1, 7),
        date_to=date(2030, 1, 13),
        price_override=None,
        results=results,
        seconds=seconds,
    )


def test_the_summary_counts_rooms_and_slots_and_names_each_failed_room() -> None:
    ok, failed = uuid.uuid4(), uuid.uuid4()
    summary = report(
        RoomResult(ok, created=300, skipped=20),
        RoomResult(failed, error=f"room {failed} has no schedule; set one first"),
    )

    assert summary.exit_code == 1
    assert summary.render_text() == (
        "Slot generation 2030-01-07..2030-01-13\n"
        "  rooms:          2 (1 ok, 1 failed)\n"
        "  slots created:  300\n"
        "  slots skipped:  20 (already existed)\n"
        "  seconds:        2.00\n"
        "  slots/s:        150.0\n"
        "Failed rooms:\n"
        f"  {failed}: room {failed} has no schedule; set one first\n"
    )
    assert summary.as_dict() == {
        "date_from": "2030-01-07",
        "date_to": "2030-01-13",
        "price_override": None,
        "rooms": 2,
        "rooms_failed": 1,
        "slots_created": 300,
        "slots_skipped": 20,
        "seconds": 2.0,
        "slots_per_second": 150.0,
        "failed": [
            {"room_id": str(failed), "reason": f"room {failed} has no schedule; set one first"}
        ],
        "results": [{"room_id": str(ok), "created": 300, "skipped": 20}],
    }


def test_a_summary_without_failures_exits_0_and_shows_the_price_override() -> None:
    summary = GenerationReport(
        date_from=date(2030, 1, 7),
        date_to=date(2030, 1, 7),
        price_override=Decimal("12.50"),
        results=(RoomResult(uuid.uuid4(), created=0, skipped=16),),
        seconds=0.0,
    )

    assert summary.exit_code == 0
    assert summary.slots_per_second == 0.0
    text = summary.render_text()
    assert text.startswith("Slot generation 2030-01-07..2030-01-07, price override 12.50\n")
    assert "Failed rooms" not in text
    assert summary.as_dict()["price_override"] == "12.50"


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_progress_off_a_terminal_writes_plain_lines_only_now_and_then() -> None:
    stream, clock = io.StringIO(), Clock()
    bar = ProgressBar(stream, clock=clock, log_interval_s=30)
    assert not bar.interactive  # a StringIO is no terminal

    bar.start(3)
    bar.advance(RoomResult(uuid.uuid4(), created=10))
    clock.now += 31
    bar.advance(RoomResult(uuid.uuid4(), error="no schedule"))
    bar.advance(RoomResult(uuid.uuid4(), created=5))
    bar.close()

    assert stream.getvalue() == (
        "generate rooms: 2/3, 1 failed, 10 slots created, 31.0s\n"
        "generate rooms: 3/3, 1 failed, 15 slots created, 31.0s\n"
    )


def test_progress_on_a_terminal_redraws_one_line_at_most_every_interval() -> None:
    stream, clock = io.StringIO(), Clock()
    bar = ProgressBar(stream, interactive=True, clock=clock, redraw_interval_s=0.1)

    bar.start(4)
    bar.advance(RoomResult(uuid.uuid4(), created=1))  # too soon: not drawn
    clock.now += 0.5
    bar.advance(RoomResult(uuid.uuid4(), created=2))
    bar.advance(RoomResult(uuid.uuid4(), created=3))  # too soon again
    bar.advance(RoomResult(uuid.uuid4(), created=4))  # too soon: the close draws the last
    bar.close()

    output = stream.getvalue()
    frames = [frame.removeprefix("\x1b[K") for frame in output.split("\r")[1:]]
    assert len(frames) == 3  # start, the second room, close
    assert frames[0].startswith("[" + "." * 30 + "]   0% generate rooms: 0/4, 0 slots created")
    assert frames[1].startswith(
        "[" + "#" * 15 + "." * 15 + "]  50% generate rooms: 2/4, 3 slots created"
    )
    assert frames[-1].startswith(
        "[" + "#" * 30 + "] 100% generate rooms: 4/4, 10 slots created, 0.5s"
    )
    assert output.endswith("\n")
    assert output.count("\n") == 1


def test_progress_of_no_rooms_is_complete() -> None:
    stream = io.StringIO()
    bar = ProgressBar(stream, interactive=True, clock=Clock())
    bar.start(0)
    bar.close()
    assert "] 100% generate rooms: 0/0" in stream.getvalue()


def test_a_price_override_is_taken_in_the_room_currency_but_never_rounded() -> None:
    assert override_price(Decimal("12.5"), "EUR") == Money.of("12.50", "EUR")
    assert override_price(Decimal("1200.00"), "JPY") == Money.of("1200", "JPY")
    with pytest.raises(domain.InvalidSlot, match="more decimal places than JPY allows"):
        override_price(Decimal("12.50"), "JPY")


def test_token_prints_a_token_the_service_accepts_on_a_development_machine_only(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    check_cli_prints_a_token("timeslots", TimeslotsSettings, monkeypatch, capsys)
