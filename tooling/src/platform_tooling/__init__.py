"""The repository's own tools that need the services themselves: the generators of the
documents checked in under ``docs/`` (event schemas, AsyncAPI, OpenAPI).

The dependencies run one way: this package imports the services and the kernel; nothing of
the platform imports it (an import contract in ``make lint`` says so)."""
