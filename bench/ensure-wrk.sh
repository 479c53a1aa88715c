#!/usr/bin/env bash
# Make sure wrk, the HTTP load generator of `make bench-booking`, is installed: Debian's
# `wrk` package through apt-get when running as root (with one `apt-get update` first when
# the package lists are stale or do not know it); otherwise say what to install.
# Messages go to stderr, as in deploy/local.
set -euo pipefail

COMPONENT=bench
# shellcheck source-path=SCRIPTDIR source=../deploy/local/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/../deploy/local/lib.sh"

command -v wrk >/dev/null 2>&1 && exit 0
if is_root && command -v apt-cache >/dev/null 2>&1 && ! apt-cache show wrk >/dev/null 2>&1; then
    log "the package lists do not know wrk; running apt-get update"
    apt-get -q -o DPkg::Lock::Timeout=300 update >&2 || die "apt-get update failed"
fi
apt_install wrk
command -v wrk >/dev/null 2>&1 || die "wrk not found after installing the wrk package"
