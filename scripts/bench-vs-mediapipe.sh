#!/usr/bin/env bash
# mirrorsight against MediaPipe, side by side on this machine: the anchor of issue #13.
#
#   scripts/bench-vs-mediapipe.sh [--rounds N] [--set KEY=VALUE ...] [CLIP ...]
#   scripts/bench-vs-mediapipe.sh --setup-only      (install the MediaPipe venv, then stop)
#
# Sets MediaPipe Python 0.10.21 up in a venv under ~/.cache/mirrorsight (PyPI; the wheel lacks
# pose_landmark_lite.tflite, taken from the npm package @mediapipe/pose and checked by sha256),
# builds mirrorsight (release), then runs both on the same clips, alternating which goes first,
# N rounds (default 3), a fresh process each run, and prints one table of medians: frames/s,
# CPU ms per frame, p50/p95 ms per frame, peak RSS and the ratios, with the machine's CPU model
# and core count. `--set` is passed to `mirrorsight bench` (to compare a lever).
#
# What is timed: MediaPipe (Hands lite, 2 hands + Pose lite, video mode) only inside
# `process()`, decoding excluded; mirrorsight's whole replay with its default config, decoding
# included (the capture thread decodes while vision runs). CPU is the process's CPU time over
# the same window. Default clips: the sense clip and one-by-one from ../shared/footage.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/env.sh

MEDIAPIPE_VERSION=0.10.21
POSE_NPM="@mediapipe/pose@0.5.1675469404"
POSE_LITE_SHA256=f17bfbecadb61c3be1baa8b8d851cc6619c870a87167b32848ad20db306b9d61

rounds=3
setup_only=0
sets=()
clips=()
while [ $# -gt 0 ]; do
  case "$1" in
    --rounds) rounds="$2"; shift 2 ;;
    --set) sets+=(--set "$2"); shift 2 ;;
    --setup-only) setup_only=1; shift ;;
    -h|--help) sed -n '2,18p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    -*) echo "bench-vs-mediapipe: unknown option $1 (see --help)" >&2; exit 2 ;;
    *) clips+=("$1"); shift ;;
  esac
done
if [ ${#clips[@]} -eq 0 ]; then
  clips=(../shared/footage/sense_reactive_gesture_test_1.mp4 ../shared/footage/one-by-one-person-detection.mp4)
fi
for clip in "${clips[@]}"; do
  [ -f "$clip" ] || { echo "bench-vs-mediapipe: clip $clip not found" >&2; exit 1; }
done
case "$rounds" in ''|*[!0-9]*|0) echo "bench-vs-mediapipe: --rounds needs a positive number" >&2; exit 2 ;; esac

# --- MediaPipe in its own venv ------------------------------------------------------------
venv="$MIRRORSIGHT_CACHE/mediapipe-$MEDIAPIPE_VERSION"
if [ ! -f "$venv/.ready" ]; then
  echo "bench-vs-mediapipe: installing mediapipe $MEDIAPIPE_VERSION into $venv" >&2
  /usr/bin/python3 -m venv "$venv"
  "$venv/bin/pip" install -q "mediapipe==$MEDIAPIPE_VERSION"
  modules=$("$venv/bin/python" -c 'import os, mediapipe; print(os.path.join(os.path.dirname(mediapipe.__file__), "modules"))')
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  (cd "$tmp" && npm pack --silent "$POSE_NPM" >/dev/null)
  tar -xzf "$tmp"/mediapipe-pose-*.tgz -C "$tmp" package/pose_landmark_lite.tflite
  echo "$POSE_LITE_SHA256  $tmp/package/pose_landmark_lite.tflite" | sha256sum -c --quiet -
  install -m 0644 "$tmp/package/pose_landmark_lite.tflite" "$modules/pose_landmark/pose_landmark_lite.tflite"
  touch "$venv/.ready"
fi
[ "$setup_only" -eq 0 ] || { echo "bench-vs-mediapipe: MediaPipe $MEDIAPIPE_VERSION ready in $venv" >&2; exit 0; }

# --- mirrorsight ---------------------------------------------------------------------------
cargo build --release --locked --quiet --bin mirrorsight
bin="$MIRRORSIGHT_BIN"

# --- alternating runs ----------------------------------------------------------------------
results=$(mktemp)
# Both runners' diagnostics (MediaPipe's TFLite chatter, mirrorsight's warnings) go here.
log="$MIRRORSIGHT_CACHE/bench-vs-mediapipe.log"
: >"$log"
trap 'echo "bench-vs-mediapipe: failed; the runners'"'"' output is in $log" >&2' ERR
run_mediapipe() { "$venv/bin/python" scripts/bench_mediapipe.py "$1" 2>>"$log" | tail -n 1 >>"$results"; }
run_mirrorsight() { "$bin" bench "$1" --json "${sets[@]}" 2>>"$log" >>"$results"; }
for round in $(seq 1 "$rounds"); do
  for clip in "${clips[@]}"; do
    echo "bench-vs-mediapipe: round $round/$rounds, $(basename "$clip")" >&2
    # Alternate who goes first, so neither always runs on a warmer (or busier) machine.
    if [ $((round % 2)) -eq 1 ]; then
      run_mediapipe "$clip"; run_mirrorsight "$clip"
    else
      run_mirrorsight "$clip"; run_mediapipe "$clip"
    fi
  done
done

cpu_model=$(grep -m1 '^model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')
cores=$(nproc)
python3 scripts/bench_table.py "$results" \
  --machine "$cpu_model, $cores cores, $(uname -sr)" \
  --load "$(cut -d' ' -f1-3 /proc/loadavg)" \
  --command "scripts/bench-vs-mediapipe.sh --rounds $rounds ${sets[*]} ${clips[*]}"
rm -f "$results"
