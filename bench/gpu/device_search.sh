#!/usr/bin/env bash
# Exact MaxSim on the GPU against the store's CPU scan (issue 10), in ONE device call: `colqwen-bench
# device-search` on synthetic 768-row f16 pages at SIZES (default 10k and 100k pages: 19.7 GB of vectors on the
# machine's disk at 100k, in /tmp/ds, removed afterwards), QUERIES searches with the device scorer and
# CPU_QUERIES with the CPU scan on all cores per size, the top-10 overlap between the two.
# Expects (carried): .carry/colqwen-bench.xz (scripts/cuda-build.sh -p colqwen-cli -p colqwen-bench, then
# scripts/pack-carry.sh). Writes $OUT/device_search.log.
set -uo pipefail
source bench/gpu/common.sh
open_log device_search.log
unpack_binaries
cuda_env
lscpu | grep -E "Model name|^CPU\(s\)" | tee "$OUT/cpu.txt"
rm -rf /tmp/ds
/tmp/colqwen-bench device-search /tmp/ds "${SIZES:-10000,100000}" "${QUERIES:-200}" "${CPU_QUERIES:-10}"
rc=$?
df -h /tmp | tail -1
rm -rf /tmp/ds
exit $rc
