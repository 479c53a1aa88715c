# shellcheck shell=bash
# Functions shared by the deploy/local scripts. Sourced, never executed.
#
# The sourcing script sets COMPONENT (the prefix of its messages) before sourcing this file.
# Messages go to stderr, so that stdout stays free for machine-readable output
# (`infra.sh env`, the uv path printed by `bootstrap.sh`).

# The variables set here are used by the scripts that source this file.
# shellcheck disable=SC2034

LOCAL_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(cd "$LOCAL_DIR/../.." && pwd)
# Runtime state (configs, data, logs, pid files). `.run/` is git-ignored.
STATE_DIR=${PLATFORM_STATE_DIR:-$REPO_ROOT/.run}
# Downloaded artefacts shared by every checkout of the project (outside the repo).
CACHE_DIR=${PLATFORM_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/booking-platform}

: "${COMPONENT:=local}"

log() { printf '%s: %s\n' "$COMPONENT" "$*" >&2; }
die() {
    printf '%s: error: %s\n' "$COMPONENT" "$*" >&2
    exit 1
}

# usage — print the calling script's header comment (its usage text) and exit 2.
usage() {
    sed -n '2,/^set -euo/{/^#/s/^# \{0,1\}//p}' "$0" >&2
    exit 2
}

is_root() { [ "$(id -u)" -eq 0 ]; }

# ---------------------------------------------------------------------------------------------
# Debian packages
# ---------------------------------------------------------------------------------------------

# apt_install PACKAGE... — install Debian packages (root only), or die saying what to install.
#
# Several scripts may run concurrently (infra.sh starts Kafka and PostgreSQL in parallel), so
# the apt calls are serialised with a lock file; `apt-get update` runs only when the package
# lists are missing or older than an hour, i.e. at most once per run.
apt_install() {
    if ! is_root; then
        die "missing: $*. Install with: sudo apt-get install $*"
    fi
    command -v apt-get >/dev/null 2>&1 || die "missing: $* (and apt-get is not available to install it)"
    log "installing Debian packages: $*"
    (
        if command -v flock >/dev/null 2>&1; then
            exec 9>"${TMPDIR:-/tmp}/booking-platform-apt.lock"
            flock 9
        fi
        export DEBIAN_FRONTEND=noninteractive
        # Wait for a dpkg lock held by someone else instead of failing right away.
        local apt_opts=(-q -o DPkg::Lock::Timeout=300)
        if [ -z "$(find /var/lib/apt/lists -maxdepth 1 -name '*_Packages*' -mmin -60 2>/dev/null | head -n 1)" ]; then
            apt-get "${apt_opts[@]}" update >&2
        fi
        apt-get "${apt_opts[@]}" install -y --no-install-recommends "$@" >&2
    ) || die "apt-get install $* failed"
}

# ---------------------------------------------------------------------------------------------
# Java and Maven (Kafka)
# ---------------------------------------------------------------------------------------------

JAVA_MIN_MAJOR=17
JAVA_APT_PACKAGE=openjdk-17-jre-headless

# java_major JAVA — major version of a java binary ("1.8.0_412" -> 8, "17.0.15" -> 17).
java_major() {
    local v
    v=$("$1" -version 2>&1 | awk -F'"' '/version/ { print $2; exit }')
    v=${v#1.}
    v=${v%%[!0-9]*}
    printf '%s\n' "${v:-0}"
}

# find_java — print the path of a java >= 17: $JAVA_HOME, then PATH, then /usr/lib/jvm.
find_java() {
    local candidate
    for candidate in ${JAVA_HOME:+"$JAVA_HOME/bin/java"} "$(command -v java 2>/dev/null || true)" /usr/lib/jvm/*/bin/java; do
        if [ -z "$candidate" ] || [ ! -x "$candidate" ]; then
            continue
        fi
        if [ "$(java_major "$candidate")" -ge "$JAVA_MIN_MAJOR" ]; then
            printf '%s\n' "$candidate"
            return 0
        fi
    done
    return 1
}

# ensure_java — set JAVA_BIN to a java >= 17, installing one if needed (root).
ensure_java() {
    JAVA_BIN=$(find_java) && return 0
    apt_install "$JAVA_APT_PACKAGE"
    JAVA_BIN=$(find_java) || die "no Java $JAVA_MIN_MAJOR+ found even after installing $JAVA_APT_PACKAGE"
}

ensure_mvn() {
    command -v mvn >/dev/null 2>&1 && return 0
    apt_install maven
    command -v mvn >/dev/null 2>&1 || die "mvn not found even after installing maven"
}

# ---------------------------------------------------------------------------------------------
# PostgreSQL server binaries
# ---------------------------------------------------------------------------------------------

# find_pg_bindir — print the directory holding initdb/pg_ctl/postgres: `pg_config --bindir`
# first, else the highest version under /usr/lib/postgresql (Debian's layout).
find_pg_bindir() {
    local dir
    if command -v pg_config >/dev/null 2>&1; then
        dir=$(pg_config --bindir 2>/dev/null || true)
        if [ -n "$dir" ] && [ -x "$dir/initdb" ] && [ -x "$dir/pg_ctl" ] && [ -x "$dir/postgres" ]; then
            printf '%s\n' "$dir"
            return 0
        fi
    fi
    while IFS= read -r dir; do
        if [ -x "$dir/initdb" ] && [ -x "$dir/pg_ctl" ] && [ -x "$dir/postgres" ]; then
            printf '%s\n' "$dir"
            return 0
        fi
    done < <(printf '%s\n' /usr/lib/postgresql/*/bin | sort -V -r)
    return 1
}

# ensure_pg_server — set PG_BINDIR, installing Debian's `postgresql` if needed (root).
ensure_pg_server() {
    PG_BINDIR=$(find_pg_bindir) && return 0
    apt_install postgresql
    PG_BINDIR=$(find_pg_bindir) || die "PostgreSQL server binaries not found even after installing postgresql"
}

# hold_lock FILE — serialise concurrent runs of the same command (two `make` targets calling
# `up` at once) until the script exits. The lock is fd 7: long-lived children (the broker,
# the postmaster) must be started with `7>&-` so they do not keep it.
hold_lock() {
    command -v flock >/dev/null 2>&1 || return 0
    exec 7>"$1"
    flock 7
}

# ---------------------------------------------------------------------------------------------
# Network
# ---------------------------------------------------------------------------------------------

# port_open HOST PORT — true if something accepts TCP connections there.
port_open() {
    # shellcheck disable=SC2016 # $0/$1 are expanded by the inner bash
    timeout 2 bash -c 'exec 3<>"/dev/tcp/$0/$1"' "$1" "$2" 2>/dev/null
}

# is_local_host HOST — true for the loopback names a private server can listen on.
is_local_host() {
    case "$1" in
        127.0.0.1 | localhost | ::1) return 0 ;;
        *) return 1 ;;
    esac
}

# ---------------------------------------------------------------------------------------------
# Whose infrastructure is this?
# ---------------------------------------------------------------------------------------------

# mark_state_dir DIR — record in DIR which checkout (and which of its state directories) keeps
# its server there, so that another checkout that finds the server running can say whose it is.
mark_state_dir() {
    mkdir -p "$1" && printf '%s\n%s\n' "$REPO_ROOT" "$STATE_DIR" >"$1/checkout" 2>/dev/null || true
}

# listener_pid PORT — the pid of the process listening on PORT on this machine (empty if
# unknown: no `ss`, or the process belongs to another user).
listener_pid() {
    command -v ss >/dev/null 2>&1 || return 0
    ss -ltnpH "sport = :$1" 2>/dev/null | sed -n 's/.*pid=\([0-9]*\).*/\1/p' | head -n 1
}

# owner_of DIR — "CHECKOUT<TAB>STATE_DIR" of the server whose files are in DIR: from the
# marker mark_state_dir left there, or DIR itself when it is a checkout's default `.run`
# (or a directory in one); empty when unknown.
owner_of() {
    local checkout="" state=""
    if [ -r "$1/checkout" ]; then
        checkout=$(sed -n 1p "$1/checkout")
        state=$(sed -n 2p "$1/checkout")
    elif [ "$(basename "$1")" = .run ]; then
        checkout=$(dirname "$1") state=$1
    elif [ "$(basename "$(dirname "$1")")" = .run ]; then
        state=$(dirname "$1") checkout=$(dirname "$state")
    fi
    [ -n "$checkout" ] && printf '%s\t%s\n' "$checkout" "${state:-$checkout/.run}"
    return 0
}

# describe_owner "CHECKOUT<TAB>STATE_DIR" — "the checkout in X" (and its state directory when
# that is not X/.run).
describe_owner() {
    local checkout=${1%%$'\t'*} state=${1#*$'\t'}
    if [ "$state" = "$checkout/.run" ]; then
        printf 'the checkout in %s' "$checkout"
    else
        printf 'the checkout in %s, state in %s' "$checkout" "$state"
    fi
}

# stop_command_of "CHECKOUT<TAB>STATE_DIR" — the command that stops that checkout's servers.
stop_command_of() {
    local checkout=${1%%$'\t'*} state=${1#*$'\t'}
    if [ "$state" = "$checkout/.run" ]; then
        printf "cd %s && make down" "$checkout"
    else
        printf "cd %s && PLATFORM_STATE_DIR=%s make down" "$checkout" "$state"
    fi
}

# foreign_notice WHAT HOST:PORT OWNER DETAIL — the warning printed when this checkout finds
# WHAT (a broker, a server) it did not start: whose it is (OWNER as owner_of prints it, or
# empty: unknown, then DETAIL says what is known) and how to get a clean slate.
foreign_notice() {
    local what=$1 address=$2 owner=$3 detail=$4 whose stop
    if [ -n "$owner" ]; then
        whose=$(describe_owner "$owner")
        stop="stop it with '$(stop_command_of "$owner")'"
    else
        whose=$detail
        stop="stop it"
    fi
    log "WARNING: $what this checkout did not start answers at $address ($whose); using it as it is."
    log "  It keeps what earlier runs left there: consumer groups resume where they stopped, and an old backlog holds new events back ('make status' shows how far behind each group is)."
    log "  For a clean slate: $stop (or 'make reset' there, which also deletes its data), then 'make up' here; or leave it and give this checkout other ports (KAFKA_PORT, KAFKA_CONTROLLER_PORT, PG_PORT)."
}
