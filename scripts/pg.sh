#!/usr/bin/env bash
# Starts a throwaway PostgreSQL server on loopback for the hub's storage tests and prints the
# URL to connect with. Idempotent: a server this script already started is reused.
# As a chain's database would have it: TLS with its own CA, and SCRAM-SHA-256 password
# authentication over TCP (so channel binding can be tested); the Unix socket trusts its
# owner, for setting the password.
# Usage: eval "$(scripts/pg.sh)"   # exports MIRRORSIGHT_TEST_POSTGRES, _PASSWORD, _CA, _OTHER_CA
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
# A throwaway password for a server that listens on loopback only.
PASSWORD=mirrorsight-test-password
hba='local all all trust
host all all 127.0.0.1/32 scram-sha-256'
if [ "$(cat "$data/pg_hba.conf" 2>/dev/null)" != "$hba" ]; then
  printf '%s\n' "$hba" > "$data/pg_hba.conf"
  if [ "$(id -u)" -eq 0 ]; then chown postgres:postgres "$data/pg_hba.conf"; fi
  rm -f "$root/tls-on"   # restart below, with the new rules
fi
# TLS, as a chain's database would have it: a throwaway CA and a server certificate for
# 127.0.0.1; the tests connect with that CA (MIRRORSIGHT_TEST_POSTGRES_CA).
tls="$root/tls"
if [ ! -f "$tls/server.crt" ]; then
  mkdir -p "$tls"
  openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj /CN=mirrorsight-test-ca \
    -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign \
    -keyout "$tls/ca.key" -out "$tls/ca.crt" 2>/dev/null
  openssl req -newkey rsa:2048 -nodes -subj /CN=127.0.0.1 \
    -keyout "$tls/server.key" -out "$tls/server.csr" 2>/dev/null
  printf 'subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n' > "$tls/ext"
  openssl x509 -req -days 3650 -in "$tls/server.csr" -CA "$tls/ca.crt" -CAkey "$tls/ca.key" \
    -CAcreateserial -extfile "$tls/ext" -out "$tls/server.crt" 2>/dev/null
  chmod 0600 "$tls/server.key"
  if [ "$(id -u)" -eq 0 ]; then chown -R postgres:postgres "$tls"; fi
fi
# A CA that signed nothing here: the tests check that trusting it fails.
if [ ! -f "$tls/other-ca.crt" ]; then
  openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj /CN=mirrorsight-other-ca \
    -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign \
    -keyout "$tls/other-ca.key" -out "$tls/other-ca.crt" 2>/dev/null
  if [ "$(id -u)" -eq 0 ]; then chown -R postgres:postgres "$tls"; fi
fi
options="-c listen_addresses=127.0.0.1 -p $PORT -k $root -c fsync=off -c max_connections=200"
options="$options -c ssl=on -c ssl_cert_file=$tls/server.crt -c ssl_key_file=$tls/server.key"
options="$options -c password_encryption=scram-sha-256"
if as_owner "$bin/pg_ctl" -D "$data" status >/dev/null 2>&1 && [ ! -f "$root/tls-on" ]; then
  # Started by an older version of this script (without TLS or SCRAM).
  as_owner "$bin/pg_ctl" -D "$data" -w -t 60 stop >/dev/null
fi
if ! as_owner "$bin/pg_ctl" -D "$data" status >/dev/null 2>&1; then
  as_owner "$bin/pg_ctl" -D "$data" -w -t 60 -l "$root/server.log" -o "$options" start >/dev/null
  touch "$root/tls-on"
fi
as_owner "$bin/psql" -q -h "$root" -p "$PORT" -U postgres -d postgres -v ON_ERROR_STOP=1 \
  -c "ALTER ROLE postgres PASSWORD '$PASSWORD'" >/dev/null
echo "export MIRRORSIGHT_TEST_POSTGRES=postgres://postgres@127.0.0.1:$PORT/postgres"
echo "export MIRRORSIGHT_TEST_POSTGRES_PASSWORD=$PASSWORD"
echo "export MIRRORSIGHT_TEST_POSTGRES_CA=$tls/ca.crt"
echo "export MIRRORSIGHT_TEST_POSTGRES_OTHER_CA=$tls/other-ca.crt"
