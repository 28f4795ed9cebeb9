#!/usr/bin/env python3
"""mlc's default model against scikit-learn's HistGradientBoosting, same rows.

Usage:  python benchmarks/quality.py [FILE.dml ...] [--json OUT.json]

Runs `mlc run` (in-process, seed 0) and benchmarks/hgb_baseline.py on every program
(default: benchmarks/heldout/*.dml and examples/*.dml whose columns are all number,
binary or category; benchmarks/types_quality.py covers text, set and date) and
prints, per program, the lead test metric of each, the difference, and mlc's wall
time. The acceptance bar for a newcomer's program: ROC AUC within 0.02 of HGB (R^2
within 0.03), under 60 s.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LEAD = {"binary": "roc_auc", "category": "accuracy", "number": "r2"}
BAR = {"binary": 0.02, "number": 0.03, "category": 0.03}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("dml", nargs="*")
    ap.add_argument("--json", metavar="FILE")
    args = ap.parse_args()
    sys.path.insert(0, os.path.join(ROOT, "benchmarks"))
    from hgb_baseline import default_programs
    programs = args.dml or default_programs()
    with tempfile.TemporaryDirectory() as tmp:
        base = os.path.join(tmp, "hgb.json")
        subprocess.run([sys.executable, os.path.join(ROOT, "benchmarks/hgb_baseline.py"), *programs,
                        "--json", base], check=True, capture_output=True)
        hgb = {os.path.basename(r["dml"]): r for r in json.load(open(base))}
        from mlc.runtime.run import run
        rows = []
        for p in programs:
            t = time.perf_counter()
            report = run(p, os.path.join(tmp, os.path.basename(p)), seed=0, log=lambda m: None)
            wall = time.perf_counter() - t
            out = report["resolved"]["outputs"][0]
            metric = LEAD[out["type"]]
            ours = report["metrics"]["test"][out["name"]][metric]
            theirs = hgb[os.path.basename(p)]["value"]
            rows.append({"program": os.path.relpath(p, ROOT), "output": out["name"], "type": out["type"],
                         "metric": metric, "mlc": ours, "hgb": theirs, "diff": ours - theirs,
                         "within_bar": ours >= theirs - BAR[out["type"]], "mlc_seconds": wall,
                         "epochs": f"{report['training']['best_epoch']}/{report['training']['epochs_run']}"})
            r = rows[-1]
            print(f"{r['program']:<36} {r['metric']:<9} mlc {r['mlc']:.4f}  hgb {r['hgb']:.4f}  "
                  f"diff {r['diff']:+.4f}  {'ok ' if r['within_bar'] else 'LOW'}  {wall:5.1f} s  "
                  f"best/run epochs {r['epochs']}", flush=True)
    if args.json:
        json.dump(rows, open(args.json, "w"), indent=1)


if __name__ == "__main__":
    main()
