#!/usr/bin/env bash
# What only the tests need, on top of scripts/setup.sh, idempotently:
# - PostgreSQL (Debian package): the hub's storage tests run against a real server, started here
#   on loopback as a throwaway cluster (see scripts/pg.sh);
# - Chromium (Debian package): the gallery page is checked in a headless browser;
# - moto (PyPI, in a venv): an S3-compatible server on loopback for the hub's object store;
# - mosquitto (Debian package): the MQTT sink's tests start their own broker on loopback;
# - strace (Debian package): the durability test reads the spool's and binding log's system calls.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/env.sh

PACKAGES=(postgresql chromium python3-venv openssl mosquitto strace)
sudo_if_needed() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }
missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup-test: installing ${missing[*]}"
  sudo_if_needed apt-get update -qq
  sudo_if_needed env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

MOTO_VERSION="${MOTO_VERSION:-5.1.4}"
venv="$MIRRORSIGHT_CACHE/venv"
if [ ! -x "$venv/bin/moto_server" ]; then
  echo "setup-test: installing moto $MOTO_VERSION (S3-compatible test server) into $venv"
  /usr/bin/python3 -m venv "$venv"
  "$venv/bin/pip" install -q "moto[s3,server]==$MOTO_VERSION"
fi
echo "setup-test: ready"
