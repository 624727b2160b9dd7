#!/usr/bin/env bash
# Starts a throwaway PostgreSQL server on loopback for the hub's storage tests and prints the
# URL to connect with. Idempotent: a server this script already started is reused.
# Usage: eval "$(scripts/pg.sh)"   # exports MIRRORSIGHT_TEST_POSTGRES
set -euo pipefail
. "$(dirname "$0")/env.sh"

PORT="${MIRRORSIGHT_PG_PORT:-55432}"
bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
if [ -z "$bin" ]; then
  echo "pg.sh: PostgreSQL is not installed; run scripts/setup-test.sh" >&2
  exit 1
fi
# Under /tmp, not the cache: the postgres user must be able to reach it, and it is throwaway.
root="${TMPDIR:-/tmp}/mirrorsight-pg-$PORT"
data="$root/data"
as_owner() {
  # PostgreSQL refuses to run as root; the Debian package's `postgres` user owns the cluster.
  if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}
mkdir -p "$root"
if [ "$(id -u)" -eq 0 ]; then chown postgres:postgres "$root"; fi
if [ ! -f "$data/PG_VERSION" ]; then
  as_owner "$bin/initdb" -D "$data" -U postgres --auth=trust -E UTF8 >/dev/null
fi
if ! as_owner "$bin/pg_ctl" -D "$data" status >/dev/null 2>&1; then
  as_owner "$bin/pg_ctl" -D "$data" -w -t 60 -l "$root/server.log" \
    -o "-c listen_addresses=127.0.0.1 -p $PORT -k $root -c fsync=off -c max_connections=200" start >/dev/null
fi
echo "export MIRRORSIGHT_TEST_POSTGRES=postgres://postgres@127.0.0.1:$PORT/postgres"
