#!/usr/bin/env bash
# Apache Kafka 4.3.1 for local development and CI, without Docker: a single KRaft node
# (broker + controller in one JVM) listening on 127.0.0.1 only.
#
# usage: kafka.sh {up|down|status|logs [-f]|reset}
#   up      start the broker (idempotent: does nothing when it already answers)
#   down    stop the broker this script started (TERM, then KILL after 20 s)
#   status  exit 0 when a broker answers on 127.0.0.1:$KAFKA_PORT
#   logs    print the end of the broker log (-f to follow)
#   reset   down, then delete the broker's data (topics, offsets); the next `up` re-formats
#
# environment (defaults):
#   KAFKA_PORT=9092              client (PLAINTEXT) listener
#   KAFKA_CONTROLLER_PORT=9093   KRaft controller listener
#   KAFKA_HEAP_OPTS=-Xmx512m     JVM heap flags
#   KAFKA_OPTS=                  extra JVM flags
#   KAFKA_START_TIMEOUT=60       seconds to wait for the broker to be ready
#   PLATFORM_CACHE_DIR=${XDG_CACHE_HOME:-$HOME/.cache}/booking-platform   jar cache
#   PLATFORM_STATE_DIR=<repo>/.run                                        config, data, log, pid
#
# A broker that lets in only clients with TLS and a SCRAM-SHA-512 login, as production runs
# (the tests start one of their own this way, on other ports with another state directory):
#   KAFKA_LISTENER_SECURITY=PLAINTEXT   or SASL_SSL: the client listener on KAFKA_PORT takes TLS
#                                       and SASL SCRAM-SHA-512 only (the controller listener
#                                       stays PLAINTEXT, on 127.0.0.1)
#   KAFKA_TLS_KEYSTORE_PEM=             SASL_SSL: PEM file holding the broker's unencrypted PKCS#8
#                                       private key and its certificate chain (for 127.0.0.1)
#   KAFKA_TLS_CA_PEM=                   SASL_SSL: PEM file of the authority that signed it
#   KAFKA_SCRAM_USERNAME=platform       SASL_SSL: the SCRAM user, created when the storage is
#   KAFKA_SCRAM_PASSWORD=               formatted (the first `up` of a state directory only);
#                                       the broker logs in to itself with it too
#
# Only Maven Central is reachable from CI (no apache.org tarballs), so instead of the Kafka
# distribution the script generates a pom depending on org.apache.kafka:kafka_2.13 and lets
# Maven copy its runtime classpath into a cache directory outside the repo. The broker is
# then started with `java -cp 'lib/*' kafka.Kafka server.properties`, which is all the
# distribution's kafka-server-start.sh does.
set -euo pipefail

COMPONENT=kafka
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

KAFKA_VERSION=4.3.1
# Declared explicitly: otherwise Maven resolves slf4j-api 1.7.36 through a transitive
# dependency and ignores the slf4j 2 binding, leaving the broker without any log output.
SLF4J_VERSION=2.0.17

KAFKA_HOST=127.0.0.1
KAFKA_PORT=${KAFKA_PORT:-9092}
KAFKA_CONTROLLER_PORT=${KAFKA_CONTROLLER_PORT:-9093}
KAFKA_HEAP_OPTS=${KAFKA_HEAP_OPTS:--Xmx512m}
KAFKA_OPTS=${KAFKA_OPTS:-}
KAFKA_START_TIMEOUT=${KAFKA_START_TIMEOUT:-60}
KAFKA_LISTENER_SECURITY=${KAFKA_LISTENER_SECURITY:-PLAINTEXT}
KAFKA_TLS_KEYSTORE_PEM=${KAFKA_TLS_KEYSTORE_PEM:-}
KAFKA_TLS_CA_PEM=${KAFKA_TLS_CA_PEM:-}
KAFKA_SCRAM_USERNAME=${KAFKA_SCRAM_USERNAME:-platform}
KAFKA_SCRAM_PASSWORD=${KAFKA_SCRAM_PASSWORD:-}
KAFKA_STOP_TIMEOUT=20

KAFKA_CACHE=$CACHE_DIR/kafka-$KAFKA_VERSION
KAFKA_LIB=$KAFKA_CACHE/lib
KAFKA_LIB_MARKER=$KAFKA_CACHE/.complete # written only after a successful copy

KAFKA_STATE=$STATE_DIR/kafka
KAFKA_CONF=$KAFKA_STATE/server.properties
KAFKA_DATA=$KAFKA_STATE/data
KAFKA_LOG=$KAFKA_STATE/kafka.log
KAFKA_PIDFILE=$KAFKA_STATE/kafka.pid
KAFKA_CLUSTER_ID_FILE=$KAFKA_STATE/cluster.id

# Line the broker logs once every listener accepts connections.
STARTED_LINE='Kafka Server started'

# ---------------------------------------------------------------------------------------------

# kafka_answers — true if a Kafka broker answers on $KAFKA_HOST:$KAFKA_PORT.
#
# Sends a real ApiVersions (v0) request over bash's /dev/tcp and checks that the response
# carries our correlation id, so a port held by some other program does not count. Starting
# a JVM client for this would cost a couple of seconds per check.
kafka_answers() {
    local reply
    # shellcheck disable=SC2016 # $0/$1 are expanded by the inner bash
    reply=$(timeout 3 bash -c '
        exec 3<>"/dev/tcp/$0/$1" || exit 1
        # size=10 | api_key=18 (ApiVersions) | api_version=0 | correlation_id=1 | client_id=null
        printf "\x00\x00\x00\x0a\x00\x12\x00\x00\x00\x00\x00\x01\xff\xff" >&3
        # response: size (4 bytes) | correlation_id (4) | error_code (2)
        head -c 10 <&3 | od -An -tx1 | tr -d " \n"
    ' "$KAFKA_HOST" "$KAFKA_PORT" 2>/dev/null) || return 1
    [ "${reply:8:12}" = 000000010000 ]
}

# broker_answers — true if the client listener answers: an ApiVersions request on PLAINTEXT;
# on SASL_SSL (bash has no TLS client) a TCP connection, checked once the broker logged its start.
broker_answers() {
    if [ "$KAFKA_LISTENER_SECURITY" = SASL_SSL ]; then
        port_open "$KAFKA_HOST" "$KAFKA_PORT"
    else
        kafka_answers
    fi
}

# check_security_settings — die, saying what is missing, unless the SASL_SSL settings are whole.
check_security_settings() {
    case "$KAFKA_LISTENER_SECURITY" in
        PLAINTEXT) return 0 ;;
        SASL_SSL) ;;
        *) die "KAFKA_LISTENER_SECURITY must be PLAINTEXT or SASL_SSL, not $KAFKA_LISTENER_SECURITY" ;;
    esac
    [ -r "$KAFKA_TLS_KEYSTORE_PEM" ] || die "SASL_SSL needs KAFKA_TLS_KEYSTORE_PEM (a readable PEM file)"
    [ -r "$KAFKA_TLS_CA_PEM" ] || die "SASL_SSL needs KAFKA_TLS_CA_PEM (a readable PEM file)"
    [ -n "$KAFKA_SCRAM_PASSWORD" ] || die "SASL_SSL needs KAFKA_SCRAM_PASSWORD"
    # The credentials go into a JAAS line and a --add-scram argument: keep them to safe characters.
    local credential
    for credential in "$KAFKA_SCRAM_USERNAME" "$KAFKA_SCRAM_PASSWORD"; do
        [[ $credential =~ ^[A-Za-z0-9._~+/-]+$ ]] ||
            die "KAFKA_SCRAM_USERNAME and KAFKA_SCRAM_PASSWORD may hold letters, digits and ._~+/- only"
    done
}

# our_pid — print the pid of the broker this script started, if it is still running.
our_pid() {
    local pid
    [ -f "$KAFKA_PIDFILE" ] || return 1
    pid=$(cat "$KAFKA_PIDFILE" 2>/dev/null) || return 1
    [[ $pid =~ ^[0-9]+$ ]] || return 1
    kill -0 "$pid" 2>/dev/null || return 1
    # Guard against a recycled pid: the process must be a Kafka broker using our config.
    tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF "kafka.Kafka $KAFKA_CONF" || return 1
    printf '%s\n' "$pid"
}

# resolve_classpath — make sure $KAFKA_LIB holds the broker's runtime jars (Maven, once).
resolve_classpath() {
    [ -f "$KAFKA_LIB_MARKER" ] && [ -d "$KAFKA_LIB" ] && return 0
    ensure_mvn
    mkdir -p "$KAFKA_CACHE"
    (
        # Two concurrent `up`s (two checkouts sharing the cache) must not interleave copies.
        exec 8>"$KAFKA_CACHE/.lock"
        flock 8
        [ -f "$KAFKA_LIB_MARKER" ] && [ -d "$KAFKA_LIB" ] && exit 0

        log "resolving the Kafka $KAFKA_VERSION runtime classpath from Maven Central into $KAFKA_LIB (first run only)"
        cat >"$KAFKA_CACHE/pom.xml" <<EOF
<?xml version="1.0" encoding="UTF-8"?>
<!-- Generated by deploy/local/kafka.sh: the runtime classpath of an Apache Kafka broker. -->
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>local.booking-platform</groupId>
  <artifactId>kafka-runtime</artifactId>
  <version>$KAFKA_VERSION</version>
  <packaging>pom</packaging>
  <dependencies>
    <dependency>
      <groupId>org.apache.kafka</groupId>
      <artifactId>kafka_2.13</artifactId>
      <version>$KAFKA_VERSION</version>
    </dependency>
    <dependency>
      <groupId>org.slf4j</groupId>
      <artifactId>slf4j-api</artifactId>
      <version>$SLF4J_VERSION</version>
    </dependency>
    <dependency>
      <groupId>org.slf4j</groupId>
      <artifactId>slf4j-simple</artifactId>
      <version>$SLF4J_VERSION</version>
    </dependency>
  </dependencies>
</project>
EOF
        local tmp=$KAFKA_CACHE/lib.tmp
        rm -rf "$tmp"
        if ! mvn -q -B -f "$KAFKA_CACHE/pom.xml" dependency:copy-dependencies \
            -DincludeScope=runtime -DoutputDirectory="$tmp" >"$KAFKA_CACHE/mvn.log" 2>&1; then
            tail -n 30 "$KAFKA_CACHE/mvn.log" >&2
            die "mvn could not resolve the Kafka classpath (full output: $KAFKA_CACHE/mvn.log)"
        fi
        [ -f "$tmp/kafka_2.13-$KAFKA_VERSION.jar" ] || die "mvn finished but kafka_2.13-$KAFKA_VERSION.jar is missing from $tmp"
        rm -rf "$KAFKA_LIB"
        mv "$tmp" "$KAFKA_LIB"
        date -u +%Y-%m-%dT%H:%M:%SZ >"$KAFKA_LIB_MARKER"
    ) || exit 1
}

# render_config — the broker configuration for the current environment, on stdout.
render_config() {
    cat <<EOF
# Generated by deploy/local/kafka.sh on every \`up\`; edits are overwritten.
# Single KRaft node: broker and controller in one process, listening on $KAFKA_HOST only.
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@$KAFKA_HOST:$KAFKA_CONTROLLER_PORT
controller.listener.names=CONTROLLER
EOF
    if [ "$KAFKA_LISTENER_SECURITY" = SASL_SSL ]; then
        cat <<EOF
listeners=SASL_SSL://$KAFKA_HOST:$KAFKA_PORT,CONTROLLER://$KAFKA_HOST:$KAFKA_CONTROLLER_PORT
advertised.listeners=SASL_SSL://$KAFKA_HOST:$KAFKA_PORT
listener.security.protocol.map=SASL_SSL:SASL_SSL,CONTROLLER:PLAINTEXT
inter.broker.listener.name=SASL_SSL
# Clients log in with SCRAM-SHA-512 over TLS; the broker's own connections do the same.
sasl.enabled.mechanisms=SCRAM-SHA-512
sasl.mechanism.inter.broker.protocol=SCRAM-SHA-512
listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required username="$KAFKA_SCRAM_USERNAME" password="$KAFKA_SCRAM_PASSWORD";
ssl.keystore.type=PEM
ssl.keystore.location=$KAFKA_TLS_KEYSTORE_PEM
ssl.truststore.type=PEM
ssl.truststore.location=$KAFKA_TLS_CA_PEM
ssl.client.auth=none
EOF
    else
        cat <<EOF
listeners=PLAINTEXT://$KAFKA_HOST:$KAFKA_PORT,CONTROLLER://$KAFKA_HOST:$KAFKA_CONTROLLER_PORT
advertised.listeners=PLAINTEXT://$KAFKA_HOST:$KAFKA_PORT
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
inter.broker.listener.name=PLAINTEXT
EOF
    fi
    cat <<EOF
log.dirs=$KAFKA_DATA
num.partitions=3
# One broker: every internal topic has a single replica. A single partition for the
# consumer offsets topic (default 50) makes the first consumer group of a fresh broker
# join in about a second instead of about five.
offsets.topic.replication.factor=1
offsets.topic.num.partitions=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
# Consumer groups form immediately instead of waiting 3 s for more members (tests).
group.initial.rebalance.delay.ms=0
auto.create.topics.enable=true
EOF
}

# config_changed — true if the running broker's config differs from the current environment
# (KAFKA_PORT or KAFKA_CONTROLLER_PORT changed since it was started).
config_changed() {
    [ "$(cat "$KAFKA_CONF" 2>/dev/null)" != "$(render_config)" ]
}

# format_storage_once — KRaft needs its log directory formatted with a cluster id, once.
format_storage_once() {
    [ -f "$KAFKA_DATA/meta.properties" ] && return 0
    local cluster_id
    if [ -s "$KAFKA_CLUSTER_ID_FILE" ]; then
        cluster_id=$(cat "$KAFKA_CLUSTER_ID_FILE")
    else
        cluster_id=$("$JAVA_BIN" -cp "$KAFKA_LIB/*" kafka.tools.StorageTool random-uuid 2>/dev/null | tail -n 1)
        [ -n "$cluster_id" ] || die "kafka.tools.StorageTool random-uuid failed"
        printf '%s\n' "$cluster_id" >"$KAFKA_CLUSTER_ID_FILE"
    fi
    log "formatting storage in $KAFKA_DATA (cluster id $cluster_id)"
    mkdir -p "$KAFKA_DATA"
    local scram=()
    if [ "$KAFKA_LISTENER_SECURITY" = SASL_SSL ]; then
        # SCRAM credentials live in the cluster metadata; writing them at format time lets the
        # broker (and the first client) log in from its very start.
        scram=(--add-scram "SCRAM-SHA-512=[name=$KAFKA_SCRAM_USERNAME,password=$KAFKA_SCRAM_PASSWORD]")
    fi
    if ! "$JAVA_BIN" -cp "$KAFKA_LIB/*" kafka.tools.StorageTool format \
        -t "$cluster_id" -c "$KAFKA_CONF" "${scram[@]}" >"$KAFKA_STATE/format.log" 2>&1; then
        cat "$KAFKA_STATE/format.log" >&2
        die "formatting the storage failed"
    fi
}

start_broker() {
    local heap_opts extra_opts
    read -r -a heap_opts <<<"$KAFKA_HEAP_OPTS"
    read -r -a extra_opts <<<"$KAFKA_OPTS"

    # Keep the previous run's log for post-mortems; the readiness check greps a fresh one.
    [ -f "$KAFKA_LOG" ] && mv -f "$KAFKA_LOG" "$KAFKA_LOG.1"
    rm -f "$KAFKA_PIDFILE"

    # setsid detaches the broker from the caller's session and process group, so that it
    # outlives the shell (make, a CI step) that started it and ignores that shell's Ctrl-C.
    # The inner bash writes its own pid and then execs java, so the pid file holds the
    # broker's pid whether or not setsid had to fork.
    (
        cd "$KAFKA_STATE"
        # shellcheck disable=SC2016 # $$/$0/$@ are expanded by the inner bash
        setsid bash -c 'echo $$ >"$0"; exec "$@"' "$KAFKA_PIDFILE" \
            "$JAVA_BIN" "${heap_opts[@]}" "${extra_opts[@]}" \
            -Djava.awt.headless=true \
            -XX:+ExitOnOutOfMemoryError \
            -Dorg.slf4j.simpleLogger.showDateTime=true \
            "-Dorg.slf4j.simpleLogger.dateTimeFormat=yyyy-MM-dd HH:mm:ss.SSS" \
            -cp "$KAFKA_LIB/*" kafka.Kafka "$KAFKA_CONF" \
            </dev/null >>"$KAFKA_LOG" 2>&1 7>&- &
    )
    local _
    for _ in $(seq 50); do
        [ -s "$KAFKA_PIDFILE" ] && return 0
        sleep 0.1
    done
    die "the broker process did not start (see $KAFKA_LOG)"
}

# wait_ready PID — until the broker logged its start AND answers an ApiVersions request.
wait_ready() {
    local pid=$1 deadline=$((SECONDS + KAFKA_START_TIMEOUT))
    while [ "$SECONDS" -lt "$deadline" ]; do
        if ! kill -0 "$pid" 2>/dev/null; then
            tail -n 40 "$KAFKA_LOG" >&2 || true
            rm -f "$KAFKA_PIDFILE"
            die "the broker exited during start-up (log: $KAFKA_LOG)"
        fi
        if grep -qF "$STARTED_LINE" "$KAFKA_LOG" 2>/dev/null && broker_answers; then
            return 0
        fi
        sleep 0.3
    done
    tail -n 40 "$KAFKA_LOG" >&2 || true
    log "the broker is not ready after ${KAFKA_START_TIMEOUT}s; stopping it"
    stop_pid "$pid"
    die "the broker did not become ready in ${KAFKA_START_TIMEOUT}s (log: $KAFKA_LOG)"
}

# stop_pid PID — TERM, wait up to $KAFKA_STOP_TIMEOUT s (clean shutdown), then KILL.
stop_pid() {
    local pid=$1 deadline=$((SECONDS + KAFKA_STOP_TIMEOUT))
    kill -TERM "$pid" 2>/dev/null || true
    while kill -0 "$pid" 2>/dev/null; do
        if [ "$SECONDS" -ge "$deadline" ]; then
            log "broker (pid $pid) still running after ${KAFKA_STOP_TIMEOUT}s; sending KILL"
            kill -KILL "$pid" 2>/dev/null || true
            sleep 0.5
            break
        fi
        sleep 0.2
    done
    rm -f "$KAFKA_PIDFILE"
}

# ---------------------------------------------------------------------------------------------

cmd_up() {
    local pid started=$SECONDS
    mkdir -p "$KAFKA_STATE"
    hold_lock "$KAFKA_STATE/.lock"

    if pid=$(our_pid); then
        if config_changed; then
            log "the broker (pid $pid) runs with other ports; restarting it"
            stop_pid "$pid"
        elif broker_answers; then
            log "already running at $KAFKA_HOST:$KAFKA_PORT (pid $pid, this checkout's)"
            return 0
        else
            # Started by a concurrent `up` and still starting: give it the usual time.
            log "broker (pid $pid) is running but not answering yet; waiting"
            wait_ready "$pid"
            log "ready at $KAFKA_HOST:$KAFKA_PORT (pid $pid)"
            return 0
        fi
    fi
    if broker_answers; then
        foreign_notice "a Kafka broker" "$KAFKA_HOST:$KAFKA_PORT" "$(foreign_owner)" "$(foreign_detail)"
        return 0
    fi
    local port
    for port in "$KAFKA_PORT" "$KAFKA_CONTROLLER_PORT"; do
        if port_open "$KAFKA_HOST" "$port"; then
            die "port $KAFKA_HOST:$port is taken by another program; free it or set KAFKA_PORT / KAFKA_CONTROLLER_PORT"
        fi
    done

    check_security_settings
    ensure_java
    resolve_classpath
    (umask 077 && render_config >"$KAFKA_CONF") # it may hold the SCRAM password
    chmod 600 "$KAFKA_CONF"
    format_storage_once
    mark_state_dir "$STATE_DIR"
    start_broker
    pid=$(cat "$KAFKA_PIDFILE")
    wait_ready "$pid"
    log "ready at $KAFKA_HOST:$KAFKA_PORT (pid $pid, started in $((SECONDS - started))s)"
}

# foreign_owner — "CHECKOUT<TAB>STATE_DIR" of the broker answering at KAFKA_PORT (found from
# the server.properties it runs with), empty if unknown.
foreign_owner() {
    local pid conf
    pid=$(listener_pid "$KAFKA_PORT")
    [ -n "$pid" ] || return 0
    conf=$(tr '\0' '\n' <"/proc/$pid/cmdline" 2>/dev/null | grep 'server\.properties$' | head -n 1 || true)
    [ -n "$conf" ] && owner_of "$(dirname "$(dirname "$conf")")"
    return 0
}

# foreign_detail — what is known of the broker at KAFKA_PORT when its owner is not.
foreign_detail() {
    local pid
    pid=$(listener_pid "$KAFKA_PORT")
    if [ -n "$pid" ]; then
        printf 'pid %s: %s' "$pid" "$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | cut -c1-80)"
    else
        printf 'owner unknown'
    fi
}

# foreign_whose — whose the broker at KAFKA_PORT is, in words.
foreign_whose() {
    local owner
    owner=$(foreign_owner)
    if [ -n "$owner" ]; then describe_owner "$owner"; else foreign_detail; fi
}

cmd_down() {
    local pid
    if ! pid=$(our_pid); then
        rm -f "$KAFKA_PIDFILE"
        if broker_answers; then
            log "left running: the broker at $KAFKA_HOST:$KAFKA_PORT is not this checkout's ($(foreign_whose)); stop it from there"
        else
            log "not running (no broker started by this checkout)"
        fi
        return 0
    fi
    log "stopping the broker (pid $pid)"
    stop_pid "$pid"
    log "stopped"
}

cmd_status() {
    local pid
    if pid=$(our_pid); then
        if broker_answers; then
            log "running at $KAFKA_HOST:$KAFKA_PORT (pid $pid, this checkout's)"
            return 0
        fi
        log "process $pid is running but the broker does not answer at $KAFKA_HOST:$KAFKA_PORT"
        return 1
    fi
    if broker_answers; then
        log "running at $KAFKA_HOST:$KAFKA_PORT, but not this checkout's: $(foreign_whose)"
        return 0
    fi
    log "not running"
    return 1
}

cmd_logs() {
    [ -f "$KAFKA_LOG" ] || die "no log yet ($KAFKA_LOG)"
    if [ "${1:-}" = -f ]; then
        exec tail -n 100 -F "$KAFKA_LOG"
    fi
    tail -n "${LOG_LINES:-100}" "$KAFKA_LOG"
}

cmd_reset() {
    cmd_down
    log "deleting the broker's data ($KAFKA_DATA)"
    rm -rf "$KAFKA_DATA" "$KAFKA_CLUSTER_ID_FILE" "$KAFKA_STATE/format.log"
}

case "${1:-}" in
    up) cmd_up ;;
    down) cmd_down ;;
    status) cmd_status ;;
    logs) cmd_logs "${2:-}" ;;
    reset) cmd_reset ;;
    *) usage ;;
esac
