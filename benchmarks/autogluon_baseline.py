#!/usr/bin/env python3
"""AutoGluon baseline for .dml programs: the peer to beat on tables.

    /work/agvenv/bin/python benchmarks/autogluon_baseline.py [FILE.dml ...] [--json OUT.json]
        [--preset medium_quality] [--time-limit 120]

AutoGluon is not a dependency of mlc (it is large and pins its own scikit-learn and
boosting libraries): install it in a venv of its own,

    python3 -m venv /work/agvenv
    /work/agvenv/bin/pip install "autogluon.tabular[lightgbm,catboost,xgboost]==1.6.3"

(no torch: its neural models are skipped, the trees and the weighted ensemble run).
This script does not import mlc. It reads the .dml's data, inputs, output and split with
benchmarks/hgb_baseline.py's reader and split rule (the rows mlc trains, validates and
tests on), and fits `TabularPredictor(...).fit(train, tuning_data=validation,
presets=PRESET)`: AutoGluon sees the validation rows as mlc does (for early stopping and
choosing among its models; mlc picks its best epoch on them), never the test rows.
Category and binary columns are strings, numbers floats, only an empty cell missing.
Metrics on the test rows, as hgb_baseline.py: ROC AUC for a binary output (the label that
sorts second is positive), accuracy for a category output, R² for a number output.
"""
import argparse
import json
import os
import sys
import tempfile
import time

import numpy as np
from sklearn.metrics import accuracy_score, r2_score, roc_auc_score

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from hgb_baseline import ROOT, default_programs, parse_dml, read_csv, split_indices  # noqa: E402

PROBLEM = {"number": ("regression", "r2"), "binary": ("binary", "roc_auc"), "category": ("multiclass", "accuracy")}


def run_one(dml_path: str, preset: str, time_limit: int, seed: int = 0) -> dict:
    from autogluon.tabular import TabularPredictor
    spec = parse_dml(dml_path)
    (out, kind), = spec["outputs"]
    df = read_csv(spec["data"], spec["inputs"] + spec["outputs"])
    columns = [name for name, _ in spec["inputs"]] + [out]
    parts = [df.iloc[idx][columns] for idx in split_indices(len(df), spec["split"], spec["seed"])]
    train, val, test = [p[p[out].notna()].reset_index(drop=True) for p in parts]
    problem, metric = PROBLEM[kind]
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        predictor = TabularPredictor(label=out, problem_type=problem, eval_metric=metric, path=tmp,
                                     verbosity=0).fit(train, tuning_data=val, presets=preset,
                                                      time_limit=time_limit, ag_args_fit={"random_seed": seed})
        fit_s = time.perf_counter() - t0
        x_test = test.drop(columns=[out])
        if kind == "number":
            value = float(r2_score(test[out].to_numpy(float), predictor.predict(x_test).to_numpy(float)))
        elif kind == "binary":
            labels = sorted(train[out].unique())
            proba = predictor.predict_proba(x_test)[labels[1]].to_numpy()
            value = float(roc_auc_score((test[out] == labels[1]).to_numpy(), proba))
        else:
            value = float(accuracy_score(test[out].to_numpy(), predictor.predict(x_test).to_numpy()))
        models = predictor.model_names()
        best = predictor.model_best
    return {"dataset": os.path.splitext(os.path.basename(dml_path))[0], "dml": os.path.relpath(dml_path, ROOT),
            "output": out, "kind": kind, "metric": metric, "value": value, "fit_s": fit_s,
            "n_train": len(train), "n_val": len(val), "n_test": len(test), "models": len(models), "best": best}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("dml", nargs="*", help=".dml files (default: the tabular heldout and example programs)")
    ap.add_argument("--json", metavar="FILE")
    ap.add_argument("--preset", default="medium_quality")
    ap.add_argument("--time-limit", type=int, default=120, help="seconds per data set (AutoGluon's time_limit)")
    args = ap.parse_args(argv)
    import autogluon.tabular
    print(f"# {time.strftime('%Y-%m-%d %H:%M %Z')}, autogluon.tabular {autogluon.tabular.__version__}, "
          f"preset {args.preset}, time limit {args.time_limit} s, {os.cpu_count()} CPUs, "
          f"load {os.getloadavg()[0]:.1f}", flush=True)
    results = []
    for path in args.dml or default_programs():
        r = run_one(os.path.abspath(path), args.preset, args.time_limit)
        results.append(r)
        print(f"{r['dml']:36} {r['metric']:8} autogluon {r['value']:.4f}  {r['fit_s']:6.1f} s  "
              f"{r['models']} models, best {r['best']}", flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
