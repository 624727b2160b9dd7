#!/usr/bin/env bash
# Rebuild the ONNX models in models/ from MediaPipe's TFLite files (maintainer's step).
#
# Idempotent: the venv, the downloaded packages and the extracted files live in
# ~/.cache/mirrorsight-convert (override with MIRRORSIGHT_CONVERT_CACHE) and are
# reused when present and intact. Needs python3.11 (+venv), pip and npm, and access
# to PyPI and the npm registry. Writes models/*.onnx and models/manifest.json, then
# cuts the heads the daemon never reads out of pose_landmark_lite (models/trim.py, step 3b),
# runs models/verify.py (ONNX Runtime vs the TFLite interpreter), then makes the INT8 forms
# (onnxruntime.precision = "int8", step 5).
#
#   models/convert.sh              everything
#   models/convert.sh --int8-only  step 5 alone, from the committed FP32 models
#
# Step 5 replays the shared footage (MIRRORSIGHT_FOOTAGE, default ../shared/footage) and the
# demo clip through `mirrorsight bench --calibration-dump` (built here, release) to collect the
# tensors each model really gets, and quantises the models in INT8_MODELS on them
# (models/quantize.py). INT8_MODELS lists only the models whose INT8 form lost nothing in
# `mirrorsight eval` and its robustness suite (see models/README.md).
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

INT8_MODELS=(hand_landmark_lite hand_landmark_full)
# Step 3b: the outputs of each model the daemon reads; every other head is cut out. ONNX
# Runtime computes every output on every run, and pose_landmark_lite's segmentation mask and
# heatmaps are more than half of its time (models/README.md).
TRIM=(pose_landmark_lite=Identity,Identity_1)
CALIBRATION_EVERY=4
CALIBRATION_CLIPS=(
  sense_reactive_gesture_test_1.mp4 one-by-one-person-detection.mp4
  mediapipe_gesture_recognizer_test_video.mp4 mediapipe_hand_landmarker_test_video.mp4
  tfjs_asl_hand.25fps.mp4 asl_yes.mkv asl_want.mkv tfjs_pose_squats.mp4
)

int8_only=0
case "${1:-}" in
  --int8-only) int8_only=1 ;;
  "") ;;
  *) echo "convert.sh: unknown argument $1 (use --int8-only or nothing)" >&2; exit 2 ;;
esac

mkdir -p "$CACHE" "$SRC" "$WORK"

# 5. INT8: calibration tensors from the daemon's own crops, then static QDQ quantisation.
int8() {
  local root footage qvenv dump bin clips=()
  root="$(cd "$HERE/.." && pwd)"
  footage="${MIRRORSIGHT_FOOTAGE:-$root/../shared/footage}"
  qvenv="$CACHE/venv-quantize"
  local qreq="$HERE/requirements-quantize.txt" qstamp="$CACHE/venv-quantize/.requirements.sha256"
  if [ ! -x "$qvenv/bin/python" ] || [ "$(cat "$qstamp" 2>/dev/null)" != "$(sha256sum "$qreq" | cut -d' ' -f1)" ]; then
    echo "== venv $qvenv"
    "$PY" -m venv "$qvenv"
    nice "$qvenv/bin/pip" install -q --disable-pip-version-check -r "$qreq"
    sha256sum "$qreq" | cut -d' ' -f1 > "$qstamp"
  fi
  for c in "${CALIBRATION_CLIPS[@]}"; do
    [ -f "$footage/$c" ] || { echo "convert.sh: calibration clip $footage/$c not found (set MIRRORSIGHT_FOOTAGE)" >&2; exit 1; }
    clips+=("$footage/$c")
  done
  clips+=("$root/assets/demo.mp4")
  (cd "$root" && . scripts/env.sh && cargo build --release --locked --quiet --bin mirrorsight)
  bin="$(cd "$root" && . scripts/env.sh && echo "$MIRRORSIGHT_BIN")"
  dump="$WORK/calibration"
  rm -rf "$dump"
  for c in "${clips[@]}"; do
    echo "== calibration tensors from $(basename "$c")"
    # FP32 on the CPU provider: the reference answers decide which crops are taken.
    "$bin" bench "$c" --json --set onnxruntime.precision=fp32 --set onnxruntime.provider=cpu \
      --calibration-dump "$dump" --calibration-every "$CALIBRATION_EVERY" >/dev/null
  done
  nice "$qvenv/bin/python" "$HERE/quantize.py" --models "$HERE" --calibration "$dump" \
    --every "$CALIBRATION_EVERY" --clips "${clips[@]}" -- "${INT8_MODELS[@]}"
}
if [ "$int8_only" -eq 1 ]; then
  int8
  exit 0
fi

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

# 3b. cut out the heads nobody reads (the manifest records what was removed)
nice "$VENV/bin/python" "$HERE/trim.py" --models "$HERE" "${TRIM[@]}"

# 4. ONNX Runtime vs TFLite interpreter on real images
nice "$VENV/bin/python" "$HERE/verify.py" --models "$HERE" --tflite "$WORK" 2>&1 | grep -v 'XNNPACK delegate'
[ "${PIPESTATUS[0]}" -eq 0 ] || exit 1

int8
