#!/usr/bin/env bash
# Make this machine able to build, test and run the project:
#   - uv (pip-installs uv==0.13.8 when no `uv` is on PATH),
#   - Java 17+ and Maven (the local Kafka broker, see kafka.sh),
#   - Debian's PostgreSQL server binaries (see postgres.sh).
# Missing Debian packages are installed with apt-get when running as root (one
# `apt-get update`, only if something is missing); otherwise the script says what to install.
#
# Messages go to stderr; stdout is a single line, the absolute path of the uv executable, so
# that a Makefile can do:   UV := $(shell deploy/local/bootstrap.sh)
#
# environment: UV_VERSION (0.13.8) — the version installed when uv is missing.
set -euo pipefail

COMPONENT=bootstrap
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

UV_VERSION=${UV_VERSION:-0.13.8}

# uv_path — absolute path of a working uv: PATH first, then the one inside the `uv` Python
# package (pip may put its script in a directory that is not on PATH, e.g. ~/.local/bin).
uv_path() {
    local path
    if path=$(command -v uv 2>/dev/null) && "$path" --version >/dev/null 2>&1; then
        printf '%s\n' "$path"
        return 0
    fi
    path=$(python3 -c 'import uv; print(uv.find_uv_bin())' 2>/dev/null) || return 1
    [ -x "$path" ] && "$path" --version >/dev/null 2>&1 || return 1
    printf '%s\n' "$path"
}

ensure_uv() {
    UV_BIN=$(uv_path) && return 0
    command -v python3 >/dev/null 2>&1 || die "neither uv nor python3 is installed"
    if ! python3 -m pip --version >/dev/null 2>&1; then
        apt_install python3-pip
    fi
    log "installing uv==$UV_VERSION with pip"
    local pip=(python3 -m pip install --quiet --disable-pip-version-check)
    # Debian's own python3 refuses pip installs (PEP 668 "externally managed"); there,
    # install for this user instead, which does not touch the Debian-managed packages.
    if ! "${pip[@]}" "uv==$UV_VERSION" >&2 2>/dev/null; then
        "${pip[@]}" --user --break-system-packages "uv==$UV_VERSION" >&2 ||
            die "pip could not install uv==$UV_VERSION"
    fi
    UV_BIN=$(uv_path) || die "uv was installed but cannot be found; try: python3 -m uv --version"
    case ":$PATH:" in
        *":$(dirname "$UV_BIN"):"*) ;;
        *) log "uv is in $(dirname "$UV_BIN"), which is not on PATH; use $UV_BIN" ;;
    esac
}

main() {
    # Collect what is missing first, so that apt-get update/install run at most once.
    local missing=()
    find_java >/dev/null || missing+=("$JAVA_APT_PACKAGE")
    command -v mvn >/dev/null 2>&1 || missing+=(maven)
    find_pg_bindir >/dev/null || missing+=(postgresql)
    if [ "${#missing[@]}" -gt 0 ]; then
        apt_install "${missing[@]}"
        find_java >/dev/null || die "no Java $JAVA_MIN_MAJOR+ found after installing $JAVA_APT_PACKAGE"
        command -v mvn >/dev/null 2>&1 || die "mvn not found after installing maven"
        find_pg_bindir >/dev/null || die "PostgreSQL server binaries not found after installing postgresql"
    fi

    ensure_uv
    printf '%s\n' "$UV_BIN"
}

main "$@"
