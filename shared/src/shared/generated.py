"""Documents generated from the code and checked in (event schemas, AsyncAPI)."""

from __future__ import annotations

import sys
from collections.abc import Mapping
from pathlib import Path


def write_or_check(
    directory: Path, wanted: Mapping[str, str], *, check: bool, what: str, command: str
) -> int:
    """Make ``directory`` hold exactly the ``wanted`` files (name -> text), or with ``check``
    only say which differ; returns the exit code (1: stale)."""
    if check:
        present = {p.name: p.read_text() for p in directory.glob("*.json")}
        stale = sorted(n for n in wanted.keys() | present.keys() if wanted.get(n) != present.get(n))
        if stale:
            sys.stderr.write(f"{what} out of date in {directory}: {', '.join(stale)}\n")
            sys.stderr.write(f"run: make schemas ({command})\n")
            return 1
        return 0
    directory.mkdir(parents=True, exist_ok=True)
    for stale_file in directory.glob("*.json"):
        if stale_file.name not in wanted:
            stale_file.unlink()
    for name, text in wanted.items():
        (directory / name).write_text(text)
    return 0
