"""Prints the benchmark table from results.jsonl (last thing the device call prints).

usage: python table.py RESULTS.jsonl CARD [MODEL_DIR]   (MODEL_DIR: FLOPs per page from its config.json at the run's
mean visual tokens, flops.py; without it, the ColQwen2.5 3B's 8.66 TF of a 768-token page)"""
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import flops  # noqa: E402

rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip().startswith("{")]
card = sys.argv[2] if len(sys.argv) > 2 else "?"
config = flops.read_config(sys.argv[3]) if len(sys.argv) > 3 else None
PEAK = 989e12  # H100 SXM dense bf16


def tf_per_page(tokens):
    """FLOPs of a page of `tokens` visual tokens: from the checkpoint's config, else the fact sheet's 3B figure at
    768 tokens (what this table used before the families)."""
    return flops.page_flops(config, tokens) if config else 8.66e12


ours = [r for r in rows if r.get("what") == "embed"]
ref = [r for r in rows if r.get("what") in ("reference_embed", "reference_compile_embed") and not r.get("oom")]
best_o = max(ours, key=lambda r: r["pages_per_second"], default=None)
best_r = max(ref, key=lambda r: r["pages_per_second"], default=None)
get = lambda w: next((r for r in rows if r.get("what") == w), {})
family = get("family").get("family", "colqwen2_5")
print(f"\n== colqwen GPU benchmark on {card}: {family} ==")
peaks = {r["batch_size"]: r["mib"] for r in rows if r.get("what") == "ours_peak_mib" and "batch_size" in r}
for r in ours:
    peak = peaks.get(r["batch_size"])
    print(f"colqwen    batch {r['batch_size']:>3}: {r['pages_per_second']:7.2f} pages/s  (mean {r['mean_visual_tokens']} visual tokens)"
          + (f"  peak {peak / 1024:.2f} GiB" if peak is not None else ""))
for r in ref:
    mode = "compiled" if r["what"].startswith("reference_compile") else "eager"
    print(f"reference  batch {r['batch_size']:>3}: {r['pages_per_second']:7.2f} pages/s  peak {r['peak_gib']} GiB "
          f"({mode})")
for w in ("reference_warmup", "reference_compile_warmup"):
    if get(w):
        print(f"{w}: {get(w).get('seconds')} s")
if best_o and best_r:
    tf = tf_per_page(best_o["mean_visual_tokens"])
    mode = "compiled" if best_r["what"].startswith("reference_compile") else "eager"
    print(f"best: colqwen {best_o['pages_per_second']:.2f} vs reference {best_r['pages_per_second']:.2f} pages/s "
          f"({mode}) = {best_o['pages_per_second'] / best_r['pages_per_second']:.2f}x; {tf / 1e12:.2f} TF/page at "
          f"{best_o['mean_visual_tokens']} visual tokens; MFU colqwen {best_o['pages_per_second'] * tf / PEAK:.1%}, "
          f"reference {best_r['pages_per_second'] * tf / PEAK:.1%}")
q, rq, rqc = get("query"), get("reference_query"), get("reference_compile_query")
print(f"query batch 1: colqwen {q.get('median_ms', '?')} ms, reference {rq.get('median_ms', '?')} ms eager, "
      f"{rqc.get('median_ms', '?')} ms compiled")
for w, label in (("parity", "eager"), ("parity_compile", "compiled")):
    p = get(w)
    if p:
        print(f"parity vs reference ({label}): per-token cosine min {p.get('cos_min')} p1 {p.get('cos_p01')} mean "
              f"{p.get('cos_mean')}; top-10 overlap {p.get('top10_overlap')}, top-1 agree {p.get('top1_agree')}")
prof = sorted((r for r in rows if r.get("what") == "profile"), key=lambda r: -r["ms_per_page"])
if prof:
    print("where colqwen's time goes (ms/page, batch 16, synchronised spans): " + ", ".join(
        f"{r['span']} {r['ms_per_page']:.2f}" for r in prof[:12]) + f"; total {get('profile_total').get('ms_per_page')}")
e = get("e2e")
print(f"end to end (134-page manual, PDF -> stored): {e.get('pages_per_second')} pages/s, {e.get('ingest_seconds')} s "
      f"({e.get('wall_seconds_incl_model_load')} s with model load)")
k = get("kernel_tests")
if k:
    print(f"fused kernel tests (vs generic path): rc {k.get('rc')}; {k.get('summary')}")
pm = get("profile_memory")
if pm:
    print(f"inside the forward (batch 16, stage granularity): +{pm.get('forward_extra_mib')} MiB over the between-batch level")
