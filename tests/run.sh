#!/usr/bin/env bash
# The one test command, for people and CI (.ci/run execs it): installs what the integration tests need
# and is missing, then runs `cargo test --workspace --locked` with any extra arguments passed through:
#   tests/run.sh                                         # everything: fmt --check and clippy first, then all tests
#   tests/run.sh -p halley-tests --test it hardening_quota  # one suite
# The integration tests are one test binary per crate, `it` (tests/tests/it, server/tests/it), with a module per
# suite: a module name after `--test it` chooses a suite, as a file name once chose a binary.
# On a machine that has everything it installs nothing and goes straight to cargo.
# Needs root (or sudo) only to install missing Debian packages. It never changes the system PostgreSQL: a server
# on 127.0.0.1:5432 that lets role postgres in without a password is used as it is (database test, created if
# missing); otherwise the run starts a throw-away cluster of its own in target/pg-test (trust auth, 127.0.0.1 on
# a free port, owned by user postgres when run as root, since PostgreSQL refuses to run as root) and stops it
# when the run ends. The data directory is kept for the next run.
# Redis (the cluster suites): the server on 127.0.0.1:6379 when it answers PING, else a throw-away redis-server
# on a free port, stopped when the run ends; either way exported as HALLEY_TEST_REDIS_URL.
# Environment:
#   HALLEY_TEST_POSTGRES_URL  if already set, is used as it is and PostgreSQL is left alone.
#   HALLEY_TEST_REDIS_URL     if already set, is used as it is.
#   HALLEY_PG_PORT            where an existing server is looked for (default 5432). A port where nothing answers
#                             (HALLEY_PG_PORT=1) rehearses the throw-away cluster on a machine that has a server.
#   HALLEY_PG_DIR             the throw-away cluster's directory (default target/pg-test), for when user
#                             postgres cannot reach the checkout (a checkout under /root, say).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$(pwd)
CLIENTS="$ROOT/tests/clients"

say() { printf '[tests/run.sh] %s\n' "$*" >&2; }
INSTALLED=0
installing() { INSTALLED=1; say "installing $*"; }
die() { say "ERROR: $*"; exit 1; }

if [ "$(id -u)" -eq 0 ]; then SUDO=(); else SUDO=(sudo); fi
as_root() { "${SUDO[@]}" "$@"; }

# --- System packages: collect what is missing, then one apt-get update and one install ------------
APT_PKGS=()
need_apt() { APT_PKGS+=("$@"); }

if ! command -v php >/dev/null 2>&1 || ! php -m 2>/dev/null | grep -i '^mysqli$' >/dev/null; then
    need_apt php-cli php-mysql
fi
command -v mariadb >/dev/null 2>&1 || need_apt mariadb-client
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then need_apt nodejs npm; fi
command -v python3 >/dev/null 2>&1 || need_apt python3
python3 -m pip --version >/dev/null 2>&1 || need_apt python3-pip
# Browser tests: Debian's chromium, driven by playwright-core with executablePath /usr/bin/chromium
# (a browser download cannot work on these machines).
[ -x /usr/bin/chromium ] || need_apt chromium
# The sdk-js HTTPS browser test makes its certificate with the openssl CLI.
command -v openssl >/dev/null 2>&1 || need_apt openssl
# The cluster suites: a Redis for all of them, and throw-away redis-servers the fault tests kill.
command -v redis-server >/dev/null 2>&1 || need_apt redis-server

PG_PORT=${HALLEY_PG_PORT:-5432}
pg_answers() { timeout 3 bash -c "exec 3<>/dev/tcp/127.0.0.1/$PG_PORT" 2>/dev/null; }
# Directory of initdb and pg_ctl: Debian keeps them off PATH, one directory per major version.
pg_bindir() {
    local d
    d=$(find /usr/lib/postgresql -mindepth 3 -maxdepth 3 -path '*/bin/pg_ctl' -printf '%h\n' 2>/dev/null | sort -V | tail -n 1)
    if [ -z "$d" ] && command -v initdb >/dev/null 2>&1 && command -v pg_ctl >/dev/null 2>&1; then
        d=$(dirname "$(command -v pg_ctl)")
    fi
    echo "$d"
}

MANAGE_PG=0
if [ -z "${HALLEY_TEST_POSTGRES_URL:-}" ]; then
    MANAGE_PG=1
    command -v psql >/dev/null 2>&1 || need_apt postgresql-client
    # Nothing to use and nothing to start a cluster with: the server binaries come with `postgresql`.
    if ! pg_answers && [ -z "$(pg_bindir)" ]; then need_apt postgresql; fi
fi

apt_install() {
    installing "Debian packages: $*"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get update -q
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$@"
}
[ "${#APT_PKGS[@]}" -eq 0 ] || apt_install "${APT_PKGS[@]}"
php -m 2>/dev/null | grep -i '^mysqli$' >/dev/null || die "php has no mysqli even after installing php-mysql"

# --- PostgreSQL: a server that lets role postgres in without a password, else a throw-away cluster ---
# -w: a server that wants a password is a "no", never a prompt.
pg_ok() { PGCONNECT_TIMEOUT=5 psql -w "$1" -XAtqc 'SELECT 1' >/dev/null 2>&1; }

# use_pg PORT: points the tests at database test on 127.0.0.1:PORT, creating it if missing; fails when role
# postgres cannot log in there without a password.
use_pg() {
    local url="postgres://postgres@127.0.0.1:$1/test" admin="postgres://postgres@127.0.0.1:$1/postgres"
    if ! pg_ok "$url"; then
        pg_ok "$admin" || return 1
        say "creating PostgreSQL database test on 127.0.0.1:$1"
        PGCONNECT_TIMEOUT=5 psql -w "$admin" -XAtqc 'CREATE DATABASE test' >/dev/null || return 1
    fi
    export HALLEY_TEST_POSTGRES_URL="$url"
}

# Starts the throw-away cluster in $PG_DIR and arranges for it to stop when this script exits.
own_pg() {
    local bindir port="" p pidfile
    bindir=$(pg_bindir)
    if [ -z "$bindir" ]; then
        say "no PostgreSQL server binaries for a throw-away cluster"
        apt_install postgresql
        bindir=$(pg_bindir)
        [ -n "$bindir" ] || die "installed postgresql but found no pg_ctl under /usr/lib/postgresql/*/bin"
    fi
    PG_DIR=${HALLEY_PG_DIR:-${CARGO_TARGET_DIR:-$ROOT/target}/pg-test}
    PG_DATA="$PG_DIR/data"
    mkdir -p "$PG_DIR"
    if [ "$(id -u)" -eq 0 ]; then
        # Global: the EXIT trap runs as_pg after this function has returned.
        PG_OWNER=postgres
        id -u "$PG_OWNER" >/dev/null 2>&1 || PG_OWNER=nobody
        [ "$(stat -c %U "$PG_DIR")" = "$PG_OWNER" ] || chown -R "$PG_OWNER:" "$PG_DIR"
        as_pg() { (cd / && runuser -u "$PG_OWNER" -- "$@"); }
        as_pg test -w "$PG_DIR" ||
            die "user $PG_OWNER cannot write $PG_DIR (a parent directory is closed to it): set HALLEY_PG_DIR to a directory it can reach"
    else
        as_pg() { "$@"; }
    fi
    # Two runs in one checkout would stop each other's server.
    exec 9>"$PG_DIR/run.lock"
    flock -n 9 || die "another tests/run.sh is using the cluster in $PG_DIR"

    pidfile="$PG_DATA/postmaster.pid"
    if [ -f "$pidfile" ] && [ "$(sed -n 2p "$pidfile")" != "$PG_DATA" ]; then
        # Copied with target/ from another checkout: its lock file names the original server.
        say "discarding $PG_DATA, copied from $(sed -n 2p "$pidfile")"
        rm -rf "$PG_DATA"
    elif [ -f "$pidfile" ] && as_pg "$bindir/pg_ctl" -D "$PG_DATA" status >/dev/null 2>&1; then
        say "stopping the throw-away PostgreSQL left running by an interrupted run"
        as_pg "$bindir/pg_ctl" -D "$PG_DATA" -m fast -w -s stop 9>&-
    fi

    # Below the kernel's ephemeral range, so no client socket takes it between the probe and the bind.
    for p in $(seq 15432 15531); do
        timeout 1 bash -c "exec 3<>/dev/tcp/127.0.0.1/$p" 2>/dev/null || { port=$p; break; }
    done
    [ -n "$port" ] || die "no free port in 15432-15531 for a throw-away PostgreSQL"

    local opts="-p $port -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
    # A socket path must fit in 107 bytes and this value goes through pg_ctl's shell unquoted; the tests use TCP.
    if [[ $PG_DIR =~ ^[A-Za-z0-9/._+-]+$ ]] && [ "${#PG_DIR}" -le 90 ]; then
        opts+=" -c unix_socket_directories=$PG_DIR"
    else
        opts+=" -c unix_socket_directories="
    fi
    local attempt
    for attempt in 1 2; do
        if [ ! -f "$PG_DATA/PG_VERSION" ]; then
            say "creating a throw-away PostgreSQL cluster in $PG_DATA ($bindir)"
            as_pg rm -rf "$PG_DATA"
            as_pg "$bindir/initdb" -D "$PG_DATA" -U postgres --auth=trust -E UTF8 --no-locale --no-sync \
                >"$PG_DIR/initdb.log" 2>&1 || { cat "$PG_DIR/initdb.log" >&2; die "initdb failed"; }
        fi
        say "starting a throw-away PostgreSQL on 127.0.0.1:$port ($PG_DATA, log $PG_DIR/postgres.log)"
        # fd 9 closed: the server must not hold this run's lock after it ends.
        if as_pg "$bindir/pg_ctl" -D "$PG_DATA" -l "$PG_DIR/postgres.log" -o "$opts" -w -t 60 -s start 9>&-; then
            break
        fi
        tail -n 20 "$PG_DIR/postgres.log" >&2 || true
        [ "$attempt" -eq 1 ] || die "the throw-away PostgreSQL in $PG_DATA did not start (log above)"
        # A data directory from another major version or a crash (fsync is off): start from scratch.
        say "discarding $PG_DATA and trying once more"
        as_pg rm -rf "$PG_DATA"
    done
    PG_STOP=("$bindir/pg_ctl" -D "$PG_DATA" -m fast -w -s stop)
    # bash runs an EXIT trap on a normal exit, on `set -e` and on the signals that end it (Ctrl-C, SIGTERM).
    trap 'as_pg "${PG_STOP[@]}" 9>&- || true' EXIT
    use_pg "$port" || die "cannot log in as postgres to the throw-away PostgreSQL on 127.0.0.1:$port"
}

if [ "$MANAGE_PG" -eq 1 ]; then
    if pg_answers && use_pg "$PG_PORT"; then
        say "PostgreSQL: the server on 127.0.0.1:$PG_PORT"
    else
        say "PostgreSQL: nothing on 127.0.0.1:$PG_PORT lets role postgres in without a password; using a throw-away cluster"
        own_pg
    fi
fi

# --- Redis: the server on 127.0.0.1:6379 when it answers PING, else a throw-away one on a free port ---
redis_pong() {
    timeout 3 bash -c "exec 3<>/dev/tcp/127.0.0.1/$1; printf 'PING\r\n' >&3; head -c 5 <&3" 2>/dev/null | grep -q '+PONG'
}
if [ -z "${HALLEY_TEST_REDIS_URL:-}" ]; then
    if redis_pong 6379; then
        export HALLEY_TEST_REDIS_URL="redis://127.0.0.1:6379"
        say "Redis: the server on 127.0.0.1:6379"
    else
        REDIS_PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
        redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save '' --appendonly no >/dev/null 2>&1 &
        REDIS_PID=$!
        # Stopped with the run, after whatever the EXIT trap already does (a throw-away PostgreSQL).
        trap "$(trap -p EXIT | sed "s/^trap -- '\(.*\)' EXIT\$/\1;/")kill $REDIS_PID 2>/dev/null || true" EXIT
        for _ in $(seq 50); do redis_pong "$REDIS_PORT" && break; sleep 0.1; done
        redis_pong "$REDIS_PORT" || die "the throw-away redis-server on 127.0.0.1:$REDIS_PORT does not answer PING"
        export HALLEY_TEST_REDIS_URL="redis://127.0.0.1:$REDIS_PORT"
        say "Redis: a throw-away redis-server on 127.0.0.1:$REDIS_PORT"
    fi
fi

# --- Python clients (PyMySQL driver, websockets for scripts, the Pusher pair pysher + pusher) --------
# pysher and pusher pinned exactly: tests/tests/it/pusher_python.rs checks what they print.
if ! python3 -c 'import pymysql, websockets, pysher, pusher' >/dev/null 2>&1; then
    installing "Python packages: PyMySQL websockets pysher pusher"
    pip_args=(install -q --disable-pip-version-check 'PyMySQL>=1.1,<2' 'websockets>=13,<18' 'pysher==1.0.8' 'pusher==3.3.4')
    if ! python3 -m pip "${pip_args[@]}"; then
        # Debian's own python3 refuses pip installs (PEP 668) unless told otherwise.
        python3 -m pip "${pip_args[@]}" --break-system-packages
    fi
    python3 -c 'import pymysql, websockets, pysher, pusher' || die "python3 still cannot import pymysql, websockets, pysher and pusher"
fi

# --- Node packages (pinned by each folder's package-lock.json) -------------------------------------
# tests/clients: mysql2, and pusher-js, laravel-echo and pusher (the Pusher agent); sdk-js: esbuild (dist check), playwright-core (browser tests), typescript;
# dashboard/test: playwright-core.
npm_ready() {
    local dir=$1 probe=$2 stamp want
    stamp="$dir/node_modules/.halley-installed"
    want=$( (cat "$dir/package.json" "$dir/package-lock.json"; node --version) | sha256sum | cut -d' ' -f1)
    if [ ! -d "$dir/node_modules/$probe" ] || [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
        installing "Node packages in ${dir#"$ROOT"/} (npm ci)"
        (cd "$dir" && npm ci --prefer-offline --no-audit --no-fund --loglevel=error)
        echo "$want" >"$stamp"
    fi
}
npm_ready "$CLIENTS" pusher-js
npm_ready "$ROOT/sdk-js" playwright-core
npm_ready "$ROOT/dashboard/test" playwright-core

[ "$INSTALLED" -eq 1 ] || say "all test dependencies already present"

# --- Rust tests --------------------------------------------------------------------------------------
# rustup's usual place, for shells whose PATH lacks it.
command -v cargo >/dev/null 2>&1 || [ ! -x "$HOME/.cargo/bin/cargo" ] || PATH="$HOME/.cargo/bin:$PATH"
command -v cargo >/dev/null 2>&1 || die "cargo not found (the Rust toolchain comes with the machine)"
if [ "$#" -eq 0 ]; then
    # The full run checks formatting and lints before the tests, as CI does: a red one stops here, named.
    say "cargo fmt --all --check"
    cargo fmt --all --check || die "formatting differs (shown above): run \`cargo fmt --all\` and commit"
    say "cargo clippy --workspace --all-targets --locked -- -D warnings"
    cargo clippy --workspace --all-targets --locked -- -D warnings ||
        die "clippy found warnings (shown above): fix them, then run tests/run.sh again"
fi
cargo_args=(test)
select_all=1
locked=0
for arg in "$@"; do
    [ "$arg" = "--" ] && break
    case "$arg" in
        -p | -p* | --package | --package=* | --workspace | --all | --manifest-path | --manifest-path=*) select_all=0 ;;
        --locked | --frozen) locked=1 ;;
    esac
done
# cargo ignores -p when --workspace is given: add it only when no package was chosen.
[ "$select_all" -eq 1 ] && cargo_args+=(--workspace)
[ "$locked" -eq 1 ] || cargo_args+=(--locked)
# shellcheck disable=SC2001 # sed: the password part is optional
say "HALLEY_TEST_POSTGRES_URL=$(sed 's#://\([^:@/]*\):[^@/]*@#://\1:***@#' <<<"${HALLEY_TEST_POSTGRES_URL:-}")"
say "cargo ${cargo_args[*]} $*"
# Attack tests run the binary in its own process (tests/support/process.rs) to measure its memory: build it
# first, so that a chosen subset runs against the current code too.
say "cargo build --locked -p halley-server --bin halley"
cargo build --locked -p halley-server --bin halley
export HALLEY_BIN="${CARGO_TARGET_DIR:-$ROOT/target}/debug/halley"
if [ "$#" -gt 0 ]; then
    # A chosen subset: cargo only. Not exec'd, so that the EXIT trap can still stop a throw-away PostgreSQL.
    cargo "${cargo_args[@]}" "$@"
    exit 0
fi
cargo "${cargo_args[@]}"

# --- Browser-side suites: against the real binary ------------------------------------------------------
say "sdk-js: unit tests and dist check (npm test)"
(cd "$ROOT/sdk-js" && npm test)
say "sdk-js: browser tests in headless Chromium (npm run test:browser)"
(cd "$ROOT/sdk-js" && npm run test:browser)
say "dashboard: browser test in headless Chromium (sign-up to first message)"
(cd "$ROOT/dashboard/test" && npm test)
say "all suites passed"
