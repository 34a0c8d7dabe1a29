#!/usr/bin/env bash
# The server's soak run (issue 22): CLIENTS clients send mixed ordinary and hostile requests (searches, good /
# duplicate / bad / oversized / aborted uploads, deletes of their own documents, embeddings and image bombs,
# cancels and resumes, lists) to one `colqwen serve` (tiny fixture model, CPU) for SECONDS; halfway through the
# server is killed with `kill -9` and started again on the same port. RSS, disk and counts every 10 s go to
# OUT/samples.csv, requests by route and outcome to OUT/summary.json; at the end every cancelled job is resumed
# and the index is checked (list = search page for page, true page counts, no deleted document back, one upload
# file per document, previews of stored documents only), then checked again after a restart.
#
#   bench/serve/soak.sh                        # 16 clients, 1800 s (builds nothing: cargo build --release first,
#                                              # and `cargo build --release -p colqwen-bench`)
#   CLIENTS=4 SECONDS_TOTAL=120 bench/serve/soak.sh   # a short try
#
# Env: BIN (colqwen), BENCH (colqwen-bench), MODEL (tiny fixture), CLIENTS (16), SECONDS_TOTAL (1800),
# OUT (bench/serve/soak-out), PORT (18650), KILL (1: kill -9 halfway; 0: no kill), THINK_MS (600: each client
# waits 0 to 2 × THINK_MS between requests, a user's pace at which the 2-core ingest keeps up).
set -euo pipefail
repo=$(cd "$(dirname "$0")/../.." && pwd)
cd "$repo"
BIN=${BIN:-${CARGO_TARGET_DIR:-target}/release/colqwen}
BENCH=${BENCH:-${CARGO_TARGET_DIR:-target}/release/colqwen-bench}
MODEL=${MODEL:-fixtures/tiny/colqwen2.5-tiny-v0.2}
CLIENTS=${CLIENTS:-16}
total=${SECONDS_TOTAL:-1800}
OUT=${OUT:-$repo/bench/serve/soak-out}
PORT=${PORT:-18650}
KILL=${KILL:-1}
rm -rf "$OUT"
mkdir -p "$OUT"
work=$(mktemp -d)
index=$work/index
server=
trap '[ -n "$server" ] && kill $server 2>/dev/null; true; wait 2>/dev/null || true; rm -rf "$work"' EXIT
url=http://127.0.0.1:$PORT

start_server() {
  COLQWEN_NO_PROGRESS=1 "$BIN" --index "$index" --model "$MODEL" --device cpu serve --port "$PORT" \
    --max-upload-mib 2 2>>"$OUT/server.log" &
  server=$!
  for _ in $(seq 1 600); do curl -sf "$url/health" >/dev/null && return 0; sleep 0.1; done
  echo "the server did not come up"; cat "$OUT/server.log"; exit 1
}

start_server
echo "server pid $server on $url, index $index, $CLIENTS clients for ${total}s" | tee "$OUT/run.txt"
"$BENCH" soak "$url" "$CLIENTS" "$total" "$index" "$OUT" "${THINK_MS:-600}" 2>"$OUT/driver.log" &
driver=$!
if [ "$KILL" = 1 ]; then
  sleep $((total / 2))
  touch "$OUT/down"                       # connection errors from here to the restart are "down", not failures
  kill -9 "$server"; wait "$server" 2>/dev/null || true
  echo "kill -9 at $((total / 2)) s" | tee -a "$OUT/run.txt"
  t0=$(date +%s.%N)
  start_server
  touch "$OUT/restarted"                  # a connection kept from before fails once: within 10 s, still "down"
  rm -f "$OUT/down"
  echo "restarted in $(awk "BEGIN{print $(date +%s.%N) - $t0}") s, pid $server" | tee -a "$OUT/run.txt"
fi
wait $driver
cat "$OUT/summary.json"
echo "# the index at the end"
"$BENCH" soak-check "$url" "$index" "$OUT" | tee "$OUT/check.json"
echo "# the index after a restart"
kill "$server"; wait "$server" 2>/dev/null || true
start_server
"$BENCH" soak-check "$url" "$index" "$OUT" | tee "$OUT/check-after-restart.json"
grep -c panicked "$OUT/server.log" && { echo "the server logged a panic"; exit 1; }
exit 0
