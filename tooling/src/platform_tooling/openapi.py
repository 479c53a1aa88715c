"""``python -m platform_tooling.openapi DIR SERVICE... [--check]``.

The OpenAPI documents of the named service packages (what FastAPI generates from their routes):
``DIR/<service>.json`` each, built from ``<service>.main.create_app()`` (which connects to
nothing). ``--check`` fails when a file in DIR differs from the code; other files in DIR
are left alone.
"""

from __future__ import annotations

import sys

from platform_runtime import openapi
from platform_tooling.documents import services_generator

main = services_generator(
    module="platform_tooling.openapi",
    what="OpenAPI documents",
    description=__doc__,
    document=lambda app: openapi.render(openapi.document_of(app)),
)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main(None))
