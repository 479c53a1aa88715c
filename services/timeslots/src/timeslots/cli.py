"""``timeslots serve | migrate | openapi | asyncapi | dead-letters | token | generate | seed``.

``generate`` is the operator's bulk slot generation, straight on the database::

    timeslots generate --room UUID [--room UUID ...] --from 2030-01-01 --to 2030-03-31
    timeslots generate --all-rooms --from 2030-01-01 --to 2030-03-31 [--price-override 12.50]

Exit code 0 when every room was filled, 1 when any room failed, 2 for bad arguments.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Sequence
from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import NoReturn
from uuid import UUID

from platform_runtime.cli import Command, UsageError, lazy_app_factory, service_main
from timeslots.settings import TimeslotsSettings

ALEMBIC_INI = Path(__file__).resolve().parents[2] / "alembic.ini"


def iso_date(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a date (YYYY-MM-DD)") from None


def amount(text: str) -> Decimal:
    try:
        value = Decimal(text)
    except InvalidOperation:
        raise argparse.ArgumentTypeError(f"{text!r} is not an amount like 12.50") from None
    if not value.is_finite() or value < 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not an amount of zero or more")
    return value


def configure_generate(parser: argparse.ArgumentParser) -> None:
    rooms = parser.add_mutually_exclusive_group(required=True)
    rooms.add_argument(
        "--room",
        dest="rooms",
        action="append",
        type=UUID,
        metavar="UUID",
        help="a room to fill (repeat for several rooms)",
    )
    rooms.add_argument("--all-rooms", action="store_true", help="every active room")
    parser.add_argument(
        "--from",
        dest="date_from",
        type=iso_date,
        required=True,
        metavar="YYYY-MM-DD",
        help="first local date",
    )
    parser.add_argument(
        "--to",
        dest="date_to",
        type=iso_date,
        required=True,
        metavar="YYYY-MM-DD",
        help="last local date, inclusive",
    )
    parser.add_argument(
        "--price-override",
        type=amount,
        metavar="AMOUNT",
        help="price of every new slot in the room's own currency (default: from its rate)",
    )
    parser.add_argument(
        "--jobs",
        type=int,
        default=2,
        metavar="N",
        help="rooms generated at once, each on its own connection (default: 2)",
    )
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")


def run_generate(settings: TimeslotsSettings, args: argparse.Namespace) -> int:
    date_from: date = args.date_from
    date_to: date = args.date_to
    if date_to < date_from:
        raise UsageError(f"--to {date_to} is before --from {date_from}")
    days = (date_to - date_from).days + 1
    if days > settings.generation_max_days:
        raise UsageError(
            f"{date_from}..{date_to} has {days} days, more than the "
            f"{settings.generation_max_days} allowed (TIMESLOTS_GENERATION_MAX_DAYS)"
        )
    if not 1 <= args.jobs <= 32:
        raise UsageError(f"--jobs must be 1 to 32, not {args.jobs}")
    from sqlalchemy.exc import SQLAlchemyError

    from timeslots import operations
    from timeslots.main import limits_of

    room_ids = None if args.all_rooms else list(dict.fromkeys(args.rooms))
    try:
        report = asyncio.run(
            operations.generate_with_settings(
                settings,
                room_ids,
                date_from=date_from,
                date_to=date_to,
                price_override=args.price_override,
                limits=limits_of(settings),
                progress=operations.ProgressBar(sys.stderr),
                jobs=args.jobs,
            )
        )
    except (OSError, SQLAlchemyError) as exc:  # no database to list the rooms in: nothing done
        sys.stderr.write(f"{settings.service_name} generate: {type(exc).__name__}: {exc}\n")
        return 1
    if args.json:
        sys.stdout.write(json.dumps(report.as_dict(), indent=2) + "\n")
    else:
        sys.stdout.write(report.render_text())
    return report.exit_code


GENERATE = Command[TimeslotsSettings](
    name="generate",
    help="generate slots of some or all rooms for a date range (no HTTP, no Kafka)",
    configure=configure_generate,
    run=run_generate,
)


def configure_seed(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--days", type=int, default=30, help="days of slots from tomorrow (default: %(default)s)"
    )


def run_seed(settings: TimeslotsSettings, args: argparse.Namespace) -> int:
    if not 1 <= args.days <= settings.generation_max_days:
        raise UsageError(f"--days must be 1 to {settings.generation_max_days}, not {args.days}")
    from sqlalchemy.exc import SQLAlchemyError

    from platform_runtime.db import make_engine, make_session_factory
    from platform_runtime.outbox import Outbox
    from timeslots import models
    from timeslots.main import limits_of
    from timeslots.operations import SOURCE
    from timeslots.seed import seed

    async def run() -> list[str]:
        engine = make_engine(settings.database_url, pool_size=1, max_overflow=0)
        try:
            seeded = await seed(
                make_session_factory(engine),
                Outbox(models.outbox, source=SOURCE),
                today=datetime.now(UTC).date(),
                days=args.days,
                limits=limits_of(settings),
            )
        finally:
            await engine.dispose()
        return [room.line() for room in seeded]

    try:
        lines = asyncio.run(run())
    except (OSError, SQLAlchemyError) as exc:
        sys.stderr.write(f"{settings.service_name} seed: {type(exc).__name__}: {exc}\n")
        return 1
    sys.stdout.write("".join(f"{line}\n" for line in lines))
    return 0


SEED = Command[TimeslotsSettings](
    name="seed",
    help="four rooms in four time zones with schedules and a month of slots (development)",
    configure=configure_seed,
    run=run_seed,
)


def main(argv: Sequence[str] | None = None) -> NoReturn:
    sys.exit(
        service_main(
            settings_factory=TimeslotsSettings,
            app_factory=lazy_app_factory("timeslots.main"),
            alembic_ini=ALEMBIC_INI,
            argv=argv,
            commands=[GENERATE, SEED],
        )
    )
