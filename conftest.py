"""Root conftest: makes the real-infrastructure fixtures available to every test package."""

pytest_plugins = ["tests.support.fixtures"]

# Test modules under shared/tests/ get module names starting with ``shared.`` (importlib
# import mode names them after their path). Importing the real ``shared`` package first makes
# those names hang off it instead of shadowing it with an empty namespace package.
import shared  # noqa: E402,F401
