#!/usr/bin/env bash
# The GPU benchmark, in ONE device call (see bench/README.md), for one model family (FAMILY=colqwen2_5, the default;
# FAMILY=colqwen3: ColQwen3 on Qwen3-VL-4B; FAMILY=colqwen3_5: ColQwen3.5 on Qwen3.5-4B):
#   1. a full-size random checkpoint of the family (ColQwen2.5: 3B config, colqwen2.5-base layout + LoRA adapter;
#      ColQwen3 / ColQwen3.5: the 4B configs in colpali-engine's save_pretrained layout), bf16, made with the
#      fixture generators on the GPU machine (bench/gpu/common.sh, make_checkpoint);
#   2. the same pages (synthetic pages of 768 visual tokens + every page of the corpus PDFs rendered as ingest
#      renders them, at the checkpoint's 768-token cap) embedded by the reference (colpali-engine 0.3.18, SDPA, bf16;
#      eager, then under torch.compile) and by colqwen, same weights;
#   3. pages/s, ratio, MFU (FLOPs per page from the checkpoint's config.json: bench/gpu/flops.py), peak GPU memory,
#      query latency, full-scale parity against both reference runs (per-token cosine, top-10);
#   4. end to end: the 134-page manual, PDF on disk -> pages stored.
# Expects (carried): .whl/ (colpali-engine, peft wheels), .carry/colqwen.xz and .carry/colqwen-bench.xz
# (scripts/cuda-build.sh, then scripts/pack-carry.sh), optionally .carry/kernel-tests.xz (the colqwen-model lib tests built with
# `scripts/cuda-build.sh test -p colqwen-model --lib`: fused kernels vs the generic path, run first).
# Knobs: FAMILY, BATCHES, REF_BATCHES, SYNTHETIC_PAGES; OURS_ONLY=1 skips the reference, the comparison and the
# end-to-end run (a quick iteration); NO_COMPILE=1 skips the torch.compile run of the reference. The checkpoint and
# the pages are reused when the machine still has them.
# Writes logs and JSON lines to $OUT; prints a table last.
set -uo pipefail
OUT=${OUT:-/tmp/bench-out}
mkdir -p "$OUT"
exec > >(tee -a "$OUT/run.log") 2>&1
export PYTHONUNBUFFERED=1
BATCHES=${BATCHES:-8,16,32}
source bench/gpu/common.sh
family_settings || exit 1
install_wheels
unpack_binaries
cuda_env
R="$OUT/results.jsonl"; : > "$R"
if [ -f .carry/kernel-tests.xz ]; then
  /tmp/kernel-tests kernels --test-threads 1 > "$OUT/kernel-tests.log" 2>&1
  echo "{\"what\": \"kernel_tests\", \"rc\": $?, \"summary\": \"$(grep 'test result' "$OUT/kernel-tests.log" | tr -d '"')\"}" | tee -a "$R"
fi
echo "{\"what\": \"family\", \"family\": \"$FAMILY\"}" | tee -a "$R"
# Smoke test on the family's tiny fixture model first: fail in seconds, not after the full-size checkpoint is
# written.
/tmp/colqwen-bench embed "$TINY" "$TINY_IMAGES" /tmp/tiny.safetensors 1,4 || { echo "smoke test failed"; exit 1; }
# The CUDA-only paths (fused kernels, bias folded into the GEMM, padded MLP, fused norms) against the reference's
# f32 golden outputs of the tiny model.
python3 - "$TINY_GOLDEN" "$TINY_COUNT" >> "$R" <<'PY'
import json, sys, torch
from safetensors.torch import load_file
ours, gold = load_file("/tmp/tiny.safetensors"), load_file(sys.argv[1])
cos = torch.cat([torch.nn.functional.cosine_similarity(ours[f"image.{i:02d}"].float(), gold[f"image.{i:02d}.embedding"].float(), dim=-1) for i in range(int(sys.argv[2]))])
print(json.dumps({"what": "tiny_gpu_vs_f32_golden", "cos_min": round(cos.min().item(), 5), "cos_mean": round(cos.mean().item(), 5)}))
PY
tail -1 "$R"
t0=$(date +%s)
make_checkpoint || exit 1
echo "{\"what\": \"checkpoint\", \"seconds\": $(( $(date +%s) - t0 )), \"dir\": \"$M\"}" >> "$R"
# Pages of the family's cell size (ColQwen2.5 keeps /tmp/pages, as before the families).
P=/tmp/pages
[ "$FAMILY" = colqwen2_5 ] || P=/tmp/pages-$FAMILY
if [ ! -f "$P/done" ]; then
  rm -rf "$P"
  python3 bench/gpu/make_pages.py "$P" "${SYNTHETIC_PAGES:-64}" $PAGE_SIZE
  /tmp/colqwen-bench render "$P" "$RENDER_PIXELS" fixtures/pdfs/*.pdf | tee -a "$R"
  touch "$P/done"
fi

mem() { nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits -lms 100 > "$OUT/mem_$1.csv" & echo $!; }
base_mem=$(nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits | head -1)
# One process per batch size, so each peak is that batch's own (nvidia-smi sees what the process holds).
for b in ${BATCHES//,/ }; do
  pid=$(mem "ours_$b")
  /tmp/colqwen-bench embed "$M" "$P" "$OUT/ours.safetensors" "$b" bench/gpu/queries.txt | tee -a "$R"
  kill "$pid"; sleep 0.2
  echo "{\"what\": \"ours_peak_mib\", \"batch_size\": $b, \"mib\": $(( $(sort -n "$OUT/mem_ours_$b.csv" | tail -1) - base_mem ))}" >> "$R"
done
if [ "${OURS_ONLY:-0}" = 1 ]; then python3 bench/gpu/table.py "$R" "$(cat "$OUT/card.txt")" "$M"; exit 0; fi
# An adapter names its base as a sibling folder (the Rust loader resolves it); transformers needs a path.
python3 - "$M" <<'PY'
import json, sys, pathlib
p = pathlib.Path(sys.argv[1]) / "adapter_config.json"
if p.exists():
    c = json.loads(p.read_text()); base = pathlib.Path(c["base_model_name_or_path"])
    if not base.is_absolute():
        c["base_model_name_or_path"] = str(p.parent.parent / base); p.write_text(json.dumps(c, indent=2))
PY
python3 bench/gpu/reference.py "$M" "$P" "$OUT/ref.safetensors" "${REF_BATCHES:-8,16}" bench/gpu/queries.txt | tee -a "$R"
python3 bench/gpu/compare.py "$OUT/ours.safetensors" "$OUT/ref.safetensors" | tee -a "$R"
if [ "${NO_COMPILE:-0}" != 1 ]; then
  python3 bench/gpu/reference.py "$M" "$P" "$OUT/ref_compile.safetensors" "${REF_BATCHES:-8,16}" bench/gpu/queries.txt \
    --compile | tee -a "$R"
  python3 bench/gpu/compare.py "$OUT/ours.safetensors" "$OUT/ref_compile.safetensors" \
    | sed 's/"what": "parity"/"what": "parity_compile"/' | tee -a "$R"
fi

IDX=/tmp/idx-$FAMILY
rm -rf "$IDX"
t1=$(date +%s.%N)
/tmp/colqwen --model "$M" --index "$IDX" --json -q ingest fixtures/pdfs/reportlab-userguide_broken-xref.pdf > "$OUT/e2e.json"
t2=$(date +%s.%N)
python3 - "$OUT/e2e.json" "$t1" "$t2" >> "$R" <<'PY'
import json, sys
s = json.load(open(sys.argv[1])); wall = float(sys.argv[3]) - float(sys.argv[2])
print(json.dumps({"what": "e2e", "pages": s["pages_ingested"], "ingest_seconds": round(s["seconds"], 2),
                  "wall_seconds_incl_model_load": round(wall, 2), "pages_per_second": round(s["pages_ingested"] / s["seconds"], 2)}))
PY
/tmp/colqwen --model "$M" --index "$IDX" --json search "how do I draw a chart" -k 3 > "$OUT/search.json" || true
python3 bench/gpu/table.py "$R" "$(cat "$OUT/card.txt")" "$M"
