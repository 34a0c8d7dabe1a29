"""Reference side of the GPU benchmark: colpali-engine 0.3.18 (transformers, torch SDPA, bf16) on the same
checkpoint and the same PNG pages as colqwen. Prints JSON lines; writes embeddings for the parity check.

usage: python reference.py MODEL_DIR IMAGE_DIR OUT.safetensors BATCHES QUERIES_FILE [--compile]

The model class follows the checkpoint's family (config.json of the model or, for an adapter, of its base:
ColQwen2.5, ColQwen3, ColQwen3.5). With --compile the model's forward runs under torch.compile (dynamic shapes;
the compilation happens in the warm-up and is reported apart) and the rows are named reference_compile_*.
"""
import json
import sys
import time
from pathlib import Path

import torch
from PIL import Image
from safetensors.torch import save_file
import colpali_engine.models as cpe

model_dir, image_dir, out, batches, queries_file = sys.argv[1:6]
compiled = "--compile" in sys.argv[6:]
tag = "reference_compile" if compiled else "reference"
dev = "cuda"


def family(folder):
    p = Path(folder)
    if (p / "adapter_config.json").exists():
        base = json.loads((p / "adapter_config.json").read_text())["base_model_name_or_path"]
        p = Path(base) if Path(base).is_absolute() else p.parent / base
    cfg = json.loads((p / "config.json").read_text())
    kind = cfg.get("model_type", "")
    return {"qwen2_5_vl": ("ColQwen2_5", "ColQwen2_5_Processor"), "qwen3_vl": ("ColQwen3", "ColQwen3Processor"),
            "qwen3_5": ("ColQwen3_5", "ColQwen3_5Processor")}[kind]


model_cls, proc_cls = (getattr(cpe, n) for n in family(model_dir))
t = time.time()
model = model_cls.from_pretrained(model_dir, dtype=torch.bfloat16, attn_implementation="sdpa", device_map=dev).eval()
proc = proc_cls.from_pretrained(model_dir)
print(f"reference {model_cls.__name__} loaded in {time.time() - t:.1f}s", file=sys.stderr)
if compiled:
    model.forward = torch.compile(model.forward, dynamic=True)
paths = sorted(Path(image_dir).glob("*.png"))
images = [Image.open(p).convert("RGB") for p in paths]
queries = [q for q in Path(queries_file).read_text().splitlines() if q]


def embed_docs(bs):
    outs = []
    for i in range(0, len(images), bs):
        batch = proc.process_images(images[i:i + bs]).to(dev)
        with torch.no_grad():
            emb = model(**batch)
        mask = batch["attention_mask"].bool()
        outs.extend(e[m].float().cpu() for e, m in zip(emb, mask))
    torch.cuda.synchronize()
    return outs


t = time.time()
with torch.no_grad():
    embed_docs(2)  # warm-up (and, with --compile, the compilation)
    if compiled:
        embed_docs(8)
print(json.dumps({"what": f"{tag}_warmup", "seconds": round(time.time() - t, 1)}), flush=True)
last = None
for bs in [int(b) for b in batches.split(",")]:
    torch.cuda.reset_peak_memory_stats()
    torch.cuda.synchronize()
    t = time.time()
    try:
        last_try = embed_docs(bs)
    except torch.OutOfMemoryError:
        print(json.dumps({"what": f"{tag}_embed", "batch_size": bs, "oom": True}))
        continue
    secs = time.time() - t
    last = last_try
    print(json.dumps({"what": f"{tag}_embed", "batch_size": bs, "pages": len(images), "seconds": round(secs, 4),
                      "pages_per_second": round(len(images) / secs, 2),
                      "peak_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2)}), flush=True)

times = []
with torch.no_grad():
    for _ in range(3):
        for q in queries:
            batch = proc.process_queries([q]).to(dev)
            torch.cuda.synchronize()
            t = time.time()
            model(**batch)
            torch.cuda.synchronize()
            times.append((time.time() - t) * 1e3)
    times.sort()
    print(json.dumps({"what": f"{tag}_query", "batch_size": 1, "median_ms": round(times[len(times) // 2], 2),
                      "p95_ms": round(times[len(times) * 95 // 100], 2)}))
    tensors = {f"image.{p.stem}": e.contiguous() for p, e in zip(paths, last)}
    for i, q in enumerate(queries):
        batch = proc.process_queries([q]).to(dev)
        tensors[f"query.{i:03d}"] = model(**batch)[0].float().cpu().contiguous()
save_file(tensors, out)
