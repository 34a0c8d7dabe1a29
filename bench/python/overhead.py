"""The Python package's overhead (issue 24), on one machine in one run:

1. ingest of fixtures/pdfs (tiny model, CPU) through `colqwen.Index.add` vs the `colqwen ingest` binary, into
   fresh index folders, alternating, REPS times each: the pipeline's own seconds (the summary's `seconds`, the
   same clock in both) and the whole process's wall time (model load and, for Python, the import included);
2. search latency (exact, k = 10, bench/scale/queries.txt): `colqwen.Index.search` vs `Service::search`
   in-process in Rust (`colqwen-bench search-latency`) on the same index and queries;
3. the wheel's size, its install time into a fresh venv (numpy from the pip cache), `import colqwen` time.

usage: python bench/python/overhead.py WHEEL COLQWEN_BIN BENCH_BIN WORK_DIR [REPS] [ROUNDS]
Prints one JSON object (bench/results.md keeps the numbers).
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
TINY = REPO / "fixtures" / "tiny" / "colqwen2.5-tiny-v0.2"
PDFS = REPO / "fixtures" / "pdfs"
QUERIES = REPO / "bench" / "scale" / "queries.txt"

API = """
import json, sys, time
t0 = time.perf_counter()
import colqwen
index = colqwen.Index.open(sys.argv[1], model=sys.argv[2], device="cpu")
r = index.add([sys.argv[3]], progress=False)
print(json.dumps({"seconds": r.seconds, "pages": r.pages_ingested, "failures": len(r.failures),
                  "in_process": time.perf_counter() - t0}))
"""

SEARCH = """
import json, sys, time
import colqwen
index = colqwen.Index.open(sys.argv[1], device="cpu", search_device="cpu")
qs = [l.strip() for l in open(sys.argv[2]) if l.strip()]
rounds = int(sys.argv[3])
for q in qs:
    index.search(q, k=10, mode="exact")
ms = []
for _ in range(rounds):
    for q in qs:
        t = time.perf_counter()
        index.search(q, k=10, mode="exact")
        ms.append((time.perf_counter() - t) * 1e3)
ms.sort()
at = lambda p: ms[round((len(ms) - 1) * p)]
print(json.dumps({"searches": len(ms), "p50_ms": at(0.5), "p95_ms": at(0.95), "mean_ms": sum(ms) / len(ms)}))
"""


def run(args, ok=(0,), **kw) -> subprocess.CompletedProcess:
    p = subprocess.run(args, capture_output=True, text=True, **kw)
    if p.returncode not in ok:
        raise SystemExit(f"{args[0]} exited {p.returncode}: {p.stderr[-2000:]}")
    return p


def main() -> None:
    wheel, colqwen_bin, bench_bin, work = sys.argv[1:5]
    reps = int(sys.argv[5]) if len(sys.argv) > 5 else 3
    rounds = int(sys.argv[6]) if len(sys.argv) > 6 else 3
    work = Path(work)
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    out: dict = {"load_before": os.getloadavg()}

    venv = work / "venv"
    run([sys.executable, "-m", "venv", str(venv)])
    py = str(venv / "bin" / "python")
    run([py, "-m", "pip", "install", "-q", "numpy"])  # the dependency, so the timing below is the wheel's own
    t = time.perf_counter()
    run([py, "-m", "pip", "install", "-q", "--no-deps", wheel])
    out["install_s"] = time.perf_counter() - t
    out["wheel_bytes"] = os.path.getsize(wheel)
    imports = []
    for _ in range(7):
        t = time.perf_counter()
        run([py, "-c", "import colqwen"])
        imports.append(time.perf_counter() - t)
    bare = []
    for _ in range(7):
        t = time.perf_counter()
        run([py, "-c", "import numpy"])
        bare.append(time.perf_counter() - t)
    out["import_s"] = statistics.median(imports)
    out["import_numpy_s"] = statistics.median(bare)

    ingest = {"api": [], "cli": []}
    for rep in range(reps):
        for mode in (("api", "cli") if rep % 2 == 0 else ("cli", "api")):
            index = work / f"idx-{mode}-{rep}"
            t = time.perf_counter()
            if mode == "api":
                r = json.loads(run([py, "-c", API, str(index), str(TINY), str(PDFS)]).stdout)
            else:
                r = json.loads(run([colqwen_bin, "--index", str(index), "--model", str(TINY), "--device", "cpu",
                                    "--json", "-q", "ingest", str(PDFS)], ok=(0, 1),  # 1: a fixture's named failure
                                   env=dict(os.environ, COLQWEN_NO_PROGRESS="1")).stdout)
                r = {"seconds": r["seconds"], "pages": r["pages_ingested"], "failures": len(r["failures"])}
            r["wall"] = time.perf_counter() - t
            ingest[mode].append(r)
    out["ingest"] = ingest
    med = {m: statistics.median(x["seconds"] for x in v) for m, v in ingest.items()}
    wall = {m: statistics.median(x["wall"] for x in v) for m, v in ingest.items()}
    out["ingest_median_s"] = med
    out["ingest_wall_median_s"] = wall
    out["ingest_overhead_pct"] = 100 * (med["api"] / med["cli"] - 1)

    index = work / "idx-api-0"
    out["search_python"] = json.loads(run([py, "-c", SEARCH, str(index), str(QUERIES), str(rounds)]).stdout)
    out["search_rust"] = json.loads(run([bench_bin, "search-latency", str(index), str(QUERIES), str(rounds)]).stdout)
    out["search_added_p50_ms"] = out["search_python"]["p50_ms"] - out["search_rust"]["p50_ms"]
    out["load_after"] = os.getloadavg()
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
