#!/usr/bin/env bash
# The one test command, for people and CI (.ci/run execs it): installs what the integration tests need
# and is missing, then runs `cargo test --workspace --locked` with any extra arguments passed through:
#   tests/run.sh                                         # everything: fmt --check and clippy first, then all tests
#   tests/run.sh -p halley-tests --test it hardening_quota  # one suite
# The integration tests are one test binary per crate, `it` (tests/tests/it, server/tests/it), with a module per
# suite: a module name after `--test it` chooses a suite, as a file name once chose a binary.
# On a machine that has everything it installs nothing and goes straight to cargo.
# Needs root (or sudo) only when something has to be installed or PostgreSQL set up.
# Environment: HALLEY_TEST_POSTGRES_URL, if already set, is used as it is and PostgreSQL is left alone.
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

# Overridable only to rehearse the set-up below on a second, throw-away cluster; normally left alone.
PG_PORT=${HALLEY_PG_PORT:-5432}
PG_CLUSTER=${HALLEY_PG_CLUSTER:-main}
pg_answers() { timeout 3 bash -c "exec 3<>/dev/tcp/127.0.0.1/$PG_PORT" 2>/dev/null; }

MANAGE_PG=0
if [ -z "${HALLEY_TEST_POSTGRES_URL:-}" ]; then
    MANAGE_PG=1
    command -v psql >/dev/null 2>&1 || need_apt postgresql-client
    if ! pg_answers && ! command -v pg_ctlcluster >/dev/null 2>&1; then
        need_apt postgresql
    fi
fi

if [ "${#APT_PKGS[@]}" -gt 0 ]; then
    installing "Debian packages: ${APT_PKGS[*]}"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get update -q
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${APT_PKGS[@]}"
fi
php -m 2>/dev/null | grep -i '^mysqli$' >/dev/null || die "php has no mysqli even after installing php-mysql"

# --- PostgreSQL: use a server that answers with trust auth as it is; otherwise start and open one ---
PG_URL="postgres://postgres@127.0.0.1:$PG_PORT/test"
PG_ADMIN_URL="postgres://postgres@127.0.0.1:$PG_PORT/postgres"
pg_ok() { PGCONNECT_TIMEOUT=5 psql "$1" -XAtqc 'SELECT 1' >/dev/null 2>&1; }

pg_cluster() {
    local ver
    ver=$(find /etc/postgresql -mindepth 1 -maxdepth 1 -type d -printf '%f\n' 2>/dev/null | sort -V | tail -n 1)
    [ -n "$ver" ] || die "PostgreSQL is installed but has no cluster under /etc/postgresql"
    echo "$ver"
}

if [ "$MANAGE_PG" -eq 1 ]; then
    if ! pg_answers; then
        ver=$(pg_cluster)
        INSTALLED=1
        say "starting PostgreSQL $ver (cluster $PG_CLUSTER)"
        as_root pg_ctlcluster --skip-systemctl-redirect "$ver" "$PG_CLUSTER" start || true
        for _ in $(seq 1 40); do pg_answers && break; sleep 0.5; done
        pg_answers || die "PostgreSQL $ver did not start listening on 127.0.0.1:$PG_PORT"
    fi
    if ! pg_ok "$PG_ADMIN_URL"; then
        # Our own cluster asks for a password on TCP: let the postgres role in from 127.0.0.1 only.
        ver=$(pg_cluster)
        hba="/etc/postgresql/$ver/$PG_CLUSTER/pg_hba.conf"
        [ -f "$hba" ] || die "cannot log in as postgres on 127.0.0.1:$PG_PORT without a password and $hba is not there; set HALLEY_TEST_POSTGRES_URL"
        if ! as_root grep -q '^# halley-tests$' "$hba"; then
            say "allowing role postgres from 127.0.0.1 without a password in $hba"
            as_root sed -i '1i # halley-tests\nhost all postgres 127.0.0.1/32 trust' "$hba"
        fi
        as_root pg_ctlcluster --skip-systemctl-redirect "$ver" "$PG_CLUSTER" reload
        for _ in $(seq 1 20); do pg_ok "$PG_ADMIN_URL" && break; sleep 0.5; done
        pg_ok "$PG_ADMIN_URL" || die "still cannot log in as postgres on 127.0.0.1:$PG_PORT"
    fi
    if ! pg_ok "$PG_URL"; then
        say "creating PostgreSQL database test"
        PGCONNECT_TIMEOUT=5 psql "$PG_ADMIN_URL" -XAtqc 'CREATE DATABASE test' >/dev/null
    fi
    export HALLEY_TEST_POSTGRES_URL="$PG_URL"
fi

# --- Python clients (PyMySQL driver, websockets for scripts) ---------------------------------------
if ! python3 -c 'import pymysql, websockets' >/dev/null 2>&1; then
    installing "Python packages: PyMySQL websockets"
    pip_args=(install -q --disable-pip-version-check 'PyMySQL>=1.1,<2' 'websockets>=13,<18')
    if ! python3 -m pip "${pip_args[@]}"; then
        # Debian's own python3 refuses pip installs (PEP 668) unless told otherwise.
        python3 -m pip "${pip_args[@]}" --break-system-packages
    fi
    python3 -c 'import pymysql, websockets' || die "python3 still cannot import pymysql and websockets"
fi

# --- Node packages (pinned by each folder's package-lock.json) -------------------------------------
# tests/clients: mysql2; sdk-js: esbuild (dist check), playwright-core (browser tests), typescript;
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
npm_ready "$CLIENTS" mysql2
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
    # A chosen subset: cargo only.
    exec cargo "${cargo_args[@]}" "$@"
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
