"""Full-scale parity: per-token cosine of colqwen's page/query embeddings against the reference's, and
agreement of MaxSim top-10 rankings. usage: python compare.py OURS.safetensors REF.safetensors"""
import json
import sys

import torch
from safetensors.torch import load_file

ours, ref = load_file(sys.argv[1]), load_file(sys.argv[2])
cos = []
for k in sorted(ref):
    a, b = ours[k].float(), ref[k].float()
    if a.shape != b.shape:
        print(json.dumps({"what": "shape_mismatch", "key": k, "ours": list(a.shape), "ref": list(b.shape)}))
        continue
    cos.append(torch.nn.functional.cosine_similarity(a, b, dim=-1))
cos = torch.cat(cos)
imgs = sorted(k for k in ref if k.startswith("image."))
qs = sorted(k for k in ref if k.startswith("query."))


def scores(t):
    return torch.stack([torch.stack([(t[q] @ t[d].T).max(1).values.sum() for d in imgs]) for q in qs])


so, sr = scores(ours), scores(ref)
k = min(10, len(imgs))
top_o, top_r = so.topk(k, dim=1).indices, sr.topk(k, dim=1).indices
overlap = sum(len(set(a.tolist()) & set(b.tolist())) for a, b in zip(top_o, top_r)) / (k * len(qs))
top1 = (top_o[:, 0] == top_r[:, 0]).float().mean().item()
rel = ((so - sr).abs() / sr.abs().clamp(min=1e-6)).max().item()
print(json.dumps({"what": "parity", "tokens": cos.numel(), "cos_min": round(cos.min().item(), 5),
                  "cos_p01": round(cos.quantile(0.01).item(), 5), "cos_mean": round(cos.mean().item(), 5),
                  "top10_overlap": round(overlap, 4), "top1_agree": round(top1, 4), "score_max_rel_err": round(rel, 5)}))
