"""Reference side of the GPU benchmark: colpali-engine 0.3.18 (transformers, torch SDPA, bf16) on the same
checkpoint and the same PNG pages as colqwen. Prints JSON lines; writes embeddings for the parity check.

usage: python reference.py ADAPTER_DIR IMAGE_DIR OUT.safetensors BATCHES QUERIES_FILE
"""
import json
import sys
import time
from pathlib import Path

import torch
from PIL import Image
from safetensors.torch import save_file
from colpali_engine.models import ColQwen2_5, ColQwen2_5_Processor

model_dir, image_dir, out, batches, queries_file = sys.argv[1:6]
dev = "cuda"
t = time.time()
model = ColQwen2_5.from_pretrained(model_dir, dtype=torch.bfloat16, attn_implementation="sdpa", device_map=dev).eval()
proc = ColQwen2_5_Processor.from_pretrained(model_dir)
print(f"reference loaded in {time.time() - t:.1f}s", file=sys.stderr)
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


with torch.no_grad():
    embed_docs(2)  # warm-up
last = None
for bs in [int(b) for b in batches.split(",")]:
    torch.cuda.reset_peak_memory_stats()
    torch.cuda.synchronize()
    t = time.time()
    try:
        last_try = embed_docs(bs)
    except torch.OutOfMemoryError:
        print(json.dumps({"what": "reference_embed", "batch_size": bs, "oom": True}))
        continue
    secs = time.time() - t
    last = last_try
    print(json.dumps({"what": "reference_embed", "batch_size": bs, "pages": len(images), "seconds": round(secs, 4),
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
    print(json.dumps({"what": "reference_query", "batch_size": 1, "median_ms": round(times[len(times) // 2], 2)}))
    tensors = {f"image.{p.stem}": e.contiguous() for p, e in zip(paths, last)}
    for i, q in enumerate(queries):
        batch = proc.process_queries([q]).to(dev)
        tensors[f"query.{i:03d}"] = model(**batch)[0].float().cpu().contiguous()
save_file(tensors, out)
