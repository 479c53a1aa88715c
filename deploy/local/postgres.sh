#!/usr/bin/env bash
# PostgreSQL for local development and CI, without Docker.
#
# usage: postgres.sh {up|down|status|logs [-f]|reset}
#   up      make sure a server answers at $PG_HOST:$PG_PORT with $PG_USER/$PG_PASSWORD and that
#           the databases booking, timeslots and reminders exist. A server that already
#           answers with these credentials is used as is; otherwise a private cluster is
#           created (once) and started with Debian's PostgreSQL server binaries.
#   down    stop the private cluster (only one this script started; never another server)
#   status  exit 0 when the server answers a `SELECT 1` with the credentials
#   logs    print the end of the private cluster's log (-f to follow)
#   reset   down, then delete the private cluster (all its data); the next `up` recreates it
#
# environment (defaults):
#   PG_HOST=127.0.0.1  PG_PORT=55432  PG_USER=platform  PG_PASSWORD=platform
#   PG_FAST=0            1: fsync, synchronous_commit and full_page_writes off. Faster tests,
#                        but a crash of the machine can corrupt the cluster: throw-away data only.
#   PG_START_TIMEOUT=60  seconds to wait for the server to be ready
#   PLATFORM_STATE_DIR=<repo>/.run   the cluster lives in $PLATFORM_STATE_DIR/postgres
set -euo pipefail

COMPONENT=postgres
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

PG_HOST=${PG_HOST:-127.0.0.1}
PG_PORT=${PG_PORT:-55432}
PG_USER=${PG_USER:-platform}
PG_PASSWORD=${PG_PASSWORD:-platform}
PG_FAST=${PG_FAST:-0}
PG_START_TIMEOUT=${PG_START_TIMEOUT:-60}
PG_DATABASES=(booking timeslots reminders)

PG_STATE=$STATE_DIR/postgres
# Where the cluster actually lives (see choose_cluster_base); written when it is created.
PG_LOCATION_FILE=$PG_STATE/cluster-location
# The postgres OS user owns the cluster when the scripts run as root.
PG_OS_USER=postgres

# ---------------------------------------------------------------------------------------------
# Paths of the private cluster
# ---------------------------------------------------------------------------------------------

# cluster_base — directory holding data/, socket/ and postgres.log of the private cluster.
cluster_base() {
    if [ -s "$PG_LOCATION_FILE" ]; then
        cat "$PG_LOCATION_FILE"
    else
        printf '%s\n' "$PG_STATE"
    fi
}

set_cluster_paths() {
    PG_BASE=$(cluster_base)
    PG_DATA=$PG_BASE/data
    PG_SOCKET_DIR=$PG_BASE/socket
    PG_LOG=$PG_BASE/postgres.log
}

# as_owner CMD... — run a command as the cluster's owner. PostgreSQL refuses to run as root,
# so root delegates to the postgres OS user. `cd /` avoids "could not change directory"
# warnings when the caller's cwd is not readable by that user.
as_owner() {
    if is_root; then
        (cd / && runuser -u "$PG_OS_USER" -- "$@")
    else
        "$@"
    fi
}

# owner_can_use DIR — true if the cluster owner can create files in DIR.
owner_can_use() {
    as_owner test -w "$1" -a -x "$1" 2>/dev/null
}

# choose_cluster_base — pick (and remember) where a new cluster goes.
#
# Normally $PLATFORM_STATE_DIR/postgres. When running as root, the postgres OS user must be
# able to traverse every parent directory of that path; a checkout under /root (mode 700),
# for instance, is not. Then the cluster goes to /var/tmp/booking-platform-<uid>-<hash of the
# state dir>/postgres instead (one per checkout; /var/tmp survives reboots), and
# $PLATFORM_STATE_DIR/postgres/cluster-location points there.
choose_cluster_base() {
    local base=$PG_STATE
    mkdir -p "$base"
    if is_root; then
        id "$PG_OS_USER" >/dev/null 2>&1 || die "the '$PG_OS_USER' OS user does not exist (it comes with Debian's postgresql package)"
        chown "$PG_OS_USER:" "$base"
        if ! owner_can_use "$base"; then
            local hash
            hash=$(printf '%s' "$STATE_DIR" | cksum | cut -d' ' -f1)
            base=/var/tmp/booking-platform-$(id -u)-$hash/postgres
            log "the $PG_OS_USER OS user cannot reach $PG_STATE (a parent directory is not traversable); putting the cluster in $base"
            mkdir -p "$base"
            chmod 755 "$(dirname "$base")"
            chown "$PG_OS_USER:" "$base"
            owner_can_use "$base" || die "the $PG_OS_USER OS user cannot write $base either"
        fi
    fi
    printf '%s\n' "$base" >"$PG_LOCATION_FILE"
    set_cluster_paths
}

# cluster_running — true if the private cluster's postmaster is running (whatever its port).
cluster_running() {
    [ -f "$PG_DATA/postmaster.pid" ] || return 1
    PG_BINDIR=${PG_BINDIR:-$(find_pg_bindir)} || return 1
    as_owner "$PG_BINDIR/pg_ctl" -D "$PG_DATA" status >/dev/null 2>&1
}

# cluster_serves_here — true if the private cluster runs and listens on $PG_PORT
# (line 4 of postmaster.pid is the port).
cluster_serves_here() {
    cluster_running && [ "$(sed -n 4p "$PG_DATA/postmaster.pid" 2>/dev/null)" = "$PG_PORT" ]
}

# ---------------------------------------------------------------------------------------------
# Client side
# ---------------------------------------------------------------------------------------------

# ensure_client — set PSQL and PG_ISREADY. Installing the `postgresql` package (rather than
# only the client) because the next step usually needs the server too.
ensure_client() {
    local bindir
    bindir=$(find_pg_bindir 2>/dev/null || true)
    PSQL=$(command -v psql 2>/dev/null || true)
    [ -n "$PSQL" ] || { [ -n "$bindir" ] && PSQL=$bindir/psql; } || true
    if [ -z "$PSQL" ] || [ ! -x "$PSQL" ]; then
        apt_install postgresql
        bindir=$(find_pg_bindir) || die "PostgreSQL binaries not found even after installing postgresql"
        PSQL=$(command -v psql 2>/dev/null || printf '%s\n' "$bindir/psql")
    fi
    PG_ISREADY=$(command -v pg_isready 2>/dev/null || printf '%s\n' "${bindir:-/nonexistent}/pg_isready")
}

# foreign_data — the data directory of the server answering at PG_PORT (empty if unknown).
foreign_data() {
    pg_query 'SHOW data_directory' 2>/dev/null || true
}

# foreign_owner — "CHECKOUT<TAB>STATE_DIR" of the server answering at PG_PORT: from the marker
# in its cluster directory (the parent of its data directory), empty if unknown.
foreign_owner() {
    local data
    data=$(foreign_data)
    [ -n "$data" ] && owner_of "$(dirname "$data")"
    return 0
}

# foreign_detail — what is known of the server at PG_PORT when its owner is not.
foreign_detail() {
    local data
    data=$(foreign_data)
    if [ -n "$data" ]; then
        printf 'data directory %s' "$data"
    else
        printf 'pid %s' "$(listener_pid "$PG_PORT")"
    fi
}

# foreign_whose — whose the server at PG_PORT is, in words.
foreign_whose() {
    local owner
    owner=$(foreign_owner)
    if [ -n "$owner" ]; then describe_owner "$owner"; else foreign_detail; fi
}

# pg_query SQL [DATABASE] — run SQL as $PG_USER over TCP; prints unaligned tuples only.
pg_query() {
    PGPASSWORD=$PG_PASSWORD PGCONNECT_TIMEOUT=3 "$PSQL" -X -q -A -t -v ON_ERROR_STOP=1 \
        -h "$PG_HOST" -p "$PG_PORT" -U "$PG_USER" -d "${2:-postgres}" -c "$1"
}

credentials_work() {
    [ "$(pg_query 'SELECT 1' 2>/dev/null)" = 1 ]
}

# something_listens — true if any server (PostgreSQL or not) holds $PG_HOST:$PG_PORT.
something_listens() {
    if [ -x "$PG_ISREADY" ]; then
        local rc=0
        "$PG_ISREADY" -q -h "$PG_HOST" -p "$PG_PORT" -t 3 || rc=$?
        # 0: accepting connections, 1: rejecting (starting up, shutting down)
        [ "$rc" -le 1 ] && return 0
    fi
    port_open "$PG_HOST" "$PG_PORT"
}

# ensure_databases — create the service databases when missing (idempotent, race-tolerant).
ensure_databases() {
    local can_create db
    can_create=$(pg_query "SELECT rolsuper OR rolcreatedb FROM pg_roles WHERE rolname = current_user")
    [ "$can_create" = t ] || die "role $PG_USER may not CREATE DATABASE (the tests create throw-away databases); run: ALTER ROLE \"$PG_USER\" CREATEDB"
    for db in "${PG_DATABASES[@]}"; do
        if [ "$(pg_query "SELECT 1 FROM pg_database WHERE datname = '$db'")" != 1 ]; then
            # A concurrent `up` may win the race: only fail if the database is still missing.
            if pg_query "CREATE DATABASE \"$db\"" 2>/dev/null; then
                log "created database $db"
            elif [ "$(pg_query "SELECT 1 FROM pg_database WHERE datname = '$db'")" != 1 ]; then
                die "could not create database $db"
            fi
        fi
    done
}

# ---------------------------------------------------------------------------------------------
# Private cluster
# ---------------------------------------------------------------------------------------------

init_cluster_once() {
    [ -f "$PG_DATA/PG_VERSION" ] && return 0
    log "creating a cluster in $PG_DATA (superuser $PG_USER)"
    local pwfile=$PG_BASE/.initdb-password
    rm -rf "$PG_DATA"
    (umask 077 && printf '%s\n' "$PG_PASSWORD" >"$pwfile")
    is_root && chown "$PG_OS_USER:" "$pwfile"
    # scram-sha-256 for both TCP and the unix socket: the superuser is $PG_USER, not the OS
    # user, so peer authentication would be useless. Locale C: fast, and identical everywhere.
    local rc=0
    as_owner "$PG_BINDIR/initdb" -D "$PG_DATA" -U "$PG_USER" --pwfile="$pwfile" \
        --auth=scram-sha-256 --encoding=UTF8 --locale=C >"$PG_BASE/initdb.log" 2>&1 || rc=$?
    rm -f "$pwfile"
    if [ "$rc" -ne 0 ]; then
        cat "$PG_BASE/initdb.log" >&2
        rm -rf "$PG_DATA"
        die "initdb failed"
    fi
    # Our settings live in a separate file, regenerated by every `up` (see write_config).
    printf "\n# Settings of deploy/local/postgres.sh\ninclude_if_exists = 'booking-platform.conf'\n" |
        as_owner tee -a "$PG_DATA/postgresql.conf" >/dev/null
}

# sql_quote STRING — quote a value for postgresql.conf.
sql_quote() { printf "'%s'" "${1//\'/\'\'}"; }

# write_config — regenerate booking-platform.conf; returns 0 if it changed.
write_config() {
    local conf=$PG_DATA/booking-platform.conf new socket_dirs
    # A unix socket path is limited to ~107 bytes; with a very deep state dir, serve TCP only.
    socket_dirs=$PG_SOCKET_DIR
    if [ $((${#PG_SOCKET_DIR} + 20)) -gt 100 ]; then
        socket_dirs=
    else
        as_owner mkdir -p "$PG_SOCKET_DIR"
    fi
    new=$(
        echo "# Generated by deploy/local/postgres.sh on every \`up\`; edits are overwritten."
        echo "listen_addresses = $(sql_quote "$PG_HOST")"
        echo "port = $PG_PORT"
        echo "unix_socket_directories = $(sql_quote "$socket_dirs")"
        echo "max_connections = 300"
        if [ "$PG_FAST" = 1 ]; then
            echo "# PG_FAST=1: durability traded for speed (throw-away data only)."
            echo "fsync = off"
            echo "synchronous_commit = off"
            echo "full_page_writes = off"
        fi
    )
    if [ -f "$conf" ] && [ "$(cat "$conf")" = "$new" ]; then
        return 1
    fi
    printf '%s\n' "$new" | as_owner tee "$conf" >/dev/null
    return 0
}

start_cluster() {
    # Keep the previous run's log for post-mortems.
    [ -f "$PG_LOG" ] && as_owner mv -f "$PG_LOG" "$PG_LOG.1"
    log "starting the cluster on $PG_HOST:$PG_PORT"
    if ! as_owner "$PG_BINDIR/pg_ctl" -D "$PG_DATA" -l "$PG_LOG" -w -t "$PG_START_TIMEOUT" -s start 7>&-; then
        tail -n 30 "$PG_LOG" >&2 || true
        die "the cluster did not start (log: $PG_LOG)"
    fi
}

stop_cluster() {
    as_owner "$PG_BINDIR/pg_ctl" -D "$PG_DATA" -m fast -w -t 60 -s stop
}

wait_ready() {
    local deadline=$((SECONDS + PG_START_TIMEOUT))
    until credentials_work; do
        if [ "$SECONDS" -ge "$deadline" ]; then
            tail -n 30 "$PG_LOG" >&2 || true
            die "the server does not accept $PG_USER at $PG_HOST:$PG_PORT after ${PG_START_TIMEOUT}s (log: $PG_LOG)"
        fi
        sleep 0.3
    done
}

# ---------------------------------------------------------------------------------------------

cmd_up() {
    local started=$SECONDS
    mkdir -p "$PG_STATE"
    hold_lock "$PG_STATE/.lock"
    set_cluster_paths
    ensure_client

    if credentials_work; then
        if cluster_serves_here; then
            if write_config; then
                # fsync & co. take effect on reload; listen/port changes are not possible
                # here (the server answers at the configured address already).
                as_owner "$PG_BINDIR/pg_ctl" -D "$PG_DATA" -s reload
                log "configuration reloaded"
            fi
            ensure_databases
            log "already running at $PG_HOST:$PG_PORT ($PG_DATA)"
        else
            ensure_databases
            foreign_notice "a PostgreSQL server" "$PG_HOST:$PG_PORT" "$(foreign_owner)" "$(foreign_detail)"
        fi
        return 0
    fi

    if cluster_serves_here; then
        die "the private cluster in $PG_DATA rejects $PG_USER/\$PG_PASSWORD at $PG_HOST:$PG_PORT: it was created with other credentials. Use those, or run '$0 reset' (deletes its data)"
    elif something_listens; then
        die "another server holds $PG_HOST:$PG_PORT and rejects $PG_USER/\$PG_PASSWORD (or is not PostgreSQL). Stop it, set PG_PORT to a free port, or set PG_USER/PG_PASSWORD to its credentials"
    elif cluster_running; then
        # PG_PORT (or PG_HOST) changed since the cluster was started.
        log "the private cluster runs on another port; restarting it on $PG_HOST:$PG_PORT"
        stop_cluster
    fi
    is_local_host "$PG_HOST" ||
        die "no PostgreSQL answers at $PG_HOST:$PG_PORT, and a private cluster can only listen on 127.0.0.1, localhost or ::1"

    ensure_pg_server
    [ -f "$PG_DATA/PG_VERSION" ] || choose_cluster_base
    init_cluster_once
    mark_state_dir "$PG_BASE"
    write_config || true
    start_cluster
    wait_ready
    ensure_databases
    log "ready at $PG_HOST:$PG_PORT (user $PG_USER, databases ${PG_DATABASES[*]}; started in $((SECONDS - started))s)"
}

cmd_down() {
    set_cluster_paths
    if ! cluster_running; then
        local bindir
        PSQL=$(command -v psql 2>/dev/null || true) # never installs anything on the way down
        if [ -z "$PSQL" ]; then
            bindir=$(find_pg_bindir 2>/dev/null || true)
            [ -n "$bindir" ] && PSQL=$bindir/psql
        fi
        if [ -n "$PSQL" ] && [ -x "$PSQL" ] && credentials_work; then
            log "left running: the server at $PG_HOST:$PG_PORT is not this checkout's ($(foreign_whose)); stop it from there"
        else
            log "not running (no cluster started by this checkout)"
        fi
        return 0
    fi
    log "stopping the cluster ($PG_DATA)"
    stop_cluster
    log "stopped"
}

cmd_status() {
    set_cluster_paths
    PSQL=$(command -v psql 2>/dev/null || true)
    if [ -z "$PSQL" ]; then
        local bindir
        bindir=$(find_pg_bindir 2>/dev/null || true)
        [ -n "$bindir" ] && PSQL=$bindir/psql
    fi
    if [ -z "$PSQL" ]; then
        log "psql is not installed; checking the port only"
        if port_open "$PG_HOST" "$PG_PORT"; then
            log "something listens at $PG_HOST:$PG_PORT"
            return 0
        fi
        log "not running"
        return 1
    fi
    if credentials_work; then
        if cluster_serves_here; then
            log "running at $PG_HOST:$PG_PORT (this checkout's cluster in $PG_DATA)"
        else
            log "running at $PG_HOST:$PG_PORT, but not this checkout's: $(foreign_whose)"
        fi
        return 0
    fi
    if port_open "$PG_HOST" "$PG_PORT"; then
        log "something listens at $PG_HOST:$PG_PORT but does not accept $PG_USER/\$PG_PASSWORD"
    else
        log "not running"
    fi
    return 1
}

cmd_logs() {
    set_cluster_paths
    [ -f "$PG_LOG" ] || die "no log yet ($PG_LOG)"
    if [ "${1:-}" = -f ]; then
        exec tail -n 100 -F "$PG_LOG"
    fi
    tail -n "${LOG_LINES:-100}" "$PG_LOG"
}

cmd_reset() {
    cmd_down
    set_cluster_paths
    log "deleting the private cluster ($PG_BASE)"
    if [ "$PG_BASE" != "$PG_STATE" ]; then
        rm -rf "$PG_BASE"
        rmdir "$(dirname "$PG_BASE")" 2>/dev/null || true
    else
        rm -rf "$PG_DATA" "$PG_SOCKET_DIR" "$PG_LOG" "$PG_LOG.1" "$PG_BASE/initdb.log"
    fi
    rm -f "$PG_LOCATION_FILE"
}

case "${1:-}" in
    up) cmd_up ;;
    down) cmd_down ;;
    status) cmd_status ;;
    logs) cmd_logs "${2:-}" ;;
    reset) cmd_reset ;;
    *) usage ;;
esac
