#!/usr/bin/env bash
# The full-size model on 2 CPU cores (`taskset -c 0,1` on the GPU machine, whose 16 cores have the memory for
# the f32 weights): `colqwen serve --device cpu` start-up time (load: bf16 → f32, LoRA merge) and then what a
# query costs through the server (one encode + an empty-index search). Expects the same carry as serve.sh.
# BINS: the binaries to compare in this call, one after the other (default /tmp/colqwen; a carried
# .carry/colqwen-old.xz is unpacked to /tmp/colqwen-old by `prepare`, for before/after runs).
set -uo pipefail
source bench/gpu/common.sh
prepare cpu_startup.log
make_checkpoint || exit 1
lscpu | grep -E 'Model name' | head -1
for bin in ${BINS:-/tmp/colqwen}; do
echo "# $bin"
idx=/tmp/cpu-idx
rm -rf "$idx"
t0=$(date +%s.%N)
taskset -c 0,1 "$bin" --index "$idx" --model "$M" --device cpu serve --port 0 2>"$OUT/cpu-serve.log" &
server=$!
for _ in $(seq 1 3000); do [ -f "$idx/server.json" ] && break; sleep 0.1; done
url=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["url"])' "$idx/server.json")
t1=$(date +%s.%N)
echo "{\"what\": \"cpu2_serve_ready_s\", \"seconds\": $(awk "BEGIN{print $t1 - $t0}")}"
for q in "how do I reset the firmware" "table of permission specifiers" "wiring diagram of the power supply"; do
  a=$(date +%s.%N)
  curl -s -H 'content-type: application/json' -d "{\"query\": \"$q\", \"k\": 5}" "$url/v1/search" > /dev/null
  b=$(date +%s.%N)
  echo "{\"what\": \"cpu2_query_s\", \"seconds\": $(awk "BEGIN{print $b - $a}")}"
done
grep -E "model ready|loaded" "$OUT/cpu-serve.log" | tail -2
kill $server; wait $server
done
