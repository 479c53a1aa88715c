"""Where a benchmark's CPU went: CPU seconds per group of processes over a load window.

Each group is given by its root processes (a service's ``serve`` process, the PostgreSQL
server, the Kafka broker); every process below a root counts for its group. The figures are
``utime + stime`` from ``/proc/<pid>/stat`` at the start and the end of the window, so a
process that started in the window counts in full and one that ended in it is lost to its
group. What the machine was busy with beyond the groups (kernel threads such as the page
cache writeback, the load generator, the benchmark itself) is ``unattributed``: the
machine's busy time from ``/proc/stat`` minus the groups'.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

_TICKS = os.sysconf("SC_CLK_TCK")


def _stat_fields(pid: int) -> list[str] | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text[text.rindex(")") + 2 :].split()  # fields from the third (state) on


def cpu_seconds(pid: int) -> float | None:
    """User and system CPU seconds of ``pid`` itself (None: it is gone)."""
    fields = _stat_fields(pid)
    return None if fields is None else (int(fields[11]) + int(fields[12])) / _TICKS


def descendants(roots: Iterable[int]) -> set[int]:
    """``roots`` and every process below them."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit() and (fields := _stat_fields(int(entry))) is not None:
            children.setdefault(int(fields[1]), []).append(int(entry))
    found: set[int] = set()
    todo = [r for r in roots if r > 0]
    while todo:
        pid = todo.pop()
        if pid not in found:
            found.add(pid)
            todo.extend(children.get(pid, ()))
    return found


def listening_pid(port: int) -> int | None:
    """The process listening on TCP ``port`` of this machine (a server started elsewhere)."""
    inodes: set[str] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            parts = line.split()
            if parts[3] == "0A" and int(parts[1].rsplit(":", 1)[1], 16) == port:  # LISTEN
                inodes.add(parts[9])
    if not inodes:
        return None
    wanted = {f"socket:[{inode}]" for inode in inodes}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            fds = os.listdir(f"/proc/{entry}/fd")
        except OSError:
            continue
        for fd in fds:
            try:
                if os.readlink(f"/proc/{entry}/fd/{fd}") in wanted:
                    return int(entry)
            except OSError:
                continue
    return None


def cpu_times() -> tuple[float, float, float]:
    """(busy, total, steal) jiffies of the machine since boot."""
    values = [float(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = values[3] + (values[4] if len(values) > 4 else 0.0)
    steal = values[7] if len(values) > 7 else 0.0
    total = sum(values[:8])
    return total - idle - steal, total, steal


def _machine_busy_s() -> float:
    return cpu_times()[0] / _TICKS


@dataclass
class CpuMeter:
    """CPU seconds per group over a window: ``start()``, the load, ``stop()``."""

    groups: Mapping[str, Callable[[], Iterable[int]]]
    """Group name -> its root pids (asked at the start and at the end of the window)."""
    _before: dict[int, float] = field(default_factory=dict)
    _machine: float = 0.0
    _started: float = 0.0

    def _read(self) -> dict[str, dict[int, float]]:
        seen: set[int] = set()
        out: dict[str, dict[int, float]] = {}
        for name, roots in self.groups.items():
            pids = descendants(roots()) - seen  # a process counts for one group only
            seen |= pids
            out[name] = {p: s for p in pids if (s := cpu_seconds(p)) is not None}
        return out

    def start(self) -> None:
        self._before = {p: s for group in self._read().values() for p, s in group.items()}
        self._machine = _machine_busy_s()
        self._started = time.monotonic()

    def stop(self, *, bookings: int) -> dict[str, Any]:
        """Cores used per group over the window, and CPU milliseconds per booking made in it."""
        after = self._read()
        wall = max(time.monotonic() - self._started, 1e-9)
        busy = _machine_busy_s() - self._machine
        seconds = {
            name: sum(s - self._before.get(p, 0.0) for p, s in group.items())
            for name, group in after.items()
        }
        seconds["unattributed"] = max(busy - sum(seconds.values()), 0.0)
        per = max(bookings, 1)
        return {
            "window_s": round(wall, 2),
            "bookings": bookings,
            "machine_busy_cores": round(busy / wall, 2),
            "cores": {name: round(s / wall, 3) for name, s in seconds.items()},
            "ms_per_booking": {name: round(s * 1000 / per, 2) for name, s in seconds.items()},
        }
