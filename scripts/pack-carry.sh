#!/usr/bin/env bash
# Packs the CUDA binaries built by scripts/cuda-build.sh into .carry/ for the device tool (64 MiB limit on what a
# call carries: stripped and xz-compressed, ≈ 17 MB for `colqwen`). bench/gpu/run.sh unpacks them with Python's
# lzma, so the GPU machine needs no xz.
#   .carry/colqwen.xz, .carry/colqwen-bench.xz       from target-cuda/release/
#   .carry/kernel-tests.xz                           the newest colqwen-model lib test binary, if built
# With --cpu: .carry/cpu-colqwen.xz, cpu-colqwen-bench.xz, bench_search.xz from target/release/ (CPU builds).
set -euo pipefail
cd "$(dirname "$0")/.."
rm -f .carry/*.gz  # the earlier gzip format
mkdir -p .carry
pack() { strip -o "/tmp/pack-$2" "$1" && xz -T2 -6 -c "/tmp/pack-$2" > ".carry/$2.xz" && rm "/tmp/pack-$2"; }
if [ "${1:-}" = --cpu ]; then
  # CPU release builds (cargo build --release --workspace --examples) for bench/gpu/cpu_pinned.sh.
  pack target/release/colqwen cpu-colqwen
  pack target/release/colqwen-bench cpu-colqwen-bench
  pack target/release/examples/bench_search bench_search
  ls -la .carry
  exit 0
fi
for b in colqwen colqwen-bench; do pack "target-cuda/release/$b" "$b"; done
t=$(ls -t target-cuda/release/deps/colqwen_model-* 2>/dev/null | grep -v '\.d$' | head -1 || true)
if [ -n "$t" ]; then pack "$t" kernel-tests; fi
ls -la .carry
