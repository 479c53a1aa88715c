"""A whole service process built on the kernel: HTTP, consumers, relay and background loops."""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from fastapi import APIRouter
from sqlalchemy import insert, select

from platform_runtime.cli import service_main
from platform_runtime.http.auth import CurrentUser
from platform_runtime.http.context import context_of
from platform_runtime.memory import InMemoryTransport
from platform_runtime.messaging import EventContext
from platform_runtime.service import ServiceRuntime
from platform_runtime.settings import InsecureSettings, Role, ServiceSettings
from platform_tooling.polling import eventually
from tests.support.fixtures import CreateDatabase
from tests.support.kafka import read_topic
from tests.support.service import bearer, running
from tests.support.threads import in_thread

from .conftest import KernelTestEvent, effects, metadata


def build(
    settings: ServiceSettings,
    topic: str,
    loop_runs: list[str],
    transport: InMemoryTransport | None = None,
) -> ServiceRuntime:
    KernelTestEvent.topic = topic
    runtime = ServiceRuntime(
        settings,
        metadata=metadata,
        source="/kernel-service",
        produces=[topic],
        transport=transport,
    )
    consumer = runtime.consumer(f"kernel-service-{uuid.uuid4().hex[:8]}")

    @consumer.on(KernelTestEvent)
    async def apply(event: KernelTestEvent, ctx: EventContext) -> None:
        await ctx.session.execute(
            insert(effects).values(order_id=event.order_id, note=f"consumed:{event.note}")
        )

    async def crashes_once_then_runs(stop: asyncio.Event) -> None:
        loop_runs.append("run")
        if len(loop_runs) == 1:
            raise RuntimeError("first run crashes")
        await stop.wait()

    runtime.background("crashy", crashes_once_then_runs)
    return runtime


async def service_settings(
    create_database: CreateDatabase, name: str, kafka_bootstrap: str
) -> ServiceSettings:
    """The settings of a kernel service on a new database ``name`` with the kernel's tables."""
    url = await create_database(name)
    from platform_runtime.db import make_engine

    engine = make_engine(url, pool_size=1)
    async with engine.begin() as conn:
        await conn.run_sync(metadata.create_all)
    await engine.dispose()
    return ServiceSettings(
        service_name="kernel-service",
        database_url=url,
        kafka_bootstrap_servers=kafka_bootstrap,
        development=True,
    )


async def test_an_event_written_by_a_request_is_relayed_consumed_and_counted(
    create_database: CreateDatabase, kafka_bootstrap: str
) -> None:
    settings = await service_settings(create_database, "runtime", kafka_bootstrap)
    topic = f"kernel-runtime-{uuid.uuid4().hex[:8]}"
    loop_runs: list[str] = []
    runtime = build(settings, topic, loop_runs)
    app = runtime.create_app(title="Kernel service", version="1", config="here")

    @app.post("/orders", status_code=201)
    async def place_order(user: CurrentUser) -> dict[str, Any]:
        order_id = uuid.uuid4()
        async with runtime.sessions() as session, session.begin():
            await session.execute(insert(effects).values(order_id=order_id, note="placed"))
            await runtime.outbox.add(session, KernelTestEvent(order_id=order_id, note=user.subject))
        return {"order_id": str(order_id)}

    async def notes() -> list[str]:
        async with runtime.sessions() as session:
            return list((await session.scalars(select(effects.c.note))).all())

    async with running(app) as client:
        refused = await client.post("/orders")
        placed = await client.post("/orders", headers=bearer("alice"), params={}, json=None)
        consumed = await eventually(notes, lambda n: "consumed:alice" in n)
        ready = await client.get("/health/ready")
        metrics = (await client.get("/metrics")).text
        assert context_of(app).config == "here"
        assert context_of(app).runtime is runtime
        await eventually(lambda: _value(loop_runs), lambda n: n >= 2, timeout_s=5)

    assert refused.status_code == 401
    assert placed.status_code == 201
    assert sorted(consumed) == ["consumed:alice", "placed"]
    assert ready.json()["checks"] == {"database": "ok", "kafka": "ok"}
    assert 'events_consumed_total{consumer="kernel-service-' in metrics
    assert 'outcome="processed"' in metrics
    assert 'events_published_total{type="KernelTestEvent.v1"} 1.0' in metrics
    assert len(loop_runs) == 2, "a crashed background loop is restarted once"
    [record] = await read_topic(kafka_bootstrap, topic, at_least=1)
    envelope = json.loads(record.value)
    assert envelope["source"] == "/kernel-service"
    assert envelope["correlationid"] == dict(record.headers)["ce_correlationid"].decode()


async def test_the_same_service_runs_on_the_in_memory_transport_with_no_broker(
    create_database: CreateDatabase,
) -> None:
    # nothing listens on the broker's address: no Kafka client may be made
    settings = await service_settings(create_database, "runtime_memory", "127.0.0.1:1")
    topic = f"kernel-memory-{uuid.uuid4().hex[:8]}"
    transport = InMemoryTransport()
    runtime = build(settings, topic, [], transport)
    app = runtime.create_app(title="Kernel service", version="1")

    async def notes() -> list[str]:
        async with runtime.sessions() as session:
            return list((await session.scalars(select(effects.c.note))).all())

    async with running(app) as client:
        order_id = uuid.uuid4()
        async with runtime.sessions() as session, session.begin():
            await runtime.outbox.add(session, KernelTestEvent(order_id=order_id, note="bob"))
        consumed = await eventually(notes, lambda n: "consumed:bob" in n, timeout_s=10)
        ready = await client.get("/health/ready")
        metrics = (await client.get("/metrics")).text

    assert consumed == ["consumed:bob"]
    assert ready.json()["checks"] == {"database": "ok"}
    assert "kafka_consumer_lag" not in metrics
    (record,) = transport.records(topic)
    assert record.key == str(order_id).encode()
    assert json.loads(record.value or b"")["source"] == "/kernel-service"
    assert sum(transport.committed(runtime.consumers[0].name).values()) == 1
    assert f"{topic}.dlq" in transport.topics()


async def _value(runs: list[str]) -> int:
    return len(runs)


def orders_router(runtime: ServiceRuntime) -> APIRouter:
    router = APIRouter()

    @router.post("/orders", status_code=201)
    async def place_order(user: CurrentUser) -> None:
        async with runtime.sessions() as session, session.begin():
            order_id = uuid.uuid4()
            await session.execute(insert(effects).values(order_id=order_id, note="placed"))
            await runtime.outbox.add(session, KernelTestEvent(order_id=order_id, note=user.subject))

    return router


async def test_an_api_process_and_a_worker_process_share_the_work_of_one_service(
    create_database: CreateDatabase, kafka_bootstrap: str
) -> None:
    """The API process only takes requests (its outbox rows are relayed by the worker, woken
    through one NOTIFY); the worker process relays, consumes and runs the loops, and serves
    health and metrics but not the API."""
    url = await create_database("runtime_roles")
    from platform_runtime.db import make_engine

    engine = make_engine(url, pool_size=1)
    async with engine.begin() as conn:
        await conn.run_sync(metadata.create_all)
    await engine.dispose()
    topic = f"kernel-roles-{uuid.uuid4().hex[:8]}"
    runtimes, apps = {}, {}
    loop_runs: dict[Role, list[str]] = {}
    for role in (Role.API, Role.WORKER):
        settings = ServiceSettings(
            service_name="kernel-roles",
            database_url=url,
            kafka_bootstrap_servers=kafka_bootstrap,
            role=role,
            outbox_poll_interval_s=60.0,  # only a wake-up can get the row out in time
            development=True,
        )
        loop_runs[role] = []
        runtimes[role] = runtime = build(settings, topic, loop_runs[role])
        apps[role] = runtime.create_app(
            title="Kernel service", version="1", routers=[orders_router(runtime)]
        )

    async def notes() -> list[str]:
        async with runtimes[Role.API].sessions() as session:
            return list((await session.scalars(select(effects.c.note))).all())

    async with running(apps[Role.WORKER]) as worker, running(apps[Role.API]) as api:
        placed = await api.post("/orders", headers=bearer("bob"))
        consumed = await eventually(notes, lambda n: "consumed:bob" in n, timeout_s=20)
        not_here = await worker.post("/orders", headers=bearer("bob"))
        api_ready = (await api.get("/health/ready")).json()
        worker_ready = (await worker.get("/health/ready")).json()

    assert placed.status_code == 201
    assert sorted(consumed) == ["consumed:bob", "placed"]
    assert not_here.status_code == 404
    assert api_ready["checks"] == {"database": "ok"}
    assert worker_ready["checks"] == {"database": "ok", "kafka": "ok"}
    assert runtimes[Role.API].notifier.sent >= 1
    assert loop_runs[Role.API] == []  # no background loop in the API process
    assert loop_runs[Role.WORKER]


@pytest.mark.usefixtures("root_logger")
async def test_stopping_ends_the_intake_before_the_loops_that_do_the_work(
    create_database: CreateDatabase, kafka_bootstrap: str
) -> None:
    """A worker loop may hand back what it holds when it stops: by then its consumer has
    left (and its in-flight batch is done), so nothing comes in after that."""
    url = await create_database("runtime_stop")
    settings = ServiceSettings(
        service_name="kernel-stop",
        database_url=url,
        kafka_bootstrap_servers=kafka_bootstrap,
        development=True,
    )
    KernelTestEvent.topic = f"kernel-stop-{uuid.uuid4().hex[:8]}"
    runtime = ServiceRuntime(settings, metadata=metadata, source="/kernel-stop", run_relay=False)
    name = f"kernel-stop-{uuid.uuid4().hex[:8]}"
    asked: list[float] = []

    def capacity() -> int:
        asked.append(time.monotonic())
        return 0

    intake = runtime.batch_consumer(name, capacity=capacity)
    intake.on_batch(KernelTestEvent, lambda session, items: asyncio.sleep(0), lambda _: None)
    consumer_running_at_stop: list[bool] = []

    async def worker(stop: asyncio.Event) -> None:
        await stop.wait()
        running = any(t.get_name() == name for t in asyncio.all_tasks())  # pending tasks only
        consumer_running_at_stop.append(running)

    runtime.background("worker", worker)
    await runtime.start()
    await eventually(lambda: asyncio.sleep(0.05, result=len(asked)), bool)
    await runtime.stop()

    assert asked, "the consumer ran"
    assert consumer_running_at_stop == [False]


OWN_SECRET = "an-own-secret-of-at-least-thirty-two-bytes"


async def test_a_runtime_refuses_to_serve_the_development_secret_outside_development() -> None:
    settings = ServiceSettings(
        service_name="kernel-dev",
        database_url="postgresql+asyncpg://nobody:nothing@127.0.0.1:1/none",  # never reached
        kafka_bootstrap_servers="127.0.0.1:1",
    )
    runtime = ServiceRuntime(settings, metadata=metadata, source="/kernel-dev")
    app = runtime.create_app(title="Kernel dev", version="1")

    with pytest.raises(InsecureSettings, match="or DEVELOPMENT=true on a development machine"):
        async with running(app):
            pass


@pytest.mark.usefixtures("root_logger")
@pytest.mark.parametrize(
    ("values", "warned"),
    [({"development": True}, True), ({"jwt_secret": OWN_SECRET}, False)],
    ids=["development", "own-secret"],
)
async def test_a_runtime_serves_with_development_on_or_with_a_secret_of_its_own(
    create_database: CreateDatabase,
    kafka_bootstrap: str,
    caplog: pytest.LogCaptureFixture,
    values: dict[str, Any],
    warned: bool,
) -> None:
    url = await create_database("runtime_secret")
    settings = ServiceSettings(
        service_name="kernel-secret",
        database_url=url,
        kafka_bootstrap_servers=kafka_bootstrap,
        **values,
    )
    runtime = ServiceRuntime(settings, metadata=metadata, source="/kernel-secret")
    app = runtime.create_app(title="Kernel secret", version="1")

    @app.get("/me")
    async def me(user: CurrentUser) -> dict[str, str]:
        return {"subject": user.subject}

    secret = settings.jwt_secret.get_secret_value() if settings.jwt_secret else ""

    async with running(app) as client:
        ready = await client.get("/health/ready")
        me_answer = await client.get("/me", headers=bearer("bob", secret=secret))

    assert ready.status_code == 200
    assert me_answer.json() == {"subject": "bob"}
    warnings = [r.getMessage() for r in caplog.records if r.name == "platform_runtime.service"]
    assert (
        "kernel-secret accepts tokens signed with the public development JWT secret "
        "(development is on): never let anyone but developers reach it" in warnings
    ) is warned


def test_cli_prints_the_openapi_document(capsys: pytest.CaptureFixture[str]) -> None:
    settings = ServiceSettings(service_name="kernel-cli", log_json=False)

    def app_factory(s: ServiceSettings) -> Any:
        runtime = ServiceRuntime(s, metadata=metadata, source="/kernel-cli")
        return runtime.create_app(title="Kernel CLI", version="9.9")

    code = service_main(
        settings_factory=lambda: settings,
        app_factory=app_factory,
        alembic_ini=Path("unused.ini"),
        argv=["openapi"],
    )

    assert code == 0
    document = json.loads(capsys.readouterr().out)
    assert document["info"] == {"title": "Kernel CLI", "version": "9.9"}
    assert "/health/ready" in document["paths"]


@pytest.mark.parametrize("command", ["openapi", "asyncapi"])
def test_a_printed_document_is_only_the_document_the_logs_go_to_stderr(
    command: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """``<service> openapi > openapi.json`` holds the document alone, whatever is logged
    meanwhile (e.g. asyncio reporting a task of an earlier client that was never awaited)."""
    settings = ServiceSettings(service_name="kernel-cli", log_json=False)

    def app_factory(s: ServiceSettings) -> Any:
        logging.getLogger("asyncio").error("Task was destroyed but it is pending!")
        runtime = ServiceRuntime(s, metadata=metadata, source="/kernel-cli")
        return runtime.create_app(title="Kernel CLI", version="9.9")

    code = service_main(
        settings_factory=lambda: settings,
        app_factory=app_factory,
        alembic_ini=Path("unused.ini"),
        argv=[command],
    )

    out, err = capsys.readouterr()
    assert code == 0
    assert json.loads(out)["info"]["title"] == "Kernel CLI"
    assert "Task was destroyed but it is pending!" in err


def test_cli_without_a_command_explains_its_usage(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        service_main(
            settings_factory=ServiceSettings,
            app_factory=lambda s: None,  # type: ignore[arg-type,return-value]
            alembic_ini=Path("unused.ini"),
            argv=[],
        )
    assert exit_info.value.code == 2
    assert "serve" in capsys.readouterr().err


@pytest.mark.usefixtures("root_logger")
async def test_cli_migrate_upgrades_a_database_with_the_service_history(
    create_database: CreateDatabase, tmp_path: Path
) -> None:
    url = await create_database("cli")
    ini = make_alembic_project(tmp_path)
    settings = ServiceSettings(service_name="kernel-cli", database_url=url, log_json=False)

    def migrate() -> int:
        return service_main(
            settings_factory=lambda: settings,
            app_factory=lambda s: None,  # type: ignore[arg-type,return-value]
            alembic_ini=ini,
            argv=["migrate"],
        )

    code = await in_thread(migrate)

    assert code == 0
    import asyncpg

    from platform_runtime.db import asyncpg_dsn

    conn = await asyncpg.connect(asyncpg_dsn(url))
    try:
        assert await conn.fetchval("SELECT count(*) FROM migrated_widgets") == 0
        assert await conn.fetchval("SELECT version_num FROM alembic_version") == "w1"
    finally:
        await conn.close()


def make_alembic_project(root: Path) -> Path:
    """A one-revision migration history using the kernel's env.py glue."""
    (root / "migrations" / "versions").mkdir(parents=True)
    ini = root / "alembic.ini"
    ini.write_text("[alembic]\nscript_location = %(here)s/migrations\npath_separator = os\n")
    (root / "migrations" / "env.py").write_text(
        "from alembic import context\n"
        "from sqlalchemy import MetaData\n"
        "from platform_runtime.migrations import run_env\n"
        "run_env(context, MetaData(), 'postgresql+asyncpg://nobody@127.0.0.1:1/none')\n"
    )
    (root / "migrations" / "versions" / "w1_widgets.py").write_text(
        "import sqlalchemy as sa\nfrom alembic import op\n"
        "revision = 'w1'\ndown_revision = None\nbranch_labels = None\ndepends_on = None\n"
        "def upgrade():\n    op.create_table('migrated_widgets', sa.Column('id', sa.Integer,"
        " primary_key=True))\n"
        "def downgrade():\n    op.drop_table('migrated_widgets')\n"
    )
    return ini
