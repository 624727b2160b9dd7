#!/usr/bin/env bash
# Builds the Debian packages of the mirror daemon and of the store hub with cargo-deb:
#   $CARGO_TARGET_DIR/debian/mirrorsight_<version>_<arch>.deb
#   $CARGO_TARGET_DIR/debian/mirrorsight-hub_<version>_<arch>.deb
# and checks them with lintian when it is installed. Install on the kiosk with
#   apt install ./mirrorsight_*.deb
#
# Usage: scripts/package.sh [--no-build] [--fast]
#   --no-build  package the release binaries already built (scripts/test.sh does this)
#   --fast      lighter compression (bigger .deb, much quicker; for tests)
#
# What it needs, installed idempotently: the machine setup (scripts/setup.sh), cargo-deb from
# crates.io (pinned, `cargo install --locked`), and ONNX Runtime's C library with its licence
# files, taken from the PyPI wheel as scripts/setup.sh does and cached in $MIRRORSIGHT_CACHE.
set -euo pipefail
cd "$(dirname "$0")/.."

CARGO_DEB_VERSION="${CARGO_DEB_VERSION:-3.8.0}"
ORT_VERSION="${ORT_VERSION:-1.32.0}"

build=1
deb_args=()
for arg in "$@"; do
  case "$arg" in
    --no-build) build=0 ;;
    --fast) deb_args+=(--fast) ;;
    *) echo "usage: scripts/package.sh [--no-build] [--fast]" >&2; exit 64 ;;
  esac
done

if [ "$build" = 1 ]; then
  ./scripts/setup.sh
fi
. scripts/env.sh

if ! cargo deb --version 2>/dev/null | grep -qx "cargo-deb $CARGO_DEB_VERSION"; then
  echo "package: installing cargo-deb $CARGO_DEB_VERSION from crates.io" >&2
  # Its own throwaway build directory: the project's target directory stays the project's.
  env -u CARGO_TARGET_DIR cargo install --quiet --locked --version "$CARGO_DEB_VERSION" cargo-deb
fi
for tool in dpkg-shlibdeps lintian; do
  command -v "$tool" >/dev/null 2>&1 || missing_tool="${missing_tool:-} $tool"
done
if [ -n "${missing_tool:-}" ]; then
  # dpkg-shlibdeps (dpkg-dev) computes the library dependencies; lintian checks the result.
  sudo_if_needed() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }
  echo "package: installing dpkg-dev lintian" >&2
  sudo_if_needed apt-get update -qq
  sudo_if_needed env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends dpkg-dev lintian >/dev/null
fi

# ONNX Runtime from the PyPI wheel: the library (as setup.sh installs it) and its third-party
# notices, staged where the package metadata (Cargo.toml) takes them from. Its own licence (MIT)
# is in the package's copyright file, where Debian policy 12.5 wants it (lintian:
# extra-license-file).
wheels="$MIRRORSIGHT_CACHE/wheels"
wheel=$(ls "$wheels"/onnxruntime-"$ORT_VERSION"-*.whl 2>/dev/null | head -n 1 || true)
if [ -z "$wheel" ]; then
  echo "package: fetching the onnxruntime $ORT_VERSION wheel from PyPI" >&2
  mkdir -p "$wheels"
  python3 -m pip download -q --no-deps --only-binary=:all: "onnxruntime==$ORT_VERSION" -d "$wheels"
  wheel=$(ls "$wheels"/onnxruntime-"$ORT_VERSION"-*.whl | head -n 1)
fi
stage="$CARGO_TARGET_DIR/release/onnxruntime"
rm -rf "$stage" && mkdir -p "$stage/lib" "$stage/doc"
unzip -q -o -j "$wheel" "onnxruntime/capi/libonnxruntime.so.$ORT_VERSION" -d "$stage/lib"
unzip -q -o -j "$wheel" onnxruntime/ThirdPartyNotices.txt -d "$stage/doc"
ln -s "libonnxruntime.so.$ORT_VERSION" "$stage/lib/libonnxruntime.so"
# Debian policy 12.3: documentation over 4 kB is compressed.
gzip -9n "$stage/doc/ThirdPartyNotices.txt"

if [ "$build" = 1 ]; then
  cargo build --release --locked -p mirrorsight --bin mirrorsight -p mirrorsight-hub --bin mirrorsight-hub
fi
out="$CARGO_TARGET_DIR/debian"
mkdir -p "$out"
debs=()
for package in mirrorsight mirrorsight-hub; do
  deb=$(cargo deb --quiet --no-build --locked --strip -p "$package" --output "$out" "${deb_args[@]}")
  debs+=("$deb")
done

# lintian: clean, or each remaining tag explained in the package's lintian overrides.
lintian --fail-on error,warning "${debs[@]}" >&2 || {
  echo "package: lintian found problems (above)" >&2
  exit 1
}
printf '%s\n' "${debs[@]}"
