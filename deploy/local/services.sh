#!/usr/bin/env bash
# Run the three services as background processes on this machine (what `make up` starts).
#
# usage: services.sh {start|stop|status}
#   start   migrate each database, start `<service> serve`, wait until /health/ready answers
#   stop    stop the processes this script started
#   status  exit 0 when all three answer /health/ready
#
# Logs and pid files live in ${PLATFORM_STATE_DIR:-<repo>/.run}/services/. The services read
# their settings from the environment printed by `infra.sh env` (evaluated here).
#
# Unless STANDINS=0, it also runs stand-ins for the systems around the platform that are not
# ours (tests/support/standins.py): a payment service that pays every booking (users named
# unpaid-* never pay, declined-* are declined) and a mail server on 127.0.0.1:$MAIL_PORT
# (default 2525) that keeps every reminder in $PLATFORM_STATE_DIR/mail/*.eml; the reminders
# service sends there unless REMINDERS_SMTP_HOST/PORT say otherwise.
set -euo pipefail

COMPONENT=services
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

SERVICES=(timeslots booking reminders)
declare -A PORTS=([timeslots]=8001 [booking]=8002 [reminders]=8003)
RUN_DIR=$STATE_DIR/services
UV=${UV:-uv}
STANDINS=${STANDINS:-1}
MAIL_PORT=${MAIL_PORT:-2525}

ready() { python3 - "$1" <<'PY'
import sys, urllib.request
try:
    with urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/health/ready", timeout=2) as r:
        sys.exit(0 if r.status == 200 else 1)
except Exception:
    sys.exit(1)
PY
}

running_pid() {
    local pidfile=$RUN_DIR/$1.pid pid
    [ -f "$pidfile" ] || return 1
    pid=$(cat "$pidfile")
    kill -0 "$pid" 2>/dev/null || return 1
    echo "$pid"
}

start_standins() {
    if running_pid standins >/dev/null; then
        log "stand-ins already running"
        return 0
    fi
    (cd "$REPO_ROOT" && exec setsid "$UV" run --frozen python -m tests.support.standins \
        --kafka "$PLATFORM_KAFKA_BOOTSTRAP" --smtp-port "$MAIL_PORT" --mail-dir "$STATE_DIR/mail") \
        >>"$RUN_DIR/standins.log" 2>&1 &
    echo $! >"$RUN_DIR/standins.pid"
    export REMINDERS_SMTP_HOST=${REMINDERS_SMTP_HOST:-127.0.0.1}
    export REMINDERS_SMTP_PORT=${REMINDERS_SMTP_PORT:-$MAIL_PORT}
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

start() {
    mkdir -p "$RUN_DIR"
    eval "$("$LOCAL_DIR/infra.sh" env)"
    [ "$STANDINS" = 0 ] || start_standins
    local name port
    for name in "${SERVICES[@]}"; do
        port=${PORTS[$name]}
        if running_pid "$name" >/dev/null; then
            log "$name already running"
            continue
        fi
        log "migrating $name"
        (cd "$REPO_ROOT" && "$UV" run --frozen "$name" migrate) >>"$RUN_DIR/$name.log" 2>&1 \
            || die "$name migration failed; see $RUN_DIR/$name.log"
        (cd "$REPO_ROOT" && exec setsid "$UV" run --frozen "$name" serve --port "$port") \
            >>"$RUN_DIR/$name.log" 2>&1 &
        echo $! >"$RUN_DIR/$name.pid"
    done
    for name in "${SERVICES[@]}"; do
        port=${PORTS[$name]}
        local deadline=$((SECONDS + 60))
        until ready "$port"; do
            if ! running_pid "$name" >/dev/null; then
                tail -n 30 "$RUN_DIR/$name.log" >&2 || true
                die "$name exited during start-up; see $RUN_DIR/$name.log"
            fi
            [ $SECONDS -lt $deadline ] || die "$name not ready after 60 s; see $RUN_DIR/$name.log"
            sleep 0.5
        done
        printf '%-10s http://127.0.0.1:%s   API docs: http://127.0.0.1:%s/docs   log: %s\n' \
            "$name" "$port" "$port" "$RUN_DIR/$name.log"
    done
}

stop() {
    local name
    for name in "${SERVICES[@]}" standins; do
        stop_process "$name"
    done
}

status() {
    local name ok=0
    for name in "${SERVICES[@]}"; do
        if ready "${PORTS[$name]}"; then echo "$name: ready"; else echo "$name: not ready"; ok=1; fi
    done
    return $ok
}

case "${1:-}" in
    start) start ;;
    stop) stop ;;
    status) status ;;
    *) die "usage: services.sh {start|stop|status}" ;;
esac
