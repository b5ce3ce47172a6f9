#!/usr/bin/env bash
# A PostgreSQL server for the store's tests; prints its SQLAlchemy URL on stdout (nothing else).
#
#   url=$(scripts/ci/postgres.sh)   # .ci/run and `make test` export it as JOURNEYS_TEST_POSTGRES_URL
#
# - JOURNEYS_TEST_POSTGRES_URL set already: printed as it is (a server of your own; its role
#   needs CREATEDB: each test module makes a database of its own and drops it).
# - No server binaries (Debian's /usr/lib/postgresql/*/bin): as root, `apt-get install postgresql`
#   (not with JOURNEYS_PG_NO_INSTALL=1); otherwise nothing is printed and the status is 0 (the
#   PostgreSQL tests skip, saying why), or 1 under CI=true.
# - Then a cluster of its own in $JOURNEYS_PG_DIR (default /tmp/journeys-pg-<uid>) on
#   127.0.0.1:$JOURNEYS_PG_PORT (default 55432), run as the postgres user when we are root:
#   trust authentication on loopback, superuser `journeys`, fsync off (test data only). Started
#   if it is not running, reused if it is (test runs share it); stop it with
#   `pg_ctl -D /tmp/journeys-pg-<uid> stop`.
set -euo pipefail

port=${JOURNEYS_PG_PORT:-55432}
dir=${JOURNEYS_PG_DIR:-/tmp/journeys-pg-$(id -u)}
url="postgresql+psycopg://journeys@127.0.0.1:${port}/journeys_test"

say() { echo "postgres.sh: $*" >&2; }
unavailable() {
    say "$*"
    if [ "${CI:-}" = true ]; then exit 1; fi
    exit 0
}

if [ -n "${JOURNEYS_TEST_POSTGRES_URL:-}" ]; then
    echo "$JOURNEYS_TEST_POSTGRES_URL"
    exit 0
fi

server_bin() { find /usr/lib/postgresql -maxdepth 2 -name bin -type d 2>/dev/null | sort -V | tail -n 1 || true; }
bin=$(server_bin)
if [ -z "$bin" ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null && [ "${JOURNEYS_PG_NO_INSTALL:-}" != 1 ]; then
        say "installing Debian's postgresql"
        export DEBIAN_FRONTEND=noninteractive
        apt-get install -y -qq postgresql >&2 \
            || { apt-get update -qq >&2 && apt-get install -y -qq postgresql >&2; } \
            || unavailable "apt-get install postgresql failed"
        bin=$(server_bin)
    fi
    [ -n "$bin" ] || unavailable "no PostgreSQL server here (Debian: apt-get install postgresql, or set \
JOURNEYS_TEST_POSTGRES_URL to a server's URL)"
fi

as_owner() {  # initdb and postgres refuse to run as root
    if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

exec 9>"$dir.lock"  # one starter at a time (parallel test runs)
flock 9
if ! as_owner "$bin/pg_ctl" -D "$dir" status >/dev/null 2>&1; then
    if [ ! -s "$dir/PG_VERSION" ]; then
        rm -rf "$dir"
        mkdir -p "$dir"
        if [ "$(id -u)" = 0 ]; then chown postgres: "$dir"; fi
        as_owner "$bin/initdb" -D "$dir" -U journeys --auth=trust -E UTF8 --no-sync >/dev/null \
            || unavailable "initdb failed in $dir"
    fi
    say "starting PostgreSQL ($bin) on 127.0.0.1:$port, data in $dir"
    (   # the server outlives us: it keeps none of our descriptors (the lock, a caller's pipes)
        for fd in /proc/$BASHPID/fd/*; do
            fd=${fd##*/}
            if [ "$fd" -gt 2 ]; then eval "exec $fd>&-"; fi
        done
        as_owner "$bin/pg_ctl" -D "$dir" -l "$dir/server.log" -w -t 60 -o "-p $port -k /tmp \
-c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off -c full_page_writes=off \
-c max_connections=300" start </dev/null >/dev/null
    ) || { tail -n 20 "$dir/server.log" >&2; unavailable "PostgreSQL did not start (log: $dir/server.log)"; }
fi
psql=("$bin/psql" -h 127.0.0.1 -p "$port" -U journeys -d postgres -tAq)
if [ "$("${psql[@]}" -c "SELECT 1 FROM pg_database WHERE datname = 'journeys_test'")" != 1 ]; then
    "${psql[@]}" -c "CREATE DATABASE journeys_test" >&2 || unavailable "cannot create journeys_test"
fi
echo "$url"
