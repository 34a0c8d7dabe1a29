# Shared steps of the GPU benchmarks (sourced by run.sh and serve.sh on the device machine):
# unpack the carried binaries, point the loader at the CUDA 13 libraries, make (or reuse) the full-size random
# checkpoint. Sets M (the checkpoint folder).
# Output folder and log: everything the script prints also goes to $OUT/$1. Then the common preparation:
# the wheels and the carried binaries.
prepare() {
  open_log "$1"
  install_wheels
  unpack_binaries
}
# Everything the script prints from now on also goes to $OUT/$1 (OUT defaults to /tmp/bench-out).
open_log() {
  OUT=${OUT:-/tmp/bench-out}
  mkdir -p "$OUT"
  exec > >(tee -a "$OUT/$1") 2>&1
}
# colpali-engine and peft (carried in .whl/): the checkpoint generator builds the model with them.
install_wheels() {
  python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site
}
# Every carried .carry/NAME.xz (scripts/pack-carry.sh: colqwen, colqwen-bench, kernel-tests; by hand e.g.
# colqwen-old, cpu-bench-*) to an executable /tmp/NAME, with Python's lzma (the machine has no xz).
unpack_binaries() {
  local f b
  for f in .carry/*.xz; do
    [ -f "$f" ] || continue
    b=/tmp/$(basename "$f" .xz)
    python3 -c 'import lzma, shutil, sys; shutil.copyfileobj(lzma.open(sys.argv[1]), open(sys.argv[2], "wb"))' "$f" "$b" \
      && chmod +x "$b"
  done
}
cuda_env() {
  local nv
  nv=$(python3 -c 'import nvidia, os; print(list(nvidia.__path__)[0])')
  export LD_LIBRARY_PATH="$nv/cu13/lib:$(ls -d "$nv"/*/lib | tr '\n' ':')${LD_LIBRARY_PATH:-}"
  ldconfig -p | grep -q libcuda.so.1 || export LD_LIBRARY_PATH="/usr/local/nvidia/lib64:$LD_LIBRARY_PATH"
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$OUT/card.txt"
}
# What the benchmark runs for model family $FAMILY (colqwen2_5, the default; colqwen3; colqwen3_5): the tiny fixture
# of the smoke test with its images and the reference's f32 golden embeddings (TINY, TINY_IMAGES, TINY_GOLDEN,
# TINY_COUNT), the synthetic pages' size (768 visual tokens of the family's cell: PAGE_SIZE) and the render cap of
# the corpus pages (the checkpoint's 768-token max_pixels: RENDER_PIXELS).
family_settings() {
  case "${FAMILY:=colqwen2_5}" in
    colqwen2_5)
      TINY=fixtures/tiny/colqwen2.5-tiny-v0.2 TINY_IMAGES=fixtures/tiny/golden/images
      TINY_GOLDEN=fixtures/tiny/golden/adapter.safetensors TINY_COUNT=7
      PAGE_SIZE="672 896" RENDER_PIXELS=602112 ;;
    colqwen3 | colqwen3_5)
      TINY=fixtures/tiny/$FAMILY-tiny TINY_IMAGES=fixtures/tiny/golden-qwen3/images TINY_COUNT=6
      TINY_GOLDEN=fixtures/tiny/golden-${FAMILY#col}/$FAMILY-tiny.safetensors
      PAGE_SIZE="768 1024" RENDER_PIXELS=786432 ;;
    *) echo "FAMILY=$FAMILY: one of colqwen2_5, colqwen3, colqwen3_5" >&2; return 1 ;;
  esac
}
# The full-size random checkpoint of $FAMILY, made by the fixture generators on this machine (reused when the
# machine still has it): ColQwen2.5 3B (colqwen2.5-base layout + LoRA adapter, /tmp/m3b), ColQwen3 on Qwen3-VL-4B
# and ColQwen3.5 on Qwen3.5-4B (colpali save_pretrained layouts, presets qwen3vl-4b / qwen3_5-4b). Sets M.
make_checkpoint() {
  local dir gen preset
  case "${FAMILY:=colqwen2_5}" in
    colqwen2_5) dir=/tmp/m3b M=/tmp/m3b/colqwen2.5-3b-random-v0.2 gen=fixtures/gen/make_fixtures.py preset=3b ;;
    colqwen3) dir=/tmp/m-colqwen3 M=/tmp/m-colqwen3/colqwen3-4b-random gen=fixtures/gen/make_fixtures_qwen3.py preset=qwen3vl-4b ;;
    colqwen3_5) dir=/tmp/m-colqwen3_5 M=/tmp/m-colqwen3_5/colqwen3_5-4b-random gen=fixtures/gen/make_fixtures_qwen3.py preset=qwen3_5-4b ;;
    *) echo "FAMILY=$FAMILY: one of colqwen2_5, colqwen3, colqwen3_5" >&2; return 1 ;;
  esac
  if [ ! -f "$dir/done" ]; then
    rm -rf "$dir"
    python3 "$gen" --preset "$preset" --out "$dir" --no-golden --threads 16 > "$OUT/gen.log" 2>&1 \
      || { tail -20 "$OUT/gen.log"; return 1; }
    touch "$dir/done"
  fi
}
# The prologue of the serving benchmarks: log, wheels, binaries, CUDA libraries, the full-size checkpoint
# (timed), and one tiny-model run that warms the driver's PTX cache (the first CUDA run on a machine
# JIT-compiles the kernels). Returns non-zero if the checkpoint cannot be made.
prepare_gpu() {
  prepare "$1"
  cuda_env
  local t0
  t0=$(date +%s)
  make_checkpoint || return 1
  echo "{\"what\": \"checkpoint\", \"seconds\": $(( $(date +%s) - t0 ))}"
  /tmp/colqwen-bench embed fixtures/tiny/colqwen2.5-tiny-v0.2 fixtures/tiny/golden/images /tmp/tiny.safetensors 1 > /dev/null
}
