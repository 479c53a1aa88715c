"""Headless Chromium (Debian's package) for tests that look at a page as a browser renders it."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
LIB_SH = REPO / "deploy" / "local" / "lib.sh"


def chromium() -> str:
    """The chromium binary; installed from Debian's package when missing (as root), else the
    test fails saying what to install."""
    found = shutil.which("chromium")
    if found is None:
        installed = subprocess.run(
            ["bash", "-c", f'COMPONENT=chromium; . "{LIB_SH}"; apt_install chromium'],
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
        found = shutil.which("chromium")
        if found is None:
            pytest.fail(f"these tests need chromium (Debian's package): {installed.stderr[-500:]}")
    return found


def render(url: str, *, screenshot: Path, budget_ms: int = 20_000) -> str:
    """The DOM of ``url`` after its scripts ran, in a browser that reaches 127.0.0.1 only (no
    other host resolves: a page that needs the internet stays blank); a screenshot of it is
    saved to ``screenshot``."""
    flags = [
        "--headless=new",
        "--no-sandbox",  # tests may run as root
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
        f"--virtual-time-budget={budget_ms}",
        "--window-size=1280,2400",
    ]
    binary = chromium()
    subprocess.run(
        [binary, *flags, f"--screenshot={screenshot}", url],
        capture_output=True,
        timeout=120,
        check=True,
    )
    dom = subprocess.run(
        [binary, *flags, "--dump-dom", url], capture_output=True, text=True, timeout=120, check=True
    )
    return dom.stdout
