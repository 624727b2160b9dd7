#!/usr/bin/env bash
# Idempotent machine setup for mirrorsight on Debian/Ubuntu: system packages,
# the ONNX Runtime shared library, and nothing else. Safe to run again and again.
set -euo pipefail

ORT_VERSION="${ORT_VERSION:-1.32.0}"
# The OpenVINO build of ONNX Runtime (onnxruntime.provider = "openvino"): its own, older ONNX
# Runtime with OpenVINO 2025.4 inside, from the PyPI wheel, in $ORT_DIR/openvino.
ORT_OPENVINO_VERSION="${ORT_OPENVINO_VERSION:-1.24.1}"
ORT_DIR="${MIRRORSIGHT_ORT_DIR:-/usr/local/lib/mirrorsight}"

# Build: OpenCV (video decode), clang (opencv/nokhwa bindings), cmake+nasm (bundled libjpeg-turbo).
# Run: ffmpeg (demo clip), fonts (the overlay's Chinese caption).
# Tests: Xvfb + x11-apps + imagemagick + zbar-tools (window screenshots), systemd (unit verification).
PACKAGES=(
  build-essential pkg-config clang libclang-dev libopencv-dev cmake nasm
  ffmpeg fonts-wqy-microhei python3 python3-pip curl ca-certificates unzip
  xvfb x11-apps x11-utils imagemagick zbar-tools systemd
)

sudo_if_needed() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  sudo_if_needed apt-get update -qq
  sudo_if_needed env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if ! command -v cargo >/dev/null 2>&1; then
  echo "setup: cargo not found; install Rust (https://rustup.rs) and run again" >&2
  exit 1
fi

# ONNX Runtime: the C library inside the PyPI wheel (no Python needed at run time).
lib="$ORT_DIR/libonnxruntime.so.$ORT_VERSION"
if [ ! -f "$lib" ]; then
  echo "setup: fetching ONNX Runtime $ORT_VERSION from PyPI"
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  python3 -m pip download -q --no-deps --only-binary=:all: "onnxruntime==$ORT_VERSION" -d "$tmp"
  wheel=$(ls "$tmp"/onnxruntime-*.whl)
  unzip -q -o -j "$wheel" "onnxruntime/capi/libonnxruntime.so.$ORT_VERSION" -d "$tmp/lib"
  sudo_if_needed mkdir -p "$ORT_DIR"
  sudo_if_needed install -m 0644 "$tmp/lib/libonnxruntime.so.$ORT_VERSION" "$lib"
fi
sudo_if_needed ln -sf "libonnxruntime.so.$ORT_VERSION" "$ORT_DIR/libonnxruntime.so"

# OpenVINO: every shared library of the wheel's capi/ folder (ONNX Runtime, its OpenVINO
# provider, OpenVINO and its CPU/GPU/NPU plugins, TBB; they find each other through $ORIGIN),
# not the Python binding.
ov_dir="$ORT_DIR/openvino"
ov_lib="$ov_dir/libonnxruntime.so.$ORT_OPENVINO_VERSION"
if [ ! -f "$ov_lib" ] || [ ! -f "$ov_dir/libonnxruntime_providers_openvino.so" ]; then
  echo "setup: fetching ONNX Runtime $ORT_OPENVINO_VERSION with OpenVINO from PyPI"
  tmp_ov=$(mktemp -d)
  python3 -m pip download -q --no-deps --only-binary=:all: "onnxruntime-openvino==$ORT_OPENVINO_VERSION" -d "$tmp_ov"
  unzip -q -o -j "$tmp_ov"/onnxruntime_openvino-*.whl 'onnxruntime/capi/lib*.so*' -d "$tmp_ov/lib"
  sudo_if_needed mkdir -p "$ov_dir"
  for f in "$tmp_ov"/lib/lib*.so*; do sudo_if_needed install -m 0644 "$f" "$ov_dir/"; done
  rm -rf "$tmp_ov"
fi
sudo_if_needed ln -sf "libonnxruntime.so.$ORT_OPENVINO_VERSION" "$ov_dir/libonnxruntime.so"
echo "setup: ready (ONNX Runtime at $ORT_DIR/libonnxruntime.so, with OpenVINO at $ov_dir/libonnxruntime.so)"
