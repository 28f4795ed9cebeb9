#!/usr/bin/env python3
"""Quality of `tune { trials = 16 }` and `ensemble = K` against the defaults and HGB.

Usage:  python benchmarks/tune_quality.py [FILE.dml ...] [--seeds 0 1 2] [--ensemble 4]
                                          [--variants default tune ensemble] [--json OUT.json]

For each program (default: the tabular examples and held-out sets of QUALITY.md, plus
benchmarks/types/reviews.dml), runs `mlc run` in process on three variants of it:
the program as written (`default`), the program with `tune { trials = 16 }` appended
(`tune`, the default search space), and with `ensemble = K` in `train` (`ensemble`),
each with every seed; fits HistGradientBoosting with benchmarks/hgb_baseline.py on the
same rows (tabular programs only; reviews is compared with its TF-IDF anchor in
QUALITY.md). Prints the lead test metric (mean and spread over seeds) and wall time.
The JSON is rewritten after every run, so a cut-short run keeps what it measured.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LEAD = {"binary": "roc_auc", "category": "accuracy", "number": "r2", "set": "jaccard"}


def variant(text: str, program: str, kind: str, k: int) -> str:
    folder = os.path.dirname(os.path.abspath(program))
    text = re.sub(r'data\s+"([^"]+)"', lambda m: f'data "{os.path.join(folder, m.group(1))}"', text, count=1)
    if kind == "tune":
        return text + "\ntune { trials = 16 }\n"
    if kind == "ensemble":
        if re.search(r"^train\s*\{", text, re.M):
            return re.sub(r"^train\s*\{", f"train {{ ensemble = {k}, ", text, count=1, flags=re.M)
        return text + f"\ntrain {{ ensemble = {k} }}\n"
    return text


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("dml", nargs="*")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--ensemble", type=int, default=4)
    ap.add_argument("--variants", nargs="+", default=["default", "tune", "ensemble"])
    ap.add_argument("--json", metavar="FILE")
    args = ap.parse_args()
    sys.path.insert(0, os.path.join(ROOT, "benchmarks"))
    from hgb_baseline import default_programs
    programs = args.dml or default_programs() + [os.path.join(ROOT, "benchmarks/types/reviews.dml")]
    from mlc.runtime.run import run
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tabular = [p for p in programs if "types/" not in p]
        hgb = {}
        if tabular:
            base = os.path.join(tmp, "hgb.json")
            subprocess.run([sys.executable, os.path.join(ROOT, "benchmarks/hgb_baseline.py"), *tabular,
                            "--json", base], check=True, capture_output=True)
            hgb = {os.path.basename(r["dml"]): r["value"] for r in json.load(open(base))}
        for p in programs:
            text = open(p).read()
            row = {"program": os.path.relpath(p, ROOT), "hgb": hgb.get(os.path.basename(p))}
            for kind in args.variants:
                values, seconds = [], []
                for seed in args.seeds:
                    path = os.path.join(tmp, f"{kind}_{os.path.basename(p)}")
                    with open(path, "w") as f:
                        f.write(variant(text, p, kind, args.ensemble))
                    t = time.perf_counter()
                    report = run(path, os.path.join(tmp, f"out_{kind}_{seed}"), seed=seed, log=lambda m: None)
                    seconds.append(time.perf_counter() - t)
                    out = report["resolved"]["outputs"][0]
                    row["metric"] = LEAD[out["type"]]
                    values.append(report["metrics"]["test"][out["name"]][row["metric"]])
                    if kind == "tune":
                        row.setdefault("tune_chosen", []).append(  # one per seed
                            report["tuning"]["trials"][report["tuning"]["chosen"]]["values"])
                row[kind] = {"mean": float(np.mean(values)), "spread": float(np.max(values) - np.min(values)),
                             "values": values, "seconds": float(np.mean(seconds))}
                print(f"{row['program']:<36} {kind:<9} {row['metric']:<8} {np.mean(values):.4f} "
                      f"(spread {row[kind]['spread']:.4f}, {len(values)} seeds)  {np.mean(seconds):5.1f} s"
                      + (f"  hgb {row['hgb']:.4f}" if row["hgb"] is not None else ""), flush=True)
            rows.append(row)
            if args.json:
                json.dump(rows, open(args.json, "w"), indent=1)


if __name__ == "__main__":
    main()
