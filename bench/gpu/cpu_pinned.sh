#!/usr/bin/env bash
# CPU measurements on a quiet machine (the GPU host's CPU, pinned to 2 cores with taskset, like the 2-core dev
# box), in ONE device call: the store's exact and two-stage search at 10k synthetic 768-row pages
# (`bench_search`: against a plain-loop brute force in RAM in the same run), then `colqwen serve` with the
# tiny model on the CPU (search p50/p95 over HTTP at 1/8/32 clients, idle and during an ingest).
# Expects (carried): .carry/cpu-colqwen.xz, .carry/cpu-colqwen-bench.xz, .carry/bench_search.xz (CPU release
# builds, packed by scripts/pack-carry.sh --cpu). Writes $OUT/cpu_pinned.log.
set -uo pipefail
OUT=${OUT:-/tmp/bench-out}
mkdir -p "$OUT"
exec > >(tee -a "$OUT/cpu_pinned.log") 2>&1
for b in cpu-colqwen cpu-colqwen-bench bench_search; do
  python3 -c 'import lzma, shutil, sys; shutil.copyfileobj(lzma.open(sys.argv[1]), open(sys.argv[2], "wb"))' ".carry/$b.xz" "/tmp/$b"
  chmod +x "/tmp/$b"
done
lscpu | grep -E "Model name|^CPU\(s\)"
echo "# bench_search 10000 pages f16, 10 queries, taskset -c 0,1"
taskset -c 0,1 /tmp/bench_search /tmp/bs 10000 f16 10
rm -rf /tmp/bs
echo "# colqwen serve, tiny model, CPU, taskset -c 0,1 (server and clients on the same 2 cores)"
BIN=/tmp/cpu-colqwen BENCH=/tmp/cpu-colqwen-bench RUN_SECONDS=${RUN_SECONDS:-8} taskset -c 0,1 bash bench/serve/run.sh
