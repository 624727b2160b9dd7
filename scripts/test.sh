#!/usr/bin/env bash
# Sets the machine up and runs every test of the workspace (what CI runs).
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
. scripts/env.sh
# Release profile: the replay tests run real models on real footage.
cargo build --release --workspace --all-targets --locked
cargo test --release --workspace --locked -- --test-threads 2
