"""The platform for the API tests: the three services as real processes on databases of their
own, on the shared broker; their OpenAPI documents as they serve them; and a scene to probe."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
import pytest_asyncio
from hypothesis.configuration import set_hypothesis_home_dir

from platform_tooling.client import Api, Json, connect, expect
from tests.support.platform import SERVICES, Platform

from .scene import Scene, set_scene


@pytest.fixture(scope="package", autouse=True)
def hypothesis_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Hypothesis caches what it learns from our sources in a temporary directory, not in
    ``.hypothesis/`` of the working tree (its example database is off anyway)."""
    home = tmp_path_factory.mktemp("hypothesis")
    set_hypothesis_home_dir(home)
    yield home
    set_hypothesis_home_dir(None)


@pytest_asyncio.fixture(scope="package", loop_scope="session")
async def platform(
    postgres_dsn: str, kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Platform]:
    running = Platform(
        postgres_dsn=postgres_dsn,
        kafka=kafka_bootstrap,
        logs=Path(tmp_path_factory.mktemp("api-logs")),
    )
    try:
        await running.start()
        yield running
    finally:
        running.stop()
        await running.drop_databases()


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def api(platform: Platform) -> AsyncIterator[Api]:
    async with connect(
        platform.url("timeslots"), platform.url("booking"), platform.url("reminders")
    ) as client:
        yield client


@pytest_asyncio.fixture(scope="package", loop_scope="session")
async def documents(platform: Platform) -> dict[str, Json]:
    """Each service's OpenAPI document, fetched from the running service."""
    found: dict[str, Json] = {}
    async with httpx.AsyncClient(timeout=30) as client:
        for service in SERVICES:
            found[service] = expect(await client.get(f"{platform.url(service)}/openapi.json"), 200)
    return found


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def scene(api: Api) -> Scene:
    """Fresh resources for each test module, whatever the modules before it did to theirs."""
    return await set_scene(api)
