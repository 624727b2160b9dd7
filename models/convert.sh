#!/usr/bin/env bash
# Rebuild the ONNX models in models/ from MediaPipe's TFLite files (maintainer's step).
#
# Idempotent: the venv, the downloaded packages and the extracted files live in
# ~/.cache/mirrorsight-convert (override with MIRRORSIGHT_CONVERT_CACHE) and are
# reused when present and intact. Needs python3.11 (+venv), pip and npm, and access
# to PyPI and the npm registry. Writes models/*.onnx and models/manifest.json, then
# runs models/verify.py (ONNX Runtime vs the TFLite interpreter).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
CACHE="${MIRRORSIGHT_CONVERT_CACHE:-$HOME/.cache/mirrorsight-convert}"
VENV="$CACHE/venv"
SRC="$CACHE/src"
WORK="$CACHE/work"
PY="${PYTHON:-python3.11}"
command -v "$PY" >/dev/null || PY=python3

MP_VERSION=0.10.21
MP_WHEEL="mediapipe-${MP_VERSION}-cp311-cp311-manylinux_2_28_x86_64.whl"
MP_WHEEL_SHA=05dc4a9e593655a79558d05d6227d31018c2537a4bd3362b51e230cf22aecfe3
NPM_POSE=@mediapipe/pose@0.5.1675469404
NPM_POSE_TGZ=mediapipe-pose-0.5.1675469404.tgz
NPM_POSE_SHA=8bb349a7b3a3ba699df23be804ddd3b3eab810b50b15406894be257859388a84

mkdir -p "$CACHE" "$SRC" "$WORK"

# 1. venv with pinned tensorflow-cpu, tf2onnx, onnxruntime (re-installed only when
#    requirements-convert.txt changes)
REQ="$HERE/requirements-convert.txt"
STAMP="$VENV/.requirements.sha256"
REQ_SHA="$(sha256sum "$REQ" | cut -d' ' -f1)"
if [ ! -x "$VENV/bin/python" ] || [ "$(cat "$STAMP" 2>/dev/null)" != "$REQ_SHA" ]; then
  echo "== venv $VENV"
  "$PY" -m venv "$VENV"
  nice "$VENV/bin/pip" install -q --disable-pip-version-check -r "$REQ"
  echo "$REQ_SHA" > "$STAMP"
fi

have() { [ -f "$1" ] && [ "$(sha256sum "$1" | cut -d' ' -f1)" = "$2" ]; }

# 2. source packages
if ! have "$SRC/$MP_WHEEL" "$MP_WHEEL_SHA"; then
  echo "== pip download mediapipe==$MP_VERSION"
  "$VENV/bin/pip" download -q --disable-pip-version-check --no-deps --only-binary=:all: \
    --platform manylinux_2_28_x86_64 --python-version 3.11 --implementation cp \
    -d "$SRC" "mediapipe==$MP_VERSION"
  have "$SRC/$MP_WHEEL" "$MP_WHEEL_SHA" || { echo "sha256 mismatch: $SRC/$MP_WHEEL" >&2; exit 1; }
fi
if ! have "$SRC/$NPM_POSE_TGZ" "$NPM_POSE_SHA"; then
  echo "== npm pack $NPM_POSE"
  (cd "$SRC" && npm pack --silent "$NPM_POSE" >/dev/null)
  have "$SRC/$NPM_POSE_TGZ" "$NPM_POSE_SHA" || { echo "sha256 mismatch: $SRC/$NPM_POSE_TGZ" >&2; exit 1; }
fi

# 3. extract, densify pose_detection, tf2onnx, manifest.json
export TF_CPP_MIN_LOG_LEVEL=2 PYTHONHASHSEED=0 PYTHONWARNINGS=ignore
nice "$VENV/bin/python" "$HERE/convert.py" --src "$SRC" --work "$WORK" --out "$HERE"

# 4. ONNX Runtime vs TFLite interpreter on real images
nice "$VENV/bin/python" "$HERE/verify.py" --models "$HERE" --tflite "$WORK" 2>&1 | grep -v 'XNNPACK delegate'
exit "${PIPESTATUS[0]}"
