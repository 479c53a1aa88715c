"""Root conftest: makes the real-infrastructure fixtures available to every test package."""

import itertools
from pathlib import Path

import pytest

pytest_plugins = ["tests.support.fixtures"]

_ROOT = Path(__file__).parent
_REAL = (("tests", "e2e"), ("tests", "api"))
"""Folders (from the root) whose tests talk to the real broker and database, besides each
package's ``tests/integration/``."""


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test that needs a real PostgreSQL or Kafka ``integration``, by where it
    lives, so that ``pytest -m "not integration"`` runs the rest with no infrastructure."""
    for item in items:
        parts = item.path.relative_to(_ROOT).parts
        if parts[:2] in _REAL or any(
            a == "tests" and b == "integration" for a, b in itertools.pairwise(parts)
        ):
            item.add_marker(pytest.mark.integration)
