"""``booking serve | migrate | openapi | asyncapi``."""

from __future__ import annotations

import sys
from pathlib import Path

from booking.main import create_app
from booking.settings import BookingSettings
from shared.cli import service_main

ALEMBIC_INI = Path(__file__).resolve().parents[2] / "alembic.ini"


def main() -> None:
    sys.exit(
        service_main(
            settings_factory=BookingSettings, app_factory=create_app, alembic_ini=ALEMBIC_INI
        )
    )
