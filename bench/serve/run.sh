#!/usr/bin/env bash
# Search latency over HTTP at several client counts, idle and while the same server ingests (one run, one
# machine). Prints JSON lines (one per client count and phase) and the ingest's pages/s during the loaded phase.
#
#   bench/serve/run.sh                      # CPU, tiny fixture model (builds nothing: run `cargo build --release` first)
#   MODEL=/path/to/checkpoint DEVICE=cuda BIN=... BENCH=... bench/serve/run.sh    # GPU (device tool)
#
# Env: BIN (colqwen), BENCH (colqwen-bench), MODEL, DEVICE, CLIENTS (1,8,32), RUN_SECONDS (per run, 10),
# QUERIES (bench/gpu/queries.txt), SERVE_ARGS (extra `serve` flags, e.g. --batch-size 2), PDFS (fixtures/pdfs/*.pdf: uploaded in a loop during the loaded phase).
set -euo pipefail
. "$(dirname "$0")/common.sh"
DEVICE=${DEVICE:-cpu}
CLIENTS=${CLIENTS:-1,8,32}
SECONDS_PER_RUN=${RUN_SECONDS:-10}
QUERIES=${QUERIES:-bench/gpu/queries.txt}
mapfile -t PDFS < <(ls ${PDFS:-fixtures/pdfs/*.pdf})
# JSON field extraction without jq (not on every machine): py EXPR, with the document as `d`.
py() { python3 -c 'import json, sys; d = json.load(sys.stdin); r = eval(sys.argv[1]); print("\n".join(map(str, r)) if isinstance(r, list) else r)' "$1"; }
work=$(mktemp -d)
index=$work/index
server=
trap '[ -n "$server" ] && kill $server 2>/dev/null; true; wait 2>/dev/null || true; rm -rf "$work"' EXIT

# A populated index first (the same PDFs), so the idle phase searches real pages.
t0=$(date +%s.%N)
COLQWEN_NO_PROGRESS=1 "$BIN" --index "$index" --model "$MODEL" --device "$DEVICE" -q ingest "${PDFS[@]}" || true
t1=$(date +%s.%N)
# shellcheck disable=SC2086
"$BIN" --index "$index" --model "$MODEL" --device "$DEVICE" serve --port 0 ${SERVE_ARGS:-} 2>"$work/server.log" &
server=$!
for _ in $(seq 1 600); do [ -f "$index/server.json" ] && break; sleep 0.1; done
url=$(py "d['url']" < "$index/server.json")
until curl -sf "$url/health" >/dev/null; do sleep 0.1; done
t2=$(date +%s.%N)
echo "{\"phase\": \"startup\", \"cli_ingest_s\": $(awk "BEGIN{print $t1 - $t0}"), \"serve_ready_s\": $(awk "BEGIN{print $t2 - $t1}")}"

echo "# idle"
"$BENCH" http "$url" "$CLIENTS" "$SECONDS_PER_RUN" "$QUERIES" | sed 's/^{/{"phase": "idle", /'

# Loaded: upload variants of the same PDFs (a comment appended after %%EOF makes new files, so new pages)
# and delete the previous round's, so the searched index stays between one and two copies of the corpus.
stop=$work/stop
(
  round=0; prev=""
  while [ ! -f "$stop" ]; do
    round=$((round + 1)); mkdir -p "$work/v$round"; args=()
    for f in "${PDFS[@]}"; do
      v="$work/v$round/$(basename "$f")"; cp "$f" "$v"; printf '\n%% variant %s\n' "$round" >> "$v"; args+=(-F "file=@$v")
    done
    job=$(curl -s "${args[@]}" "$url/v1/documents" | py "d['job']")
    while :; do
      state=$(curl -s "$url/v1/jobs/$job" | py "d['state']")
      [ "$state" = running ] || [ "$state" = queued ] || break
      if [ -f "$stop" ]; then curl -s -X POST "$url/v1/jobs/$job/cancel" >/dev/null; break; fi
      sleep 0.2
    done
    for id in $prev; do curl -s -X DELETE "$url/v1/documents/$id" >/dev/null; done
    prev=$(curl -s "$url/v1/jobs/$job" | py "[f['path'] for f in d['files']]" | while read -r p; do sha256sum "$p" 2>/dev/null | cut -c1-16; done)
  done
) &
loader=$!
sleep 2
echo "# while ingesting"
before=$(curl -s "$url/metrics" | awk '/^colqwen_pages_ingested_total/ {print $2}')
ts=$(date +%s.%N)
"$BENCH" http "$url" "$CLIENTS" "$SECONDS_PER_RUN" "$QUERIES" | sed 's/^{/{"phase": "ingesting", /'
te=$(date +%s.%N)
after=$(curl -s "$url/metrics" | awk '/^colqwen_pages_ingested_total/ {print $2}')
touch "$stop"
wait $loader || true
echo "{\"phase\": \"ingesting\", \"pages_ingested\": $((after - before)), \"pages_per_s\": $(awk "BEGIN{print ($after - $before) / ($te - $ts)}")}"
curl -s "$url/metrics" | grep -E '^colqwen_(http|search_errors)' || true
