#!/usr/bin/env bash
# The whole Kura test suite on a fresh machine of this kind (Debian 12, root):
# installs or starts what it needs (PostgreSQL), then runs formatting and lint
# checks, unit tests, and the end-to-end suite against the real binary on
# SQLite and on PostgreSQL.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TERM_COLOR=never

log() { printf '\n== %s\n' "$*"; }

apt_install() {
  if [ "$(id -u)" != 0 ]; then
    echo "need root to install: $*" >&2
    return 1
  fi
  if [ -z "${APT_UPDATED:-}" ]; then
    apt-get update -qq
    APT_UPDATED=1
  fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@"
}

# --- PostgreSQL: use the one on 127.0.0.1:5432 if it answers with trust auth,
# otherwise install (if needed) and start a private cluster under /tmp.
PG_STARTED=""
cleanup() {
  if [ -n "$PG_STARTED" ]; then
    runuser -u postgres -- "$PG_BIN/pg_ctl" -D "$PG_STARTED" -m fast stop >/dev/null 2>&1 || true
  fi
}
trap cleanup EXIT

pg_ready() { psql "$1/postgres" -Atqc 'select 1' >/dev/null 2>&1; }

setup_postgres() {
  if [ -n "${KURA_TEST_PG_URL:-}" ] && pg_ready "$KURA_TEST_PG_URL"; then
    return
  fi
  command -v psql >/dev/null || apt_install postgresql-client
  if pg_ready "postgres://postgres@127.0.0.1:5432"; then
    export KURA_TEST_PG_URL="postgres://postgres@127.0.0.1:5432"
    return
  fi
  PG_BIN=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n1 || true)
  if [ -z "$PG_BIN" ] || [ ! -x "$PG_BIN/initdb" ]; then
    apt_install postgresql
    PG_BIN=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n1)
  fi
  local dir port
  dir=$(mktemp -d /tmp/kura-pg-XXXXXX)
  chown postgres:postgres "$dir"
  port=55432
  while (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; do port=$((port + 1)); done
  runuser -u postgres -- "$PG_BIN/initdb" -D "$dir/data" -A trust -U postgres --no-sync >/dev/null
  runuser -u postgres -- "$PG_BIN/pg_ctl" -D "$dir/data" -l "$dir/log" -w \
    -o "-p $port -k $dir -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=300" start >/dev/null
  PG_STARTED="$dir/data"
  export KURA_TEST_PG_URL="postgres://postgres@127.0.0.1:$port"
}

log "toolchain"
cargo --version
# The TLS test makes a certificate with openssl and talks HTTPS with curl.
command -v openssl >/dev/null || apt_install openssl
command -v curl >/dev/null || apt_install curl
# The email tests talk to a real SMTP server: Python's aiosmtpd.
python3 -c 'import aiosmtpd' 2>/dev/null || python3 -m pip install --quiet --disable-pip-version-check aiosmtpd
if ! cargo nextest --version >/dev/null 2>&1; then
  cargo install cargo-nextest --locked
fi

log "PostgreSQL"
setup_postgres
echo "using $KURA_TEST_PG_URL"

log "format and lints"
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings

log "unit tests and end-to-end tests on SQLite"
cargo nextest run --workspace --locked --no-fail-fast

log "end-to-end tests on PostgreSQL"
# Databases left by earlier runs (each test server gets its own).
psql "$KURA_TEST_PG_URL/postgres" -Atqc "select datname from pg_database where datname like 'kura\_t\_%'" |
  while read -r db; do psql "$KURA_TEST_PG_URL/postgres" -qc "DROP DATABASE IF EXISTS \"$db\" WITH (FORCE)" >/dev/null; done
KURA_TEST_DB=postgres cargo nextest run -p kura --test e2e --locked --no-fail-fast

log "web interface in a real browser (Chromium, playwright-core)"
command -v node >/dev/null || apt_install nodejs npm
KURA_BIN="$PWD/target/debug/kura" bash tests/browser/run.sh

log "all tests passed"
