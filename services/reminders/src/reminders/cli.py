"""``reminders serve | migrate | openapi | asyncapi | dead-letters | token | worker``.

``worker`` runs only the delivery workers (no scheduling, no dispatching) until SIGINT or
SIGTERM, with the HTTP endpoints operators need (``/health/live``, ``/health/ready``,
``/metrics``) on ``--port``: start as many as the load needs, they share the jobs as a
consumer group.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from pathlib import Path

from platform_runtime.cli import Command, lazy_app_factory, service_main
from platform_runtime.settings import Role
from reminders.settings import RemindersSettings

ALEMBIC_INI = Path(__file__).resolve().parents[2] / "alembic.ini"
WORKER_PORT = 8013


def worker_settings(settings: RemindersSettings) -> RemindersSettings:
    """Delivery only, in the ``worker`` role: no API routes, so no JWT secret is needed."""
    return settings.model_copy(
        update={
            "role": Role.WORKER,
            "scheduler_enabled": False,
            "dispatcher_enabled": False,
            "worker_enabled": True,
        }
    )


async def run_worker(settings: RemindersSettings, stop: asyncio.Event | None = None) -> None:
    """Deliver jobs in this process, without HTTP, until ``stop`` is set (by default: until
    SIGINT or SIGTERM)."""
    from reminders.main import create_runtime

    runtime = create_runtime(worker_settings(settings))
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


def _configure_worker(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default=None, help="default: the service's http_host")
    parser.add_argument("--port", type=int, default=WORKER_PORT)


def _worker(settings: RemindersSettings, args: argparse.Namespace) -> int:
    import uvicorn

    from platform_runtime.http.server import uvicorn_options
    from reminders.main import create_app

    app = create_app(worker_settings(settings))
    host = args.host or settings.http_host
    uvicorn.run(app, host=host, port=args.port, **uvicorn_options(settings))
    return 0


WORKER = Command[RemindersSettings](
    name="worker",
    help="run only the delivery workers (a consumer group: start as many as needed), "
    "with health and metrics on --port",
    configure=_configure_worker,
    run=_worker,
)


def main() -> None:
    sys.exit(
        service_main(
            settings_factory=RemindersSettings,
            app_factory=lazy_app_factory("reminders.main"),
            alembic_ini=ALEMBIC_INI,
            commands=[WORKER],
        )
    )
