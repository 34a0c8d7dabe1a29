#!/usr/bin/env bash
# The Weaviate backend against the embedded store on this machine (see bench/src/weaviate.rs):
#   bench/weaviate/run.sh PAGES ROWS MUVERA QUERIES [STORE]   (STORE: 1 to compare with the embedded store)
# Starts a dedicated Weaviate node (HTTP 8130, ports shifted by slot 50) in $OUT (default target/bench-weaviate),
# runs colqwen-bench, then reports the node's disk (du of its data folder) and RSS (VmRSS) and the store's disk,
# and removes the data. Needs `cargo build --release -p colqwen-bench` (binary: $CARGO_TARGET_DIR or target) and
# scripts/weaviate.sh install. WEAVIATE_ASYNC_INDEXING=1 starts the node with async indexing (scripts/weaviate.sh);
# PROFILE=SECONDS also saves a CPU profile of the node ($OUT/cpu.pprof, `go tool pprof -top BIN $OUT/cpu.pprof`)
# of the first SECONDS of the run and its Prometheus metrics at the end ($OUT/metrics.txt).
set -euo pipefail
cd "$(dirname "$0")/../.."
PAGES=${1:?PAGES} ROWS=${2:?ROWS} MUVERA=${3:?MUVERA 0/1} QUERIES=${4:?QUERIES} STORE=${5:-0}
OUT=${OUT:-target/bench-weaviate}
rm -rf "$OUT"; mkdir -p "$OUT"
BENCH="${CARGO_TARGET_DIR:-target}/release/colqwen-bench"
PROFILE=${PROFILE:-0}
export WEAVIATE_RUN="$OUT/run" WEAVIATE_PORT=8130 WEAVIATE_SLOT=50
if [[ $PROFILE != 0 ]]; then export WEAVIATE_METRICS=1 WEAVIATE_PROFILE=1; fi
trap 'scripts/weaviate.sh stop' EXIT
scripts/weaviate.sh start >/dev/null
store_dir=-
[[ $STORE == 1 ]] && store_dir="$OUT/store"
if [[ $PROFILE != 0 ]]; then
  curl -s -o "$OUT/cpu.pprof" "http://127.0.0.1:$((6060 + 50))/debug/pprof/profile?seconds=$PROFILE" &
fi
"$BENCH" weaviate 127.0.0.1:8130 "$PAGES" "$ROWS" "$MUVERA" "$QUERIES" "$store_dir" | tee "$OUT/results.jsonl"
pid=$(cat "$WEAVIATE_RUN/node1/pid")
if [[ $PROFILE != 0 ]]; then
  curl -s -o "$OUT/metrics.txt" "http://127.0.0.1:$((2112 + 50))/metrics"
  wait
fi
rss_kb=$(awk '/VmRSS/ {print $2}' "/proc/$pid/status")
disk=$(du -sb "$WEAVIATE_RUN/node1/data" | cut -f1)
echo "{\"what\": \"weaviate_node\", \"pages\": $PAGES, \"rss_bytes\": $((rss_kb * 1024)), \"disk_bytes\": $disk, \"rss_per_page\": $((rss_kb * 1024 / PAGES)), \"disk_per_page\": $((disk / PAGES))}" | tee -a "$OUT/results.jsonl"
if [[ $STORE == 1 ]]; then
  sdisk=$(du -sb "$OUT/store" | cut -f1)
  echo "{\"what\": \"store_disk\", \"pages\": $PAGES, \"disk_bytes\": $sdisk, \"disk_per_page\": $((sdisk / PAGES))}" | tee -a "$OUT/results.jsonl"
fi
scripts/weaviate.sh stop
rm -rf "$OUT/run" "$OUT/store"
