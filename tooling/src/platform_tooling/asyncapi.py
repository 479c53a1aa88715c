"""``python -m platform_tooling.asyncapi DIR SERVICE... [--check]``.

The AsyncAPI documents of the named service packages (from what their runtimes declare):
``DIR/<service>.json`` each, built from ``<service>.main.create_app()`` (which connects to
nothing). ``--check`` fails when a file in DIR differs from the code; other files in DIR
are left alone.
"""

from __future__ import annotations

import sys

from platform_runtime import asyncapi
from platform_tooling.documents import services_generator

main = services_generator(
    module="platform_tooling.asyncapi",
    what="AsyncAPI documents",
    description=__doc__,
    document=lambda app: asyncapi.render(asyncapi.document_of(app)),
)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main(None))
