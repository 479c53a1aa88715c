"""``reminders serve | migrate | openapi | asyncapi | worker``.

``worker`` runs only the delivery workers (no HTTP, no scheduling, no dispatching) until
SIGINT or SIGTERM: start as many as the load needs, they share the jobs as a consumer group.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from pathlib import Path

from reminders.main import create_app, create_runtime
from reminders.settings import RemindersSettings
from shared.cli import Command, service_main

ALEMBIC_INI = Path(__file__).resolve().parents[2] / "alembic.ini"


async def run_worker(settings: RemindersSettings, stop: asyncio.Event | None = None) -> None:
    """Deliver jobs until ``stop`` is set (by default: until SIGINT or SIGTERM)."""
    only_worker = settings.model_copy(
        update={"scheduler_enabled": False, "dispatcher_enabled": False, "worker_enabled": True}
    )
    runtime = create_runtime(only_worker)
    if stop is None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
    await runtime.start()
    try:
        await stop.wait()
    finally:
        await runtime.stop()


def _worker(settings: RemindersSettings, _: argparse.Namespace) -> int:
    asyncio.run(run_worker(settings))
    return 0


WORKER = Command[RemindersSettings](
    name="worker",
    help="run only the delivery workers (a consumer group: start as many as needed)",
    configure=lambda _: None,
    run=_worker,
)


def main() -> None:
    sys.exit(
        service_main(
            settings_factory=RemindersSettings,
            app_factory=create_app,
            alembic_ini=ALEMBIC_INI,
            commands=[WORKER],
        )
    )
