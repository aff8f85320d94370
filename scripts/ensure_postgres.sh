#!/usr/bin/env bash
# Make a PostgreSQL server available to the test suite, and print its URL on stdout.
#
#   export REFURBGRADE_TEST_POSTGRES_URL="$(scripts/ensure_postgres.sh)"
#
# Installs the server from the distribution (apt-get, as root) when no PostgreSQL binaries exist, starts
# a private throw-away cluster (port $REFURBGRADE_PG_PORT, default 55432, data in $REFURBGRADE_PG_DATA,
# default /tmp/refurbgrade-pg; trust auth on 127.0.0.1 only, fsync off: test data only) unless one is
# already running there, and creates the database `refurbgrade_test`. Each pytest session then works in
# its own database created from this URL (tests/serving/conftest.py). Messages go to stderr.
set -euo pipefail

PORT="${REFURBGRADE_PG_PORT:-55432}"
DATA="${REFURBGRADE_PG_DATA:-/tmp/refurbgrade-pg}"
DB=refurbgrade_test
URL="postgresql+psycopg://postgres@127.0.0.1:${PORT}/${DB}"

log() { echo "ensure_postgres: $*" >&2; }

find_bin() { ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1; }

BIN="$(find_bin || true)"
if [[ -z "$BIN" || ! -x "$BIN/initdb" ]]; then
    if [[ "$(id -u)" != 0 ]]; then
        log "no PostgreSQL server installed and not root: cannot install it"
        exit 1
    fi
    log "installing PostgreSQL (apt-get)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >&2
    apt-get install -y -qq postgresql >&2
    BIN="$(find_bin)"
fi

# PostgreSQL refuses to run as root: use the package's postgres user when we are root.
if [[ "$(id -u)" == 0 ]]; then
    id postgres >/dev/null 2>&1 || useradd --system --home-dir /var/lib/postgresql postgres
    as_pg() { runuser -u postgres -- "$@"; }
else
    as_pg() { "$@"; }
fi

if ! as_pg "$BIN/pg_ctl" -D "$DATA" status >/dev/null 2>&1; then
    if [[ ! -f "$DATA/PG_VERSION" ]]; then
        log "creating a cluster in $DATA"
        mkdir -p "$DATA"
        [[ "$(id -u)" == 0 ]] && chown postgres: "$DATA"
        chmod 700 "$DATA"
        as_pg "$BIN/initdb" -D "$DATA" -U postgres -A trust --no-sync -E UTF8 >/dev/null
    fi
    log "starting PostgreSQL on 127.0.0.1:$PORT"
    as_pg "$BIN/pg_ctl" -D "$DATA" -l "$DATA/server.log" -w -t 60 start \
        -o "-p $PORT -k $DATA -c listen_addresses=127.0.0.1 -c fsync=off -c full_page_writes=off -c max_connections=200" >/dev/null
fi

for _ in $(seq 1 30); do
    "$BIN/pg_isready" -h 127.0.0.1 -p "$PORT" -q && break
    sleep 1
done
if ! "$BIN/psql" -h 127.0.0.1 -p "$PORT" -U postgres -tAc "SELECT 1 FROM pg_database WHERE datname='$DB'" | grep -q 1; then
    "$BIN/createdb" -h 127.0.0.1 -p "$PORT" -U postgres "$DB"
fi
log "ready: $URL"
echo "$URL"
