"""``make demo`` as a command (what it says when the platform is not there or stalls; the
journey itself runs in the e2e suite), and the pollers the client and the tests wait with."""

from __future__ import annotations

import sys
from email.message import EmailMessage
from pathlib import Path

import httpx
import pytest

from platform_tooling import demo
from platform_tooling.client import Api
from platform_tooling.polling import eventually, until
from tests.support.ports import free_port


def run_demo(monkeypatch: pytest.MonkeyPatch, *args: str) -> None:
    monkeypatch.setattr(sys, "argv", ["demo", *args])
    demo.main()


def test_without_the_platform_it_says_to_run_make_up(monkeypatch: pytest.MonkeyPatch) -> None:
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    with pytest.raises(SystemExit, match=r"cannot reach the platform.*run `make up` first"):
        run_demo(monkeypatch, "--timeslots", url, "--booking", url, "--reminders", url)


def test_a_stalled_journey_says_where_to_look(monkeypatch: pytest.MonkeyPatch) -> None:
    async def stalls(api: Api, mail_dir: Path) -> None:
        raise TimeoutError("timed out after 30s waiting for booking b-1 confirmed")

    monkeypatch.setattr(demo, "journey", stalls)
    with pytest.raises(SystemExit, match=r"(?s)The demo stopped: timed out.*make status"):
        run_demo(monkeypatch)


def test_the_mail_directory_defaults_to_the_platform_state(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    seen: list[tuple[str, Path]] = []

    async def walks(api: Api, mail_dir: Path) -> None:
        seen.append((str(api.booking.base_url), mail_dir))

    monkeypatch.setattr(demo, "journey", walks)
    monkeypatch.setenv("PLATFORM_STATE_DIR", str(tmp_path))
    run_demo(monkeypatch, "--booking", "http://booking.test:8002")
    assert seen == [("http://booking.test:8002", tmp_path / "mail")]


async def test_a_service_that_is_not_ready_stops_the_journey_before_it_starts() -> None:
    def unready(request: httpx.Request) -> httpx.Response:
        return httpx.Response(503, json={"status": "starting"})

    clients = [
        httpx.AsyncClient(base_url=f"http://{name}.test", transport=httpx.MockTransport(unready))
        for name in ("timeslots", "booking", "reminders")
    ]
    api = Api(*clients)
    with pytest.raises(SystemExit, match=r"timeslots is not ready.*run `make up` first"):
        await demo.journey(api, Path("unused"))
    for client in clients:
        await client.aclose()


async def test_the_email_is_found_by_its_message_id(tmp_path: Path) -> None:
    for number, message_id in enumerate(["<a@example.com>", "<b@example.com>"], start=1):
        message = EmailMessage()
        message["Subject"] = f"Reminder {number}"
        message["Message-ID"] = message_id
        message.set_content("See you soon.")
        (tmp_path / f"{number:05d}.eml").write_bytes(message.as_bytes())

    found = await demo._mail(tmp_path, "<a@example.com>")
    assert found == {"path": str(tmp_path / "00001.eml"), "subject": "Reminder 1"}
    assert await demo._mail(tmp_path, "<c@example.com>") is None


async def test_until_returns_the_first_truthy_answer_and_names_what_it_waited_for() -> None:
    answers = iter([None, 0, "ready"])

    async def probe() -> str | int | None:
        return next(answers)

    assert await until(probe, interval_s=0) == "ready"

    async def never() -> None:
        return None

    with pytest.raises(TimeoutError, match="waiting for the booking"):
        await until(never, timeout_s=0.01, interval_s=0.001, what="the booking")


async def test_eventually_returns_the_last_value_whether_or_not_it_was_done() -> None:
    counts = iter(range(100))

    async def count() -> int:
        return next(counts)

    assert await eventually(count, lambda n: n >= 3, interval_s=0) == 3
    assert await eventually(count, lambda n: n < 0, timeout_s=0.01, interval_s=0.001) > 4
