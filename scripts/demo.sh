#!/usr/bin/env bash
# Sets the machine up and replays the bundled demo clip: events on stdout, and the mirror's
# screen in a window (when a display is available) or as PNG snapshots in out/demo/.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
. scripts/env.sh
cargo build --release --locked --bin mirrorsight >&2
out=out/demo
rm -rf "$out" && mkdir -p "$out"
display=headless
if [ -n "${DISPLAY:-}" ] && [ "${MIRRORSIGHT_DEMO_HEADLESS:-0}" != 1 ]; then display=window; fi
"$MIRRORSIGHT_BIN" replay assets/demo.mp4 --config assets/demo.toml --display "$display" --snapshot-dir "$out" --events -
echo "mirror snapshots: $(ls "$out" | wc -l) PNG files in $out/" >&2
