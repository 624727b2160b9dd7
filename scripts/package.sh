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
# crates.io (pinned, `cargo install --locked`), and ONNX Runtime's C library (the CPU build and
# the OpenVINO build) with its licence files, taken from the PyPI wheels as scripts/setup.sh
# does and cached in $MIRRORSIGHT_CACHE.
set -euo pipefail
cd "$(dirname "$0")/.."

CARGO_DEB_VERSION="${CARGO_DEB_VERSION:-3.8.0}"
ORT_VERSION="${ORT_VERSION:-1.32.0}"
# The OpenVINO build of ONNX Runtime (as scripts/setup.sh installs it) and the OpenVINO release
# inside it: the onnxruntime-openvino wheel ships no licence files of OpenVINO or oneTBB, the
# openvino wheel of the same release does.
ORT_OPENVINO_VERSION="${ORT_OPENVINO_VERSION:-1.24.1}"
OPENVINO_VERSION="${OPENVINO_VERSION:-2025.4.1}"

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

# The PyPI wheels, cached in $MIRRORSIGHT_CACHE/wheels: wheel NAME VERSION prints its path.
wheels="$MIRRORSIGHT_CACHE/wheels"
wheel() {
  local file="${1//-/_}-$2-" found
  found=$(ls "$wheels/$file"*.whl 2>/dev/null | head -n 1 || true)
  if [ -z "$found" ]; then
    echo "package: fetching the $1 $2 wheel from PyPI" >&2
    mkdir -p "$wheels"
    python3 -m pip download -q --no-deps --only-binary=:all: "$1==$2" -d "$wheels"
    found=$(ls "$wheels/$file"*.whl | head -n 1)
  fi
  echo "$found"
}

# ONNX Runtime from the PyPI wheel: the library (as setup.sh installs it) and its third-party
# notices, staged where the package metadata (Cargo.toml) takes them from. Its own licence (MIT)
# is in the package's copyright file, where Debian policy 12.5 wants it (lintian:
# extra-license-file).
stage="$CARGO_TARGET_DIR/release/onnxruntime"
rm -rf "$stage" && mkdir -p "$stage/lib" "$stage/doc" "$stage/openvino" "$stage/doc-openvino"
wheel_cpu=$(wheel onnxruntime "$ORT_VERSION")
unzip -q -o -j "$wheel_cpu" "onnxruntime/capi/libonnxruntime.so.$ORT_VERSION" -d "$stage/lib"
unzip -q -o -j "$wheel_cpu" onnxruntime/ThirdPartyNotices.txt -d "$stage/doc"
ln -s "libonnxruntime.so.$ORT_VERSION" "$stage/lib/libonnxruntime.so"

# The OpenVINO build (onnxruntime.provider = "openvino"), installed in /usr/lib/mirrorsight/openvino/
# where src/vision/runtime.rs looks for it: the shared libraries of the wheel's capi/ folder, which
# find each other through $ORIGIN, and where OpenVINO loads its device plugins from. The wheel
# holds byte-identical copies instead of symlinks (libopenvino.so, .so.2541 and .so.2025.4.1 are
# one 25 MB file): each library is shipped once, under its longest (most versioned) name, and
# its other names become symlinks to it. Left out, as nothing the daemon does loads them:
# - libopenvino_intel_npu_plugin.so (6 MB): the NPU of Intel Core Ultra processors, usable only
#   with Intel's NPU user-mode driver, which Debian does not package; a kiosk has an Intel CPU
#   ("CPU", the default device) and at most an iGPU ("GPU", libopenvino_intel_gpu_plugin.so,
#   kept). A mirror with an NPU can take every library of the wheel from scripts/setup.sh
#   (/usr/local/lib/mirrorsight/openvino/ comes first).
# - libopenvino_c.so*: OpenVINO's C API; ONNX Runtime's provider uses the C++ one.
# - libtbbmalloc.so: oneTBB asks for its allocator as libtbbmalloc.so.2, never under this name.
# libtbb.so.12 is kept for libopenvino.so's sake, though in the daemon Debian's libtbb12, which
# OpenCV links, is loaded first and serves OpenVINO too (one soname per process).
wheel_ov=$(wheel onnxruntime-openvino "$ORT_OPENVINO_VERSION")
capi=$(mktemp -d)
trap 'rm -rf "$capi"' EXIT
unzip -q -o -j "$wheel_ov" 'onnxruntime/capi/lib*.so*' -d "$capi"
rm -f "$capi"/libopenvino_intel_npu_plugin.so "$capi"/libopenvino_c.so* "$capi"/libtbbmalloc.so
for f in $(cd "$capi" && ls | awk '{ print length, $0 }' | sort -k1,1nr -k2 | cut -d' ' -f2); do
  [ -e "$capi/$f" ] || continue  # already linked to a longer name of the same library
  cp "$capi/$f" "$stage/openvino/$f"
  rm "$capi/$f"
  for other in "$capi"/*; do
    [ -e "$other" ] && cmp -s "$other" "$stage/openvino/$f" || continue
    ln -s "$f" "$stage/openvino/${other##*/}"
    rm "$other"
  done
done
ln -sfn "libonnxruntime.so.$ORT_OPENVINO_VERSION" "$stage/openvino/libonnxruntime.so"
test -f "$stage/openvino/libonnxruntime_providers_openvino.so"
# This wheel's ONNX Runtime libraries keep their symbol tables (6 MB of libonnxruntime.so.1.24.1;
# lintian: unstripped-binary-or-object). Stripped as dh_strip and cargo-deb strip (cargo-deb
# strips the *.so names anyway): the dynamic symbols the libraries find each other by stay.
find "$stage/openvino" -type f -exec strip --strip-unneeded --remove-section=.comment --remove-section=.note {} +
# Its notices: this ONNX Runtime build's (like the CPU one's), and OpenVINO's with those of
# oneDNN (its CPU kernels) and oneTBB from the openvino wheel of the same release. OpenVINO's and
# oneTBB's own licence (Apache-2.0) is in the package's copyright file.
unzip -q -o -j "$wheel_ov" onnxruntime/ThirdPartyNotices.txt -d "$stage/doc-openvino"
unzip -q -o -j "$(wheel openvino "$OPENVINO_VERSION")" \
  "openvino-$OPENVINO_VERSION.dist-info/licenses/licensing/*third-party-programs.txt" -d "$stage/doc-openvino"
# Debian policy 12.3: documentation over 4 kB is compressed.
gzip -9n "$stage"/doc/*.txt "$stage"/doc-openvino/*.txt

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
