"""The progress line of long operator commands: redrawn on a terminal, plain lines elsewhere."""

from __future__ import annotations

import io

from platform_runtime.progress import ProgressBar


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_on_a_terminal_the_line_is_redrawn_in_place_and_ends_with_a_line_break() -> None:
    stream, clock = io.StringIO(), Clock()
    progress = ProgressBar(stream, label="replay x.dlq", interactive=True, clock=clock)

    progress.update(0, 4)
    progress.update(1, 4, "1 replayed")  # too soon after the last drawing: not drawn
    clock.now += 1.5
    progress.update(2, 4, "2 replayed")
    progress.close()

    frames = stream.getvalue().split("\r\x1b[K")[1:]
    assert frames[0] == f"[{'.' * 30}]   0% replay x.dlq: 0/4, 0.0s"
    assert frames[1] == f"[{'#' * 15}{'.' * 15}]  50% replay x.dlq: 2/4, 2 replayed, 1.5s"
    assert frames[2] == frames[1] + "\n"
    assert len(frames) == 3


def test_elsewhere_a_plain_line_now_and_then_and_a_last_one() -> None:
    stream, clock = io.StringIO(), Clock()
    progress = ProgressBar(
        stream, label="replay x.dlq", interactive=False, clock=clock, log_interval_s=10
    )

    progress.update(1, 3, "1 replayed")
    clock.now += 11
    progress.update(2, 3, "2 replayed")
    clock.now += 1
    progress.update(3, 3, "3 replayed")
    progress.close()

    assert stream.getvalue().splitlines() == [
        "replay x.dlq: 2/3, 2 replayed, 11.0s",
        "replay x.dlq: 3/3, 3 replayed, 12.0s",
    ]


def test_nothing_to_do_is_a_full_bar() -> None:
    progress = ProgressBar(io.StringIO(), label="replay", interactive=False)

    assert progress.bar() == f"[{'#' * 30}] 100%"
    assert not progress.interactive
