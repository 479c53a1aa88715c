#!/usr/bin/env bash
# Local infrastructure of the booking platform: PostgreSQL and Apache Kafka.
#
# usage: infra.sh {up|down|status|env|reset}
#   up      start both (idempotent), one line per component when ready
#   down    stop both (data is kept)
#   status  exit 0 when both answer
#   env     print `export` lines for the services and the tests:
#             eval "$(deploy/local/infra.sh env)"
#   reset   down, then delete all local data (native mode: the private cluster and the
#           broker's data; Docker mode: the compose volumes)
#
# With a Docker engine (`docker info` succeeds) the services `postgres` and `kafka` of
# <repo>/docker-compose.yml are used; otherwise kafka.sh and postgres.sh run them natively.
#
# environment (defaults):
#   PLATFORM_USE_DOCKER=auto   0: never use Docker; 1: require it; auto: use it if it answers
#   PG_HOST=127.0.0.1 PG_PORT=55432 PG_USER=platform PG_PASSWORD=platform
#   KAFKA_PORT=9092 KAFKA_CONTROLLER_PORT=9093
#   plus those of kafka.sh and postgres.sh (KAFKA_HEAP_OPTS, PG_FAST, PLATFORM_STATE_DIR, ...)
set -euo pipefail

COMPONENT=infra
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

PG_HOST=${PG_HOST:-127.0.0.1}
PG_PORT=${PG_PORT:-55432}
PG_USER=${PG_USER:-platform}
PG_PASSWORD=${PG_PASSWORD:-platform}
KAFKA_HOST=127.0.0.1
KAFKA_PORT=${KAFKA_PORT:-9092}
COMPOSE_FILE=$REPO_ROOT/docker-compose.yml

# ---------------------------------------------------------------------------------------------
# Docker or native
# ---------------------------------------------------------------------------------------------

docker_answers() {
    command -v docker >/dev/null 2>&1 && timeout 20 docker info >/dev/null 2>&1
}

# compose CMD... — `docker compose` (plugin) or the standalone `docker-compose`.
compose() {
    if docker compose version >/dev/null 2>&1; then
        docker compose -f "$COMPOSE_FILE" "$@"
    else
        docker-compose -f "$COMPOSE_FILE" "$@"
    fi
}

compose_available() {
    docker compose version >/dev/null 2>&1 || command -v docker-compose >/dev/null 2>&1
}

# use_docker — decide once per run (`docker info` is not free) and explain a fallback.
use_docker() {
    if [ -z "${_USE_DOCKER:-}" ]; then
        case "${PLATFORM_USE_DOCKER:-auto}" in
            0 | no | false)
                _USE_DOCKER=no
                ;;
            1 | yes | true)
                docker_answers || die "PLATFORM_USE_DOCKER=1 but no Docker engine answers (docker info)"
                compose_available || die "PLATFORM_USE_DOCKER=1 but neither 'docker compose' nor 'docker-compose' is installed"
                [ -f "$COMPOSE_FILE" ] || die "PLATFORM_USE_DOCKER=1 but $COMPOSE_FILE does not exist"
                _USE_DOCKER=yes
                ;;
            *)
                _USE_DOCKER=no
                if docker_answers; then
                    if ! compose_available; then
                        log "Docker answers but docker compose is not installed; running natively"
                    elif [ ! -f "$COMPOSE_FILE" ]; then
                        log "Docker answers but $COMPOSE_FILE is missing; running natively"
                    else
                        _USE_DOCKER=yes
                    fi
                fi
                ;;
        esac
    fi
    [ "$_USE_DOCKER" = yes ]
}

# ---------------------------------------------------------------------------------------------

cmd_up() {
    if use_docker; then
        log "starting postgres and kafka with docker compose"
        PG_PORT=$PG_PORT KAFKA_PORT=$KAFKA_PORT compose up -d --wait postgres kafka
        # The databases are created by postgres.sh against the published port when psql
        # exists on this machine (it uses a server that already answers, never starts one).
        if command -v psql >/dev/null 2>&1; then
            "$LOCAL_DIR/postgres.sh" up
        else
            COMPONENT=postgres log "ready at $PG_HOST:$PG_PORT (docker)"
        fi
        # `--wait` only covers services with a healthcheck: also wait for the broker itself.
        local deadline=$((SECONDS + 60))
        until "$LOCAL_DIR/kafka.sh" status >/dev/null 2>&1; do
            [ "$SECONDS" -lt "$deadline" ] || die "kafka does not answer at $KAFKA_HOST:$KAFKA_PORT (docker compose logs kafka)"
            sleep 1
        done
        COMPONENT=kafka log "ready at $KAFKA_HOST:$KAFKA_PORT (docker)"
        return 0
    fi

    # Native. Both start in parallel (the broker's JVM start dominates); their apt-get
    # calls, if any, are serialised by a lock in lib.sh.
    local kafka_pid rc=0
    "$LOCAL_DIR/kafka.sh" up &
    kafka_pid=$!
    "$LOCAL_DIR/postgres.sh" up || rc=1
    wait "$kafka_pid" || rc=1
    [ "$rc" -eq 0 ] || die "the infrastructure did not come up (see the messages above)"
}

cmd_down() {
    if use_docker; then
        log "stopping the docker compose services (volumes are kept)"
        compose down
    fi
    # Also in Docker mode: stops whatever the native scripts may have started earlier.
    # Both are no-ops when they started nothing.
    "$LOCAL_DIR/kafka.sh" down
    "$LOCAL_DIR/postgres.sh" down
}

cmd_status() {
    local rc=0
    "$LOCAL_DIR/postgres.sh" status || rc=1
    "$LOCAL_DIR/kafka.sh" status || rc=1
    return "$rc"
}

cmd_reset() {
    if use_docker; then
        log "removing the docker compose services and their volumes"
        compose down -v
    fi
    "$LOCAL_DIR/kafka.sh" reset
    "$LOCAL_DIR/postgres.sh" reset
}

# urlencode STRING — percent-encode everything but RFC 3986 unreserved characters.
urlencode() {
    local s=$1 out='' c i
    for ((i = 0; i < ${#s}; i++)); do
        c=${s:i:1}
        case "$c" in
            [a-zA-Z0-9.~_-]) out+=$c ;;
            *) out+=$(printf '%%%02X' "'$c") ;;
        esac
    done
    printf '%s' "$out"
}

cmd_env() {
    local host=$PG_HOST
    case "$host" in *:*) host="[$host]" ;; esac # IPv6 literal
    local auth server dsn kafka
    auth="$(urlencode "$PG_USER"):$(urlencode "$PG_PASSWORD")"
    server="$host:$PG_PORT"
    dsn="postgresql://$auth@$server"
    kafka="$KAFKA_HOST:$KAFKA_PORT"

    emit() { printf 'export %s=%q\n' "$1" "$2"; }
    emit PLATFORM_POSTGRES_DSN "$dsn"
    emit PLATFORM_KAFKA_BOOTSTRAP "$kafka"
    emit TEST_POSTGRES_DSN "$dsn"
    emit TEST_KAFKA_BOOTSTRAP "$kafka"
    local service
    for service in booking timeslots reminders; do
        emit "${service^^}_DATABASE_URL" "postgresql+asyncpg://$auth@$server/$service"
        emit "${service^^}_KAFKA_BOOTSTRAP_SERVERS" "$kafka"
    done
}

case "${1:-}" in
    up) cmd_up ;;
    down) cmd_down ;;
    status) cmd_status ;;
    env) cmd_env ;;
    reset) cmd_reset ;;
    *) usage ;;
esac
