#!/usr/bin/env bash
# Model replicas on one GPU (issues 13 and 8), in ONE device call, full-size random checkpoint:
#   1. ingest pages/s of the corpus PDFs with --replicas 1 and 2 (alternating, twice each), and the peak GPU
#      memory of each run (nvidia-smi, sampled every 0.2 s);
#   2. `colqwen serve` search latency over HTTP at 1/8/32 clients, idle and while it ingests, with --replicas 1
#      and with --replicas 2 (the server keeps one replica free of page batches for queries).
# Expects (carried): .whl/, .carry/colqwen.xz, .carry/colqwen-bench.xz. Writes $OUT/replicas.log.
set -uo pipefail
source bench/gpu/common.sh
prepare_gpu replicas.log || exit 1
peak_mem() {  # samples the GPU's used memory until the file $1 exists; prints the peak in MiB
  local peak=0 m
  while [ ! -e "$1" ]; do
    m=$(nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits | head -1)
    [ "$m" -gt "$peak" ] && peak=$m
    sleep 0.2
  done
  echo "$peak"
}
for round in 1 2; do
  for r in 1 2; do
    rm -rf /tmp/ix /tmp/done-flag
    (peak_mem /tmp/done-flag > /tmp/peak.txt) &
    sampler=$!
    s=$(date +%s.%N)
    /tmp/colqwen --index /tmp/ix --model "$M" --device cuda --replicas $r --json ingest fixtures/pdfs/*.pdf > /tmp/ingest.json 2> /tmp/ingest.err
    rc=$?
    e=$(date +%s.%N)
    touch /tmp/done-flag; wait $sampler
    python3 - "$r" "$round" "$s" "$e" "$rc" "$(cat /tmp/peak.txt)" <<'PY'
import json, sys
r, rnd, s, e, rc, peak = sys.argv[1:]
j = json.load(open("/tmp/ingest.json"))
print(json.dumps({"what": "ingest", "replicas": int(r), "round": int(rnd), "rc": int(rc), "pages": j.get("pages_ingested"),
                  "seconds_total": round(float(e) - float(s), 2), "seconds_ingest": j.get("seconds"),
                  "pages_per_s": j.get("pages_per_second"), "peak_gpu_mib": int(peak)}))
PY
    [ $rc -ne 0 ] && tail -5 /tmp/ingest.err
  done
done
for r in 1 2; do
  echo "# serve --replicas $r"
  BIN=/tmp/colqwen BENCH=/tmp/colqwen-bench MODEL=$M DEVICE=cuda RUN_SECONDS=${RUN_SECONDS:-8} \
    SERVE_ARGS="--replicas $r" bash bench/serve/run.sh
done
