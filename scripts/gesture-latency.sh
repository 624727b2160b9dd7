#!/usr/bin/env bash
# Gesture latency as issue #13 counts it: `mirrorsight eval --json` on the five labelled clips
# with gestures in ../shared/footage (sense, asl_yes, the two MediaPipe test videos,
# tfjs_asl_hand), every matched gesture's delay after its labelled end pooled, p50/p95/max.
#
#   scripts/gesture-latency.sh [--realtime] [--set KEY=VALUE ...]
#
# Media time by default (replay never drops a frame); --realtime paces the clip like a camera,
# so the processing delay of this machine is added. The release binary must be built
# (cargo build --release); --set is passed to every eval (to compare a lever).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/env.sh
[ -x "$MIRRORSIGHT_BIN" ] || { echo "gesture-latency: build first (cargo build --release)" >&2; exit 1; }
footage=../shared/footage
clips=(sense_reactive_gesture_test_1.mp4 asl_yes.mkv mediapipe_gesture_recognizer_test_video.mp4
  mediapipe_hand_landmarker_test_video.mp4 tfjs_asl_hand.25fps.mp4)
reports=$(mktemp)
trap 'rm -f "$reports"' EXIT
for clip in "${clips[@]}"; do
  [ -f "$footage/$clip" ] || { echo "gesture-latency: $footage/$clip not found" >&2; exit 1; }
  "$MIRRORSIGHT_BIN" eval "$footage/$clip" --labels "$footage/labels/${clip%.*}.json" --json "$@" \
    2>/dev/null | tr -d '\n' >> "$reports"
  echo >> "$reports"
done
python3 - "$reports" "$*" <<'PY'
import json, math, sys
samples = []
for line in open(sys.argv[1]):
    if line.strip():
        samples += (json.loads(line).get("latency") or {}).get("samples_s") or []
samples.sort()
if not samples:
    sys.exit("gesture-latency: no matched gestures")
q = lambda p: samples[max(0, math.ceil(p * len(samples)) - 1)]
print(f"gesture latency after the labelled end ({sys.argv[2] or 'media time'}): "
      f"p50 {q(0.5) * 1000:+.0f} ms, p95 {q(0.95) * 1000:+.0f} ms, max {samples[-1] * 1000:+.0f} ms "
      f"over {len(samples)} gestures")
PY
