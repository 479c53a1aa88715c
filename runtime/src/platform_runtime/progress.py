"""Progress of a long operator command, on one line of a stream (its stderr).

On a terminal the line is redrawn in place (a bar, the share done, what the command says
about it, the time so far); anywhere else (a log file, CI) nothing is redrawn: a plain line
every ``log_interval_s`` seconds and a last one when the work ends, with no control
characters.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TextIO


class ProgressBar:
    """``update(done, total, detail)`` as the work goes on, ``close()`` once it ends."""

    WIDTH = 30

    def __init__(
        self,
        stream: TextIO,
        *,
        label: str,
        interactive: bool | None = None,
        clock: Callable[[], float] = time.monotonic,
        redraw_interval_s: float = 0.1,
        log_interval_s: float = 10.0,
    ) -> None:
        self.stream = stream
        self.label = label
        self.interactive = stream.isatty() if interactive is None else interactive
        self.clock = clock
        self.redraw_interval_s = redraw_interval_s
        self.log_interval_s = log_interval_s
        self.done = 0
        self.total = 0
        self.detail = ""
        self._started = self._last_output = clock()
        self._drawn = False

    def update(self, done: int, total: int, detail: str = "") -> None:
        self.done, self.total, self.detail = done, total, detail
        waited = self.clock() - self._last_output
        if self.interactive:
            if waited >= self.redraw_interval_s or not self._drawn:
                self._draw()
        elif waited >= self.log_interval_s:
            self._write_line()

    def close(self) -> None:
        """The last state, on a line of its own."""
        if self.interactive:
            self._draw()
            self.stream.write("\n")
        else:
            self._write_line()
        self.stream.flush()

    def line(self) -> str:
        """The progress as text, without any control character."""
        elapsed = self.clock() - self._started
        detail = f", {self.detail}" if self.detail else ""
        return f"{self.label}: {self.done}/{self.total}{detail}, {elapsed:.1f}s"

    def bar(self) -> str:
        share = min(self.done / self.total, 1.0) if self.total else 1.0
        filled = int(self.WIDTH * share)
        return f"[{'#' * filled}{'.' * (self.WIDTH - filled)}] {int(100 * share):3d}%"

    def _draw(self) -> None:
        self.stream.write(f"\r\x1b[K{self.bar()} {self.line()}")
        self.stream.flush()
        self._drawn = True
        self._last_output = self.clock()

    def _write_line(self) -> None:
        self.stream.write(self.line() + "\n")
        self._last_output = self.clock()
