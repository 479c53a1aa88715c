#!/usr/bin/env bash
# Run the three services as background processes on this machine (what `make up` starts).
#
# usage: services.sh {start|stop|status}
#   start   one service after the other: migrate its database, start its two processes and
#           wait until both answer /health/ready:
#             <service>-api     `<service> serve --role api --workers $API_WORKERS`: the HTTP
#                               API alone, on 8001 (timeslots), 8002 (booking), 8003 (reminders)
#             <service>-worker  `<service> serve --role worker`: outbox relay, consumers and
#                               background loops, with only /health/* and /metrics, on 8011,
#                               8012, 8013
#   stop    stop the processes this script started (also those of an older layout that ran
#           one `<service> serve` process per service)
#   status  exit 0 when all six answer /health/ready
#
# Logs and pid files live in ${PLATFORM_STATE_DIR:-<repo>/.run}/services/
# (<service>-api.log, <service>-worker.log, <service>-migrate.log). The services read their
# settings from the environment printed by `infra.sh env` (evaluated here). API_WORKERS
# (default 2) sets the uvicorn worker processes of each API process.
#
# This is a development machine: <SERVICE>_DEVELOPMENT=true (unless set otherwise), so that the
# APIs accept tokens signed with the development JWT secret of the repository
# (runtime/src/platform_runtime/settings.py, DEV_JWT_SECRET), which a service refuses without it.
#
# Unless STANDINS=0, it also runs stand-ins for the systems around the platform that are not
# ours (tooling/src/platform_tooling/standins.py): a payment service that pays every booking (users named
# unpaid-* never pay, declined-* are declined) and a mail server on 127.0.0.1:$MAIL_PORT
# (default 2525) that keeps every reminder in $PLATFORM_STATE_DIR/mail/*.eml; the reminders
# service sends there unless REMINDERS_SMTP_HOST/PORT say otherwise.
set -euo pipefail

COMPONENT=services
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

SERVICES=(timeslots booking reminders)
declare -A API_PORTS=([timeslots]=8001 [booking]=8002 [reminders]=8003)
declare -A WORKER_PORTS=([timeslots]=8011 [booking]=8012 [reminders]=8013)
ROLES=(api worker)
# SERVICE_PORTS="booking-api=18002 booking-worker=18012 ..." moves any of them (other replicas
# on one machine, tests).
for entry in ${SERVICE_PORTS:-}; do
    name=${entry%%=*} port=${entry#*=}
    case "$name" in
        *-api) API_PORTS[${name%-api}]=$port ;;
        *-worker) WORKER_PORTS[${name%-worker}]=$port ;;
        *) die "SERVICE_PORTS: '$entry' is not <service>-api=PORT or <service>-worker=PORT" ;;
    esac
done
RUN_DIR=$STATE_DIR/services
UV=${UV:-uv}
STANDINS=${STANDINS:-1}
MAIL_PORT=${MAIL_PORT:-2525}
API_WORKERS=${API_WORKERS:-2}
START_TIMEOUT_S=${START_TIMEOUT_S:-90}

# Each uvicorn worker of an API process is a spawned process that imports the whole service
# again, and uvicorn kills a new worker that does not answer its health check within 5 s.
# Without a bytecode cache (PYTHONDONTWRITEBYTECODE set) every import is compiled from source,
# which takes longer than that on a busy machine: keep the services' bytecode in the state
# directory instead (written by the migration, which imports the same code, before the start).
if [ -n "${PYTHONDONTWRITEBYTECODE:-}" ]; then
    export PYTHONPYCACHEPREFIX=${PYTHONPYCACHEPREFIX:-$STATE_DIR/pycache}
    unset PYTHONDONTWRITEBYTECODE
fi

ready() { python3 - "$1" <<'PY'
import sys, urllib.request
try:
    with urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/health/ready", timeout=2) as r:
        sys.exit(0 if r.status == 200 else 1)
except Exception:
    sys.exit(1)
PY
}

# port_of SERVICE ROLE — the HTTP port of one process.
port_of() {
    if [ "$2" = api ]; then echo "${API_PORTS[$1]}"; else echo "${WORKER_PORTS[$1]}"; fi
}

running_pid() {
    local pidfile=$RUN_DIR/$1.pid pid
    [ -f "$pidfile" ] || return 1
    pid=$(cat "$pidfile")
    kill -0 "$pid" 2>/dev/null || return 1
    echo "$pid"
}

start_standins() {
    # The reminders processes send to the mail stand-in, whether it starts now or already runs.
    export REMINDERS_SMTP_HOST=${REMINDERS_SMTP_HOST:-127.0.0.1}
    export REMINDERS_SMTP_PORT=${REMINDERS_SMTP_PORT:-$MAIL_PORT}
    if running_pid standins >/dev/null; then
        log "stand-ins already running"
        return 0
    fi
    (cd "$REPO_ROOT" && exec setsid "$UV" run --frozen python -m platform_tooling.standins \
        --kafka "$PLATFORM_KAFKA_BOOTSTRAP" --smtp-port "$MAIL_PORT" --mail-dir "$STATE_DIR/mail") \
        >>"$RUN_DIR/standins.log" 2>&1 &
    echo $! >"$RUN_DIR/standins.pid"
    printf '%-10s payments: pays every booking   mail: 127.0.0.1:%s -> %s   log: %s\n' \
        stand-ins "$MAIL_PORT" "$STATE_DIR/mail/" "$RUN_DIR/standins.log"
}

stop_process() {
    local name=$1 pid
    if pid=$(running_pid "$name"); then
        kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
        for _ in $(seq 1 40); do kill -0 "$pid" 2>/dev/null || break; sleep 0.25; done
        kill -KILL -- "-$pid" 2>/dev/null || true
        log "$name stopped"
    fi
    rm -f "$RUN_DIR/$name.pid"
}

# stop_old_layout — a `make up` of the older layout ran one `<service> serve` process per
# service (pid file <service>.pid) on the port the API takes now: stop it.
stop_old_layout() {
    local name
    for name in "${SERVICES[@]}"; do
        if running_pid "$name" >/dev/null; then
            log "stopping $name (one process per service, started by an older make up)"
        fi
        stop_process "$name"
    done
}

# start_process SERVICE ROLE — start one process in its own session (stop kills the group).
start_process() {
    local service=$1 role=$2 name=$1-$2 port
    port=$(port_of "$service" "$role")
    local args=(serve --role "$role" --port "$port")
    if [ "$role" = api ]; then
        args+=(--workers "$API_WORKERS")
    fi
    (cd "$REPO_ROOT" && exec setsid "$UV" run --frozen "$service" "${args[@]}") \
        >>"$RUN_DIR/$name.log" 2>&1 &
    echo $! >"$RUN_DIR/$name.pid"
}

# development_mode — <SERVICE>_DEVELOPMENT=true for every service, unless already set.
development_mode() {
    local service variable
    for service in "${SERVICES[@]}"; do
        variable=${service^^}_DEVELOPMENT
        export "$variable=${!variable:-true}"
    done
}

start() {
    mkdir -p "$RUN_DIR"
    eval "$("$LOCAL_DIR/infra.sh" env)"
    development_mode
    stop_old_layout
    [ "$STANDINS" = 0 ] || start_standins
    # One service at a time: starting six processes (and the API's uvicorn workers) at once on
    # a small machine only makes each of them slower.
    local service
    for service in "${SERVICES[@]}"; do
        start_service "$service"
    done
}

# start_service SERVICE — migrate, start what is not running, wait until both answer ready.
start_service() {
    local service=$1 role name port deadline missing=()
    for role in "${ROLES[@]}"; do
        if running_pid "$service-$role" >/dev/null; then
            log "$service-$role already running"
        else
            missing+=("$role")
        fi
    done
    if [ "${#missing[@]}" -gt 0 ]; then
        log "migrating $service"
        (cd "$REPO_ROOT" && "$UV" run --frozen "$service" migrate) \
            >>"$RUN_DIR/$service-migrate.log" 2>&1 \
            || die "$service migration failed; see $RUN_DIR/$service-migrate.log"
        for role in "${missing[@]}"; do
            start_process "$service" "$role"
        done
    fi
    for role in "${ROLES[@]}"; do
        name=$service-$role
        port=$(port_of "$service" "$role")
        deadline=$((SECONDS + START_TIMEOUT_S))
        until ready "$port"; do
            if ! running_pid "$name" >/dev/null; then
                tail -n 30 "$RUN_DIR/$name.log" >&2 || true
                die "$name exited during start-up; see $RUN_DIR/$name.log"
            fi
            [ $SECONDS -lt $deadline ] \
                || die "$name not ready after $START_TIMEOUT_S s; see $RUN_DIR/$name.log"
            sleep 0.5
        done
    done
    port=${API_PORTS[$service]}
    printf '%-10s API     http://127.0.0.1:%s  (%s workers; docs http://127.0.0.1:%s/docs)   log: %s\n' \
        "$service" "$port" "$API_WORKERS" "$port" "$RUN_DIR/$service-api.log"
    port=${WORKER_PORTS[$service]}
    printf '%-10s worker  http://127.0.0.1:%s  (health and metrics only: /health/ready, /metrics)   log: %s\n' \
        "" "$port" "$RUN_DIR/$service-worker.log"
}

stop() {
    local service role
    for service in "${SERVICES[@]}"; do
        for role in "${ROLES[@]}"; do
            stop_process "$service-$role"
        done
    done
    stop_old_layout
    stop_process standins
}

# lag_of PORT — the consumer lag a worker measures itself (its kafka_consumer_lag gauge), one
# line per consumer group: "group: N behind (topic: n, ...)"; nothing if it has no groups.
lag_of() { python3 - "$1" <<'PY'
import collections, re, sys, urllib.request
try:
    with urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/metrics", timeout=2) as r:
        text = r.read().decode()
except Exception:
    sys.exit(0)
lag = collections.defaultdict(dict)
for m in re.finditer(r'^kafka_consumer_lag\{([^}]*)\} ([0-9.e+]+)$', text, re.M):
    labels = dict(re.findall(r'(\w+)="([^"]*)"', m.group(1)))
    lag[labels.get("consumer", "?")][labels.get("topic", "?")] = int(float(m.group(2)))
for group, topics in sorted(lag.items()):
    each = ", ".join(f"{t}: {n:,}" for t, n in sorted(topics.items()))
    behind = sum(topics.values())
    print(f"    consumer group {group}: {behind:,} behind ({each})")
    if behind >= 1000:
        print("      (a backlog: new events wait behind it; if old runs left it on a broker you"
              " reuse, 'make reset' in the checkout that owns the broker gives a clean slate)")
PY
}

status() {
    local service role port ok=0
    for service in "${SERVICES[@]}"; do
        for role in "${ROLES[@]}"; do
            port=$(port_of "$service" "$role")
            if ready "$port"; then
                echo "$service-$role (port $port): ready"
                [ "$role" = worker ] && lag_of "$port"
            else
                echo "$service-$role (port $port): not ready"
                ok=1
            fi
        done
    done
    echo "infrastructure:"
    "$LOCAL_DIR/infra.sh" status 2>&1 | sed 's/^/    /' || true
    return $ok
}

case "${1:-}" in
    start) start ;;
    stop) stop ;;
    status) status ;;
    *) die "usage: services.sh {start|stop|status}" ;;
esac
