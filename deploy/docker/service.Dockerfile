# syntax=docker/dockerfile:1
# One image recipe for every service of the platform. Build it from the repository root:
#
#   docker build -f deploy/docker/service.Dockerfile \
#       --build-arg SERVICE=booking --build-arg PORT=8002 -t booking-platform/booking:dev .
#
# SERVICE  booking | timeslots | reminders: selects the workspace package `<SERVICE>-service`,
#          its console script `<SERVICE>` and so its env prefix `<SERVICE upper-cased>_`.
# PORT     the port the service listens on by default: timeslots 8001, booking 8002,
#          reminders 8003 (the `http_port` default of its settings). Used for EXPOSE and the
#          HEALTHCHECK; `<PREFIX>HTTP_PORT` at run time still wins, the healthcheck follows it.
#
# The image keeps the repository layout under /app and installs the workspace packages in
# editable mode: each service's CLI finds `alembic.ini` as `Path(cli.py).parents[2]`, i.e.
# /app/services/<SERVICE>/alembic.ini, next to its `migrations/` folder.
#
#   docker run --rm booking-platform/booking:dev migrate   # alembic upgrade head, then exit
#   docker run booking-platform/booking:dev                # serve (the default command): the
#                                                          # API and the background work
#   docker run booking-platform/booking:dev serve --role api --workers 2
#                                                          # the HTTP API alone
#   docker run -e BOOKING_HTTP_PORT=8012 booking-platform/booking:dev serve --role worker
#                                                          # relay, consumers, background loops
#                                                          # (health and metrics only)
#
# Only the locked runtime dependencies of `<SERVICE>-service`, the event contract and the
# runtime are installed (no dev group, no other service, no tests); the image runs as
# uid/gid 10001.

ARG PYTHON_IMAGE=python:3.11-slim

# --------------------------------------------------------------------------------------------
# builder: resolve the locked dependencies into /app/.venv with uv
# --------------------------------------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS builder

ARG SERVICE
ARG UV_VERSION=0.13.8

RUN case "${SERVICE}" in \
        booking|timeslots|reminders) ;; \
        *) echo "build with --build-arg SERVICE=booking|timeslots|reminders (got '${SERVICE}')" >&2; \
           exit 1 ;; \
    esac

# uv comes from PyPI, like every other dependency.
RUN pip install --no-cache-dir --disable-pip-version-check "uv==${UV_VERSION}"

ENV UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_PYTHON_DOWNLOADS=never \
    UV_PYTHON=/usr/local/bin/python3

WORKDIR /app

# Dependencies first, from nothing but the lock and the workspace's pyproject files, so this
# layer is rebuilt only when the dependencies change. Every member's pyproject.toml is needed
# for uv to load the workspace, even those of the services this image does not install.
COPY pyproject.toml uv.lock ./
COPY contracts/pyproject.toml contracts/pyproject.toml
COPY runtime/pyproject.toml runtime/pyproject.toml
COPY services/booking/pyproject.toml services/booking/pyproject.toml
COPY services/timeslots/pyproject.toml services/timeslots/pyproject.toml
COPY services/reminders/pyproject.toml services/reminders/pyproject.toml
COPY tooling/pyproject.toml tooling/pyproject.toml
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --frozen --no-dev --no-install-workspace --package "${SERVICE}-service"

# Then the sources of the event contract, the runtime and this one service (alembic.ini
# and migrations included), installed as editable workspace members.
COPY contracts/ contracts/
COPY runtime/ runtime/
COPY services/${SERVICE}/ services/${SERVICE}/
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --frozen --no-dev --package "${SERVICE}-service" \
 && .venv/bin/python -m compileall -q contracts/src runtime/src "services/${SERVICE}/src" "services/${SERVICE}/migrations"

# --------------------------------------------------------------------------------------------
# runtime: the virtualenv and the sources, run by an unprivileged user
# --------------------------------------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS runtime

ARG SERVICE
ARG PORT

RUN case "${PORT}" in \
        ''|*[!0-9]*) echo "build with --build-arg PORT=<the service's HTTP port> (got '${PORT}')" >&2; \
                     exit 1 ;; \
    esac \
 && groupadd --system --gid 10001 app \
 && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin app

LABEL org.opencontainers.image.title="${SERVICE}-service" \
      org.opencontainers.image.description="The ${SERVICE} service of the booking platform"

# Owned by root and read-only for the service user: bytecode is compiled at build time.
COPY --from=builder /app /app

WORKDIR /app

# The settings of a service are read from `<PREFIX>*` variables, the prefix being the service
# name upper-cased. A Dockerfile cannot upper-case, so the listen address is set for all three
# prefixes: each service reads its own and ignores the others.
ENV PATH="/app/.venv/bin:${PATH}" \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    SERVICE="${SERVICE}" \
    SERVICE_PORT="${PORT}" \
    BOOKING_HTTP_HOST=0.0.0.0 \
    TIMESLOTS_HTTP_HOST=0.0.0.0 \
    REMINDERS_HTTP_HOST=0.0.0.0

USER 10001:10001

EXPOSE ${PORT}

# No curl in the slim image: probe with the standard library. The port is
# `<PREFIX>HTTP_PORT` when set, else the build-time PORT. `migrate` has no HTTP port: disable
# the healthcheck for it (docker-compose.yml does). Kubernetes ignores it and uses the probes
# of deploy/k8s.
# A process on another port (`serve --role worker` on 8011-8013): give the port as
# `<PREFIX>HTTP_PORT` rather than `--port`, so this check probes it (for `reminders worker
# --port 8013`, also set REMINDERS_HTTP_PORT=8013).
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; port = os.environ.get(os.environ['SERVICE'].upper() + '_HTTP_PORT') or os.environ['SERVICE_PORT']; urllib.request.urlopen(f'http://127.0.0.1:{port}/health/live', timeout=4)"]

# `<SERVICE> serve | migrate | openapi | asyncapi` (and `timeslots generate`,
# `reminders worker`): the console script of the service, exec'd so that it runs as PID 1 and
# receives SIGTERM directly. The arguments come from CMD (or `docker run`).
ENTRYPOINT ["/bin/sh", "-c", "exec \"${SERVICE}\" \"$@\"", "--"]
CMD ["serve"]
