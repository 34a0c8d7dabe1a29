#!/usr/bin/env bash
# `colqwen serve` on the GPU, in ONE device call: the full-size random checkpoint (as run.sh makes it), the
# server's start-up time, then search latency over HTTP at 1/8/32 clients idle and while the same server
# ingests the corpus PDFs again and again, and the ingest's pages/s meanwhile (bench/serve/run.sh).
# Expects (carried): .whl/ (colpali-engine, peft wheels), .carry/colqwen.xz and .carry/colqwen-bench.xz (scripts/cuda-build.sh -p colqwen-cli -p
# colqwen-bench, then scripts/pack-carry.sh). Writes $OUT/serve.log.
set -uo pipefail
source bench/gpu/common.sh
prepare_gpu serve.log || exit 1
# The server's page batch is what a query may wait for: the default (8 on this card) and a small one.
for b in ${SERVE_BATCHES:-8 2}; do
  echo "# serve --batch-size $b"
  BIN=/tmp/colqwen BENCH=/tmp/colqwen-bench MODEL=$M DEVICE=cuda RUN_SECONDS=${RUN_SECONDS:-10} \
    SERVE_ARGS="--batch-size $b" bash bench/serve/run.sh
done
