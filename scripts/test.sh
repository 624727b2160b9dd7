#!/usr/bin/env bash
# Sets the machine up and runs every test of the workspace (what CI runs).
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
./scripts/setup-test.sh
. scripts/env.sh
# The hub's storage tests run against a real PostgreSQL server on loopback.
eval "$(./scripts/pg.sh)"
# Release profile: the replay tests run real models on real footage.
cargo build --release --workspace --all-targets --locked
# The Debian packages of exactly these binaries (checked with lintian), for tests/package.rs.
./scripts/package.sh --no-build --fast
cargo test --release --workspace --locked -- --test-threads 2
