"""``booking serve | migrate | openapi | asyncapi | dead-letters | token``."""

from __future__ import annotations

import sys
from pathlib import Path

from booking.settings import BookingSettings
from platform_runtime.cli import lazy_app_factory, service_main

ALEMBIC_INI = Path(__file__).resolve().parents[2] / "alembic.ini"


def main() -> None:
    sys.exit(
        service_main(
            settings_factory=BookingSettings,
            app_factory=lazy_app_factory("booking.main"),
            alembic_ini=ALEMBIC_INI,
        )
    )
