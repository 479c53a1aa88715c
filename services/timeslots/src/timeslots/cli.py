"""``timeslots serve | migrate | openapi``."""

from __future__ import annotations

import sys
from pathlib import Path

from shared.cli import service_main
from timeslots.main import create_app
from timeslots.settings import TimeslotsSettings

ALEMBIC_INI = Path(__file__).resolve().parents[2] / "alembic.ini"


def main() -> None:
    sys.exit(
        service_main(
            settings_factory=TimeslotsSettings, app_factory=create_app, alembic_ini=ALEMBIC_INI
        )
    )
