#!/usr/bin/env bash
# Issue 10's recall on ≥ 10k DISTINCT page images, in ONE device call. The CPU dataset (/work/benchdata/small)
# has 300 embedded images stretched to 10k+ pages by vector noise; on the GPU the tiny fixture model embeds
# IMAGES (default 10,000) crops/shifts/zooms of the 148 rendered pages of fixtures/pdfs in a few minutes
# (`colqwen-bench scale-data`, kept in /tmp/scale-d$IMAGES while the machine stays warm), then `colqwen-bench
# scale` measures the store's exact, two-stage and auto modes at SIZES (default 10000; larger sizes stretch the
# distinct images by vector noise) with every binary given: the CUDA build's colqwen-bench, and each
# .carry/cpu-bench-*.xz (CPU builds of other commits, e.g. the previous coarse stage), on the same data.
# CANDIDATES (default store; e.g. store,compact), EXACT (exact-mode queries, default 10), TRUTH, SIZES, AUGMENT
# (how sizes beyond IMAGES are made: copies, the default, or stitch — thirds of three images joined).
# Recall does not depend on the machine; latencies here are the host's 16 cores (the 2-core figures come from
# the dev box). Expects .carry/colqwen-bench.xz (scripts/cuda-build.sh -p colqwen-cli -p colqwen-bench, then
# scripts/pack-carry.sh). Writes $OUT/scale_distinct.log and one table per binary.
set -uo pipefail
source bench/gpu/common.sh
open_log scale_distinct.log
unpack_binaries
cuda_env
lscpu | grep -E "Model name|^CPU\(s\)"
IMAGES=${IMAGES:-10000}
D=/tmp/scale-d$IMAGES
if [ ! -f "$D/meta.json" ]; then
  rm -rf "$D"
  /tmp/colqwen-bench scale-data fixtures/tiny/colqwen2.5-tiny-v0.2 "$D" "$IMAGES" bench/scale/queries.txt \
    fixtures/pdfs/*.pdf || exit 1
fi
rc=0
for b in /tmp/colqwen-bench /tmp/cpu-bench-*; do
  [ -x "$b" ] || continue
  name=$(basename "$b")
  echo "== $name"
  "$b" scale "$D" /tmp/scale-work "${SIZES:-10000}" --candidates "${CANDIDATES:-store}" --truth-queries "${TRUTH:-120}" \
    --exact-queries "${EXACT:-10}" --cold-queries 0 --augment "${AUGMENT:-copies}" > "$OUT/$name.md" || rc=1
  cat "$OUT/$name.md"
  rm -rf /tmp/scale-work
done
exit $rc
