#!/usr/bin/env bash
# The Python package (crates/colqwen-py): builds the CPU wheel from this checkout with maturin, and with `test`
# installs it into a fresh venv and runs its pytest suite (tiny fixture model on the CPU; the server tests start
# target/release/colqwen, built here if missing; $COLQWEN_BIN names another).
#   scripts/python-wheel.sh            # → target/wheels/colqwen-*-cp39-abi3-*.whl (one wheel for CPython ≥ 3.9)
#   scripts/python-wheel.sh test [pytest args...]
#   scripts/python-wheel.sh manylinux [test [pytest args...]]
# maturin and the test tools come from PyPI, pinned, into venvs under target/ (nothing is installed globally).
# The plain wheel reuses the workspace's build and is tagged for this machine's glibc (manylinux_2_35 here): what
# CI builds and tests. `manylinux` builds the wheel to publish, manylinux2014 (glibc ≥ 2.17, any x86-64 Linux of
# the last decade): linked by zig (the ziglang wheel from PyPI) against glibc 2.17's symbols, a build of its own
# under target/x86_64-unknown-linux-gnu (30 min wall / 14 min of CPU on the loaded 2-core dev box, 2026-12-08).
# The CUDA wheel: scripts/cuda-build.sh wheel.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"
py=${PYTHON:-python3}
tools=target/py-build
if [ ! -x "$tools/bin/maturin" ]; then
  "$py" -m venv "$tools"
  "$tools/bin/pip" install -q "maturin==1.16.0"
fi
rm -f target/wheels/colqwen-*.whl
if [ "${1:-}" = manylinux ]; then
  shift
  "$tools/bin/python" -c "import ziglang" 2>/dev/null || "$tools/bin/pip" install -q "ziglang==0.17.0"
  # maturin finds zig through the `python` on PATH (`python -m ziglang`).
  PATH="$repo/$tools/bin:$PATH" "$tools/bin/maturin" build --release -m crates/colqwen-py/Cargo.toml --zig \
    --compatibility manylinux2014 --out target/wheels
else
  "$tools/bin/maturin" build --release -m crates/colqwen-py/Cargo.toml --out target/wheels
fi
wheel=$(ls target/wheels/colqwen-*.whl)
echo "wheel: $wheel ($(du -k "$wheel" | cut -f1) KiB)"
[ "${1:-}" = test ] || exit 0
shift
venv=target/py-test
rm -rf "$venv"
"$py" -m venv "$venv"
# The package needs only numpy; the tests also use Pillow (page images), tqdm (the progress bar) and the
# official openai SDK (against colqwen serve's /v1/embeddings and /v1/models), and langchain-core (the example retriever).
"$venv/bin/pip" install -q "$wheel" "pytest==9.2.0" "pillow==13.0.0" "tqdm==4.70.1" "openai==3.63.0" \
  "langchain-core==1.8.1"
# The server tests run the colqwen binary of this checkout's target folder (CARGO_TARGET_DIR if set).
target_dir=$(cd "${CARGO_TARGET_DIR:-target}" && pwd)
export COLQWEN_BIN=${COLQWEN_BIN:-$target_dir/release/colqwen}
if [ ! -x "$COLQWEN_BIN" ]; then
  cargo build --release -p colqwen-cli
fi
# From the tests' folder, so that `import colqwen` is the installed wheel, not the source tree.
cd crates/colqwen-py/tests
exec "../../../$venv/bin/python" -m pytest -q "$@"
