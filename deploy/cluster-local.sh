#!/usr/bin/env bash
# Runs N Halley nodes as one cluster on this machine, with no containers (docs/production.md, "Running
# several nodes"): every node the same binary and configuration but its name, ports and data directory;
# all on one PostgreSQL database and one Redis, with one master key file (the tenants' keys are sealed with
# it, so every node must have the same one).
#
#   deploy/cluster-local.sh start [N]   # N nodes (default 3), waits until each says "ready" on /info
#   deploy/cluster-local.sh stop        # SIGTERM to each node started here (SIGKILL after 15 s), waits
#   deploy/cluster-local.sh status      # pid, addresses and readiness of each node
#
# Environment:
#   HALLEY_DATABASE_URL   required: postgres://user:password@host:5432/db (a cluster needs PostgreSQL)
#   HALLEY_REDIS_URL      default redis://127.0.0.1:6379
#   HALLEY_REDIS_PREFIX   default halley-local (every key and channel of this cluster starts with it)
#   HALLEY_BIN            default: `halley` on PATH, else target/release/halley, else target/debug/halley
#   CLUSTER_DIR           default ./cluster-local: master.key, and per node node-<i>/ (its data directory),
#                         node-<i>.pid, node-<i>.log, node-<i>.addr (the addresses it listens on)
#   CLUSTER_BIND          default 127.0.0.1 (0.0.0.0 to serve other hosts)
#   CLUSTER_HTTP_PORT     default 8087: node i listens on CLUSTER_HTTP_PORT+i (0: a free port each)
#   CLUSTER_COMETQL_PORT  default 3300: node i on CLUSTER_COMETQL_PORT+i (0: a free port each)
#   CLUSTER_WAIT          default 30: seconds to wait for a node to listen and be ready, or to stop
# Any other HALLEY_* variable (HALLEY_LOG, HALLEY_TRUSTED_PROXIES...) reaches every node as it is.
set -euo pipefail

say() { printf '[cluster-local] %s\n' "$*" >&2; }
die() { say "ERROR: $*"; exit 1; }

CLUSTER_DIR=${CLUSTER_DIR:-./cluster-local}
BIND=${CLUSTER_BIND:-127.0.0.1}
HTTP_PORT=${CLUSTER_HTTP_PORT:-8087}
CQL_PORT=${CLUSTER_COMETQL_PORT:-3300}
WAIT=${CLUSTER_WAIT:-30}

halley_bin() {
    if [ -n "${HALLEY_BIN:-}" ]; then echo "$HALLEY_BIN"; return; fi
    local here
    here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
    for b in "$(command -v halley || true)" "$here/target/release/halley" "$here/target/debug/halley"; do
        if [ -n "$b" ] && [ -x "$b" ]; then echo "$b"; return; fi
    done
    die "no halley binary: set HALLEY_BIN, or build it (cargo build --release -p halley-server)"
}

alive() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

# `GET /info` of host:port, the body on stdout (bash's /dev/tcp: no curl needed).
info() {
    local host=${1%:*} port=${1##*:}
    [ "$host" = 0.0.0.0 ] && host=127.0.0.1
    timeout 3 bash -c '
        exec 3<>"/dev/tcp/$0/$1" || exit 1
        printf "GET /info HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n" "$0" >&3
        sed "1,/^\r$/d" <&3' "$host" "$port" 2>/dev/null
}

# Waits until node i printed its listening line; echoes "http cometql".
listening() {
    local log=$1 pid=$2 line
    for _ in $(seq $((WAIT * 10))); do
        line=$(grep -m1 '^halley listening: ' "$log.out" 2>/dev/null || true)
        if [ -n "$line" ]; then
            set -- $line
            echo "$4 $6"
            return
        fi
        kill -0 "$pid" 2>/dev/null || return 1
        sleep 0.1
    done
    return 1
}

start() {
    local n=${1:-3} bin
    [[ "$n" =~ ^[1-9][0-9]*$ ]] || die "N must be a positive number, not '$n'"
    [ -n "${HALLEY_DATABASE_URL:-}" ] || die "set HALLEY_DATABASE_URL=postgres://... (a cluster needs PostgreSQL)"
    case "$HALLEY_DATABASE_URL" in postgres://* | postgresql://*) ;; *) die "HALLEY_DATABASE_URL must be postgres://" ;; esac
    bin=$(halley_bin)
    mkdir -p "$CLUSTER_DIR"
    CLUSTER_DIR=$(cd "$CLUSTER_DIR" && pwd)
    local key="$CLUSTER_DIR/master.key"
    if [ ! -f "$key" ]; then
        (umask 077 && od -An -N32 -tx1 /dev/urandom | tr -d ' \n' >"$key" && echo >>"$key")
        say "made the cluster's master key $key (back it up: the tenants' stored keys need it)"
    fi
    # Migrations once, before any node serves.
    HALLEY_MASTER_KEY_FILE=$key HALLEY_DATA_DIR="$CLUSTER_DIR/node-0" "$bin" migrate >/dev/null ||
        die "halley migrate failed on $HALLEY_DATABASE_URL"
    local i started=()
    for ((i = 0; i < n; i++)); do
        local pidf="$CLUSTER_DIR/node-$i.pid" log="$CLUSTER_DIR/node-$i.log"
        if alive "$pidf"; then
            say "node-$i already runs (pid $(cat "$pidf"))"
            continue
        fi
        mkdir -p "$CLUSTER_DIR/node-$i"
        local http=$HTTP_PORT cql=$CQL_PORT
        [ "$HTTP_PORT" -ne 0 ] && http=$((HTTP_PORT + i))
        [ "$CQL_PORT" -ne 0 ] && cql=$((CQL_PORT + i))
        : >"$log.out"
        HALLEY_DATA_DIR="$CLUSTER_DIR/node-$i" \
            HALLEY_MASTER_KEY_FILE="$key" \
            HALLEY_REDIS_URL="${HALLEY_REDIS_URL:-redis://127.0.0.1:6379}" \
            HALLEY_REDIS_PREFIX="${HALLEY_REDIS_PREFIX:-halley-local}" \
            HALLEY_NODE_NAME="node-$i" \
            HALLEY_HTTP_ADDR="$BIND:$http" \
            HALLEY_COMETQL_ADDR="$BIND:$cql" \
            setsid "$bin" serve </dev/null >"$log.out" 2>"$log" &
        echo $! >"$pidf"
        local addrs
        if ! addrs=$(listening "$log" "$!"); then
            say "node-$i did not start; the end of $log:"
            tail -n 20 "$log" >&2
            exit 1
        fi
        echo "$addrs" >"$CLUSTER_DIR/node-$i.addr"
        started+=("$i")
    done
    for i in "${started[@]}"; do
        local http
        http=$(cut -d' ' -f1 "$CLUSTER_DIR/node-$i.addr")
        local ok=0
        for _ in $(seq $((WAIT * 10))); do
            if info "$http" | grep -q '"ready":true'; then ok=1; break; fi
            sleep 0.1
        done
        [ "$ok" = 1 ] || die "node-$i ($http) is not ready after ${WAIT}s: see $CLUSTER_DIR/node-$i.log"
        say "node-$i ready: http+ws $http cometql $(cut -d' ' -f2 "$CLUSTER_DIR/node-$i.addr") pid $(cat "$CLUSTER_DIR/node-$i.pid")"
    done
}

stop() {
    [ -d "$CLUSTER_DIR" ] || { say "nothing in $CLUSTER_DIR"; return; }
    local pidf pid
    for pidf in "$CLUSTER_DIR"/node-*.pid; do
        [ -f "$pidf" ] || continue
        pid=$(cat "$pidf")
        if kill -0 "$pid" 2>/dev/null; then
            kill -TERM "$pid"
            for _ in $(seq $((WAIT * 10 / 2))); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
            if kill -0 "$pid" 2>/dev/null; then
                say "$(basename "$pidf" .pid) did not stop in time: SIGKILL"
                kill -KILL "$pid" 2>/dev/null || true
                for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
            fi
            say "$(basename "$pidf" .pid) (pid $pid) stopped"
        fi
        rm -f "$pidf" "${pidf%.pid}.addr"
    done
}

status() {
    local pidf name
    for pidf in "$CLUSTER_DIR"/node-*.pid; do
        [ -f "$pidf" ] || { say "no node started from $CLUSTER_DIR"; return; }
        name=$(basename "$pidf" .pid)
        if alive "$pidf"; then
            local http
            http=$(cut -d' ' -f1 "${pidf%.pid}.addr" 2>/dev/null || true)
            echo "$name pid $(cat "$pidf") $(cat "${pidf%.pid}.addr" 2>/dev/null) $(info "$http" | grep -o '"ready":[a-z]*' || echo '"ready":?')"
        else
            echo "$name not running"
        fi
    done
}

case "${1:-}" in
start) start "${2:-3}" ;;
stop) stop ;;
status) status ;;
*) die "usage: $0 start [N] | stop | status" ;;
esac
