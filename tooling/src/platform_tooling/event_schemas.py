"""Write the event contract's JSON Schemas to a folder, or check that it holds them.

``python -m platform_tooling.event_schemas DIR`` writes one ``<Type>.v<N>.json`` per payload
model and ``Envelope.json`` (:func:`booking_contracts.schema.schemas`); ``--check`` fails when
the files in DIR differ from the code.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from booking_contracts.schema import render, schemas
from platform_tooling.documents import write_or_check


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("directory", type=Path)
    parser.add_argument("--check", action="store_true", help="fail if DIR is not current")
    args = parser.parse_args(argv)
    directory: Path = args.directory
    wanted = {name: render(schema) for name, schema in schemas().items()}
    return write_or_check(
        directory,
        wanted,
        check=args.check,
        what="event schemas",
        command=f"python -m platform_tooling.event_schemas {directory}",
    )


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
