"""Prints the benchmark table from results.jsonl (last thing the device call prints)."""
import json
import sys

rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip().startswith("{")]
card = sys.argv[2] if len(sys.argv) > 2 else "?"
TF_PER_PAGE = 8.66e12  # fact sheet §9, 768 visual tokens
PEAK = 989e12  # H100 SXM dense bf16
ours = [r for r in rows if r.get("what") == "embed"]
ref = [r for r in rows if r.get("what") == "reference_embed" and not r.get("oom")]
best_o = max(ours, key=lambda r: r["pages_per_second"], default=None)
best_r = max(ref, key=lambda r: r["pages_per_second"], default=None)
get = lambda w: next((r for r in rows if r.get("what") == w), {})
print(f"\n== colqwen GPU benchmark on {card} ==")
peaks = {r["batch_size"]: r["mib"] for r in rows if r.get("what") == "ours_peak_mib" and "batch_size" in r}
for r in ours:
    peak = peaks.get(r["batch_size"])
    print(f"colqwen    batch {r['batch_size']:>3}: {r['pages_per_second']:7.2f} pages/s  (mean {r['mean_visual_tokens']} visual tokens)"
          + (f"  peak {peak / 1024:.2f} GiB" if peak is not None else ""))
for r in ref:
    print(f"reference  batch {r['batch_size']:>3}: {r['pages_per_second']:7.2f} pages/s  peak {r['peak_gib']} GiB")
if best_o and best_r:
    print(f"best: colqwen {best_o['pages_per_second']:.2f} vs reference {best_r['pages_per_second']:.2f} pages/s "
          f"= {best_o['pages_per_second'] / best_r['pages_per_second']:.2f}x; MFU colqwen "
          f"{best_o['pages_per_second'] * TF_PER_PAGE / PEAK:.1%}, reference {best_r['pages_per_second'] * TF_PER_PAGE / PEAK:.1%}")
q, rq = get("query"), get("reference_query")
print(f"query batch 1: colqwen {q.get('median_ms', '?')} ms, reference {rq.get('median_ms', '?')} ms")
p = get("parity")
print(f"parity: per-token cosine min {p.get('cos_min')} p1 {p.get('cos_p01')} mean {p.get('cos_mean')}; "
      f"top-10 overlap {p.get('top10_overlap')}, top-1 agree {p.get('top1_agree')}")
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
