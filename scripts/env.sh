# Sourced by the project's scripts: one place for build locations.
# The cargo target directory lives outside the clone so repeated runs (and CI) reuse it.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/mirrorsight/target}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
MIRRORSIGHT_BIN="$CARGO_TARGET_DIR/release/mirrorsight"
# Test-only tools (the moto venv, the throwaway PostgreSQL cluster) live here too.
export MIRRORSIGHT_CACHE="${MIRRORSIGHT_CACHE:-$HOME/.cache/mirrorsight}"
