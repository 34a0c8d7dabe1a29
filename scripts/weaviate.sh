#!/usr/bin/env bash
# A pinned Weaviate server on loopback, for developers and CI (the colqwen Weaviate backend's tests, bench).
#
#   scripts/weaviate.sh install     go install the pinned server (cached; prints nothing if already there)
#   scripts/weaviate.sh path        print the server binary's path (installs first)
#   scripts/weaviate.sh start       one node "node1": HTTP 127.0.0.1:8080, gRPC 50051
#   scripts/weaviate.sh cluster     two nodes on loopback: node1 (HTTP 8080) and node2 (HTTP 8081), joined by
#                                   gossip and raft; create collections with replication factor 2
#   scripts/weaviate.sh stop        stop every node this script started (SIGTERM, then SIGKILL after 30 s)
#
# A data folder belongs to the mode that made it: `start` refuses at once a folder made by `cluster` (node1
# alone would wait for node2 as a raft candidate forever) and `cluster` one made by `start`. A start that fails
# (not ready within WEAVIATE_READY_TIMEOUT s) stops the nodes it started before exiting 1.
#
# Environment (all optional):
#   WEAVIATE_CACHE  where GOPATH, GOCACHE and the binary live (default ~/.cache/colqwen-weaviate); CI caches it
#   WEAVIATE_RUN    pid files, logs and data of the nodes (default target/weaviate in the repository)
#   WEAVIATE_PORT   HTTP port of node1 (default 8080; node2 takes the next one)
#   WEAVIATE_SLOT   shift of every other port (gRPC, gossip, data, raft, metrics, profiling) to run beside
#                   another node (default 0)
#   WEAVIATE_READY_TIMEOUT  seconds a start waits for the nodes to answer ready (default 120)
#   WEAVIATE_ASYNC_INDEXING  1: ASYNC_INDEXING=true (objects are stored at once, the vector index is built by a
#                   background queue; objects still queued are NOT found by vector search until indexed)
#   WEAVIATE_METRICS 1: Prometheus metrics on port 2112+i (/metrics)
#   WEAVIATE_PROFILE 1: Go's pprof answers on port 6060+i (/debug/pprof/profile?seconds=N; otherwise 404)
#   (Weaviate binds these two on every interface, not only loopback: turn them on only on a trusted host.)
#
# Anonymous access on loopback only: do not expose these nodes beyond 127.0.0.1 without an API key
# (AUTHENTICATION_APIKEY_* settings of Weaviate).
set -euo pipefail

VERSION=v1.39.0
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
CACHE="${WEAVIATE_CACHE:-$HOME/.cache/colqwen-weaviate}"
RUN="${WEAVIATE_RUN:-$ROOT/target/weaviate}"
PORT="${WEAVIATE_PORT:-8080}"
SLOT="${WEAVIATE_SLOT:-0}"
BIN="$CACHE/bin-$VERSION/weaviate-server"

install() {
  if [[ -x "$BIN" ]]; then return; fi
  command -v go >/dev/null || { echo "error: Go (1.26+) is needed to install Weaviate: https://go.dev/dl/" >&2; exit 1; }
  echo "installing weaviate-server $VERSION into $CACHE (first time: ~10-25 min on 2 cores)" >&2
  local start=$SECONDS
  GOPATH="$CACHE/gopath" GOCACHE="$CACHE/gocache" GOBIN="$CACHE/bin-$VERSION" GOFLAGS=-modcacherw \
    go install "github.com/weaviate/weaviate/cmd/weaviate-server@$VERSION"
  echo "installed in $((SECONDS - start)) s" >&2
}

# Nodes started by this invocation (stopped again if it fails).
STARTED=()

# check_mode MODE: refuse at once a data folder that another mode made. A folder records its mode in
# $RUN/mode; one without it (made before this check) is a cluster's if node2 has data.
check_mode() {
  local want=$1 have=
  if [[ -f "$RUN/mode" ]]; then
    have=$(cat "$RUN/mode")
  elif [[ -d "$RUN/node2/data" ]]; then
    have=cluster
  elif [[ -d "$RUN/node1/data" ]]; then
    have=single
  fi
  if [[ -n $have && $have != "$want" ]]; then
    if [[ $have == cluster ]]; then
      echo "error: $RUN holds the data of a 2-node cluster (made by \`scripts/weaviate.sh cluster\`): node1 alone would wait for node2 forever" >&2
      echo "hint: run \`scripts/weaviate.sh cluster\` to start both nodes, or set WEAVIATE_RUN to another folder for a single node (or remove $RUN: its collections are lost)" >&2
    else
      echo "error: $RUN holds the data of a single node (made by \`scripts/weaviate.sh start\`), not of a 2-node cluster" >&2
      echo "hint: run \`scripts/weaviate.sh start\`, or set WEAVIATE_RUN to another folder for a cluster (or remove $RUN: its collections are lost)" >&2
    fi
    exit 1
  fi
  mkdir -p "$RUN"
  echo "$want" >"$RUN/mode"
}

# start_node NAME HTTP_PORT OFFSET [cluster]: ports of node i are HTTP, gRPC 50051+i, gossip 7100+2i,
# data 7101+2i, raft 8300+2i, raft RPC 8301+2i, Prometheus 2112+i, pprof 6060+i.
start_node() {
  local name=$1 http=$2 i=$(($3 + SLOT)) mode=${4:-single}
  local dir="$RUN/$name"
  mkdir -p "$dir/data"
  if [[ -f "$dir/pid" ]] && kill -0 "$(cat "$dir/pid")" 2>/dev/null; then
    echo "$name already running (pid $(cat "$dir/pid"))" >&2
    return
  fi
  local -a env=(
    AUTHENTICATION_ANONYMOUS_ACCESS_ENABLED=true
    PERSISTENCE_DATA_PATH="$dir/data"
    DEFAULT_VECTORIZER_MODULE=none
    ENABLE_MODULES=
    DISABLE_TELEMETRY=true
    QUERY_MAXIMUM_RESULTS=10000
    CLUSTER_HOSTNAME="$name"
    CLUSTER_IN_LOCALHOST=true
    CLUSTER_GOSSIP_BIND_PORT=$((7100 + 2 * i))
    CLUSTER_DATA_BIND_PORT=$((7101 + 2 * i))
    GRPC_PORT=$((50051 + i))
    RAFT_PORT=$((8300 + 2 * i))
    RAFT_INTERNAL_RPC_PORT=$((8301 + 2 * i))
    PROMETHEUS_MONITORING_PORT=$((2112 + i))
    GO_PROFILING_PORT=$((6060 + i))
  )
  [[ ${WEAVIATE_ASYNC_INDEXING:-0} == 1 ]] && env+=(ASYNC_INDEXING=true)
  [[ ${WEAVIATE_METRICS:-0} == 1 ]] && env+=(PROMETHEUS_MONITORING_ENABLED=true)
  [[ ${WEAVIATE_PROFILE:-0} == 1 ]] && env+=(DEBUG_ENDPOINTS_ENABLED=true)
  if [[ $mode == cluster ]]; then
    env+=(RAFT_JOIN="node1:$((8300 + 2 * SLOT)),node2:$((8302 + 2 * SLOT))" RAFT_BOOTSTRAP_EXPECT=2)
    [[ $i -gt $SLOT ]] && env+=(CLUSTER_JOIN="127.0.0.1:$((7100 + 2 * SLOT))")
  else
    env+=(RAFT_BOOTSTRAP_EXPECT=1)
  fi
  env "${env[@]}" setsid "$BIN" --host 127.0.0.1 --port "$http" --scheme http \
    --read-timeout=600s --write-timeout=600s >>"$dir/log" 2>&1 &
  echo $! >"$dir/pid"
  STARTED+=("$name")
  echo "$name: pid $!, http://127.0.0.1:$http, log $dir/log" >&2
}

# ready PORT: whether GET /v1/.well-known/ready answers 200 (bash's /dev/tcp: no curl needed).
ready() {
  local status
  status=$( (exec 3<>"/dev/tcp/127.0.0.1/$1" && printf 'GET /v1/.well-known/ready HTTP/1.0\r\n\r\n' >&3 &&
    head -c 12 <&3) 2>/dev/null) || return 1
  [[ $status == *" 200" ]]
}

# wait_ready PORT: until the node answers ready; after WEAVIATE_READY_TIMEOUT s, stop the nodes this
# invocation started and exit 1 (a node that never gets ready is not left running).
wait_ready() {
  local http=$1 timeout=${WEAVIATE_READY_TIMEOUT:-120}
  for _ in $(seq 1 $((timeout * 2))); do
    if ready "$http"; then return; fi
    sleep 0.5
  done
  echo "error: Weaviate on port $http did not become ready in $timeout s; see $RUN/*/log" >&2
  local name
  for name in "${STARTED[@]}"; do stop_node "$RUN/$name/pid"; done
  exit 1
}

# stop_node PIDFILE: SIGTERM, then SIGKILL after 30 s.
stop_node() {
  local pidfile=$1 pid
  [[ -f $pidfile ]] || return 0
  pid=$(cat "$pidfile")
  if kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid"
    for _ in $(seq 1 60); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
    kill -0 "$pid" 2>/dev/null && kill -KILL "$pid"
    echo "stopped $(basename "$(dirname "$pidfile")") (pid $pid)" >&2
  fi
  rm -f "$pidfile"
}

stop() {
  shopt -s nullglob
  for pidfile in "$RUN"/*/pid; do stop_node "$pidfile"; done
}

case "${1:-}" in
  install) install ;;
  path) install; echo "$BIN" ;;
  start) install; check_mode single; start_node node1 "$PORT" 0; wait_ready "$PORT"; echo "weaviate://127.0.0.1:$PORT" ;;
  cluster)
    install
    check_mode cluster
    start_node node1 "$PORT" 0 cluster
    start_node node2 $((PORT + 1)) 1 cluster
    wait_ready "$PORT"; wait_ready $((PORT + 1))
    echo "weaviate://127.0.0.1:$PORT (node2: weaviate://127.0.0.1:$((PORT + 1)))"
    ;;
  stop) stop ;;
  *) sed -n '2,27p' "$0" >&2; exit 2 ;;
esac
