#!/usr/bin/env bash
# The full-size model on the CPU with 8-bit text weights (`--dtype q8`) against the f32 model (issue 25 goal 4).
# Two parts, run on the same machine one after the other (each fits one 10-minute device call):
#   PART=quality  all cores: every page of fixtures/pdfs (rendered at most TOKENS visual tokens, default 256, to keep
#                 the f32 run short) and bench/gpu/queries.txt embedded by both paths (`colqwen-bench cpu-embed`),
#                 then bench/gpu/compare.py: per-token cosine q8 vs f32 and top-10 MaxSim overlap, for an index
#                 and queries both 8-bit, and for 8-bit queries against f32 pages; then ingest pages/s of both
#                 paths at the checkpoint's own resolution (PAGES_FULL pages, default 4).
#   PART=serve    `colqwen serve` pinned to CORES (default 0,1): time from launch to ready and the time of each
#                 search over HTTP (empty index: one query encode + an empty scan), f32 then q8 (starting from the
#                 8-bit weight cache that PART=quality built); then ingest pages/s on CORES (one page at full
#                 resolution per path; INGEST= to skip; DTYPES=q8 for the 8-bit path only).
# On the GPU machine: carry .carry/cpu-colqwen.xz, cpu-colqwen-bench.xz (`scripts/pack-carry.sh --cpu`) and .whl/
# (the checkpoint generator's wheels), M unset (made here). Elsewhere: M=checkpoint BIN=colqwen BENCH=colqwen-bench.
set -uo pipefail
source bench/gpu/common.sh
if [ -z "${M:-}" ]; then
  prepare "cpu_q8_${PART}.log"
  BIN=/tmp/cpu-colqwen BENCH=/tmp/cpu-colqwen-bench
  make_checkpoint || exit 1
else
  open_log "cpu_q8_${PART}.log"
fi
W=${WORK:-/tmp/cpu-q8}
# The CLI's cache folder (XDG_CACHE_HOME=$W/xdg), so that `serve --dtype q8` starts from what cpu-embed built.
CACHE=$W/xdg/colqwen/q8
mkdir -p "$W"
lscpu | grep -E 'Model name' | head -1
nproc
load() { echo "{\"what\": \"load\", \"loadavg\": \"$(cut -d' ' -f1-3 /proc/loadavg)\"}"; }
case "${PART:-quality}" in
  quality)
    tokens=${TOKENS:-256}
    [ -d "$W/pages" ] || "$BENCH" render "$W/pages" $((tokens * 28 * 28)) fixtures/pdfs/*.pdf
    [ -d "$W/pages-full" ] || "$BENCH" render "$W/pages-full" 602112 fixtures/pdfs/*.pdf
    for d in f32 q8; do
      load
      "$BENCH" cpu-embed "$M" $d "$W/pages" bench/gpu/queries.txt "$OUT/emb-$d.safetensors" "$CACHE" 1000 "$tokens"
    done
    python3 bench/gpu/compare.py "$OUT/emb-q8.safetensors" "$OUT/emb-f32.safetensors"
    # 8-bit queries against the f32 pages: an index built on a GPU (or in f32), searched by a q8 server.
    python3 - "$OUT" <<'EOF'
import sys
from safetensors.torch import load_file, save_file
out = sys.argv[1]
f32, q8 = load_file(f"{out}/emb-f32.safetensors"), load_file(f"{out}/emb-q8.safetensors")
save_file({k: (q8[k] if k.startswith("query.") else v) for k, v in f32.items()}, f"{out}/emb-mixed.safetensors")
EOF
    python3 bench/gpu/compare.py "$OUT/emb-mixed.safetensors" "$OUT/emb-f32.safetensors"
    for d in f32 q8; do
      load
      "$BENCH" cpu-embed "$M" $d "$W/pages-full" bench/gpu/queries.txt - "$CACHE" "${PAGES_FULL:-4}"
    done
    ;;
  serve)
    cores=${CORES:-0,1}
    for d in ${DTYPES:-f32 q8}; do
      idx=$W/idx-$d
      rm -rf "$idx"
      load
      t0=$(date +%s.%N)
      XDG_CACHE_HOME=$W/xdg taskset -c "$cores" "$BIN" --index "$idx" --model "$M" --offline --device cpu --dtype $d \
        serve --port 0 2>"$OUT/serve-$d.log" &
      server=$!
      for _ in $(seq 1 6000); do [ -f "$idx/server.json" ] && break; kill -0 $server 2>/dev/null || break; sleep 0.05; done
      [ -f "$idx/server.json" ] || { echo "the $d server did not start:"; tail -3 "$OUT/serve-$d.log"; exit 1; }
      t1=$(date +%s.%N)
      echo "{\"what\": \"serve_ready_s\", \"dtype\": \"$d\", \"cores\": \"$cores\", \"seconds\": $(awk "BEGIN{print $t1 - $t0}")}"
      url=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["url"])' "$idx/server.json")
      while read -r q; do
        a=$(date +%s.%N)
        curl -s -H 'content-type: application/json' -d "{\"query\": \"$q\", \"k\": 10}" "$url/v1/search" >/dev/null
        b=$(date +%s.%N)
        echo "{\"what\": \"search_s\", \"dtype\": \"$d\", \"seconds\": $(awk "BEGIN{print $b - $a}")}"
      done < bench/gpu/queries.txt
      grep -E "re-tiled|from the cache|wrote the 8-bit|model ready" "$OUT/serve-$d.log" | tail -4
      kill $server; wait $server
    done
    if [ -n "${INGEST-1}" ]; then
      for d in f32 q8; do
        load
        taskset -c "$cores" "$BENCH" cpu-embed "$M" $d "$W/pages-full" /dev/stdin - "$CACHE" 1 <<< "reset the firmware"
      done
    fi
    ;;
esac
