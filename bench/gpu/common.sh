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
# The 3B checkpoint is reused when the machine still has it (/tmp/m3b).
make_checkpoint() {
  M=/tmp/m3b/colqwen2.5-3b-random-v0.2
  if [ ! -f /tmp/m3b/done ]; then
    rm -rf /tmp/m3b
    python3 fixtures/gen/make_fixtures.py --preset 3b --out /tmp/m3b --no-golden --threads 16 > "$OUT/gen.log" 2>&1 \
      || { tail -20 "$OUT/gen.log"; return 1; }
    touch /tmp/m3b/done
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
