# Sourced by the scripts of bench/serve: the repository root as the working folder, and the binaries and the
# model they use (each overridable from the environment).
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$repo"
BIN=${BIN:-${CARGO_TARGET_DIR:-target}/release/colqwen}
BENCH=${BENCH:-${CARGO_TARGET_DIR:-target}/release/colqwen-bench}
MODEL=${MODEL:-fixtures/tiny/colqwen2.5-tiny-v0.2}
