#!/usr/bin/env bash
# Builds the `colqwen` binary with `--features cuda` on a machine WITHOUT a GPU or CUDA toolkit (this project's
# 2-core dev box), following shared/reference/cuda_build.md:
#   1. CUDA 13.0 compiler wheels from PyPI into a throwaway venv (the GPU machine's driver is r580 = CUDA 13.0:
#      PTX from a newer nvcc could be rejected, so 13.0.x is pinned);
#   2. a toolkit root in the layout cudarc/cudaforge expect (bin/include/nvvm links, lib64 sonames);
#   3. a link-time stub libcuda.so (the real driver serves at run time), from cudarc's source, which
#      `cargo metadata` fetches: the script works from a fresh clone with an empty cargo registry;
#   4. cargo build --release --features cuda into target-cuda/ (then scripts/pack-carry.sh for the device tool).
# Usage: scripts/cuda-build.sh [cargo args...]        (default: -p colqwen-cli)
#        scripts/cuda-build.sh test [cargo args...]   (test binaries only: cargo test --no-run)
#        scripts/cuda-build.sh wheel [maturin args...] (the Python package with CUDA: target-cuda/wheels/colqwen-*.whl;
#                                                     it loads the same CUDA 13 libraries as the binary, from
#                                                     LD_LIBRARY_PATH on the GPU machine; colqwen.CUDA is True)
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
work=${COLQWEN_CUDA_WORK:-$HOME/.cache/colqwen-cuda}
venv=$work/venv
root=$work/toolkit
mkdir -p "$work"

if [ ! -x "$venv/bin/nvcc" ] && [ ! -e "$root/bin/nvcc" ]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q "cuda-toolkit[cublas,cudart,nvrtc,curand,nvcc,cccl,crt,nvvm]==13.0.2"
fi
cu13=$("$venv/bin/python" -c 'import nvidia, os; print(os.path.join(list(nvidia.__path__)[0], "cu13"))')

mkdir -p "$root/lib64/stubs"
for d in bin include nvvm; do ln -sfn "$cu13/$d" "$root/$d"; done
for l in cublas cublasLt nvrtc cudart; do ln -sfn "$(ls "$cu13"/lib/lib$l.so.13* | head -1)" "$root/lib64/lib$l.so"; done
ln -sfn "$(ls "$cu13"/lib/libcurand.so.10* | head -1)" "$root/lib64/libcurand.so"

if [ ! -f "$root/lib64/stubs/libcuda.so" ]; then
  # Driver API link stub: one empty function per symbol cudarc declares. cudarc's source is found through
  # `cargo metadata` (with the feature that pulls it in), which also downloads it on a fresh clone; no earlier
  # build has to have fetched it, and CARGO_HOME may be anywhere.
  cudarc=$(cd "$repo" && cargo metadata --format-version 1 --locked --features colqwen-model/cuda |
    python3 -c 'import json, os, sys
ps = [p for p in json.load(sys.stdin)["packages"] if p["name"] == "cudarc"]
if not ps: sys.exit("cuda-build.sh: cudarc is not in the dependency graph (candle-core/cuda pulls it in)")
print(os.path.dirname(ps[-1]["manifest_path"]))')
  grep -ohE "pub unsafe fn cu[A-Za-z0-9_]+" "$cudarc/src/driver/sys/mod.rs" | awk '{print $4}' | sort -u |
    sed 's/.*/void &(void) {}/' > "$work/cuda_stub.c"
  gcc -shared -fPIC -Wl,-soname,libcuda.so.1 -o "$root/lib64/stubs/libcuda.so" "$work/cuda_stub.c"
  ln -sfn libcuda.so "$root/lib64/stubs/libcuda.so.1"
fi

export CUDA_HOME=$root CUDA_PATH=$root CUDA_ROOT=$root
export PATH=$root/bin:$PATH
export LIBRARY_PATH=$root/lib64:$root/lib64/stubs:${LIBRARY_PATH:-}
export CUDA_COMPUTE_CAP=90 CUDARC_CUDA_VERSION=13000 CUDAFORGE_THREADS=2
cd "$repo"
if [ "${1:-}" = wheel ]; then
  shift
  [ -x "$venv/bin/maturin" ] || "$venv/bin/pip" install -q "maturin==1.16.0"
  exec "$venv/bin/maturin" build --release -m crates/colqwen-py/Cargo.toml --features cuda \
    --target-dir target-cuda --out target-cuda/wheels "$@"
fi
cmd=build
if [ "${1:-}" = test ]; then cmd=test; shift; set -- --no-run "$@"; fi
if [ $# -eq 0 ]; then set -- -p colqwen-cli; fi
cargo "$cmd" --release --features cuda --target-dir target-cuda "$@"
