#!/usr/bin/env python3
"""Gradient-boosting baseline for .dml programs (a yardstick for mlc's models).

Usage:
    python benchmarks/hgb_baseline.py [FILE.dml ...] [--json OUT.json]

With no .dml given it runs every benchmarks/heldout/*.dml and examples/*.dml whose
columns are all number, binary or category (benchmarks/types_quality.py compares the
programs with text, set and date columns).
It does NOT import mlc: a tiny regex reads only these .dml lines

    data "PATH" split A/B/C seed S      (PATH relative to the .dml file)
    input  NAME : number|binary|category
    output NAME : number|binary|category

CSV reading: only an empty cell is a missing value.  Strings such as "None",
"NA" or "null" are ordinary category values (ames.csv has a real "None").

Split rule (deterministic, to be reproduced by mlc):
    n    = number of data rows in the CSV (header excluded), in file order
    perm = numpy.random.default_rng(S).permutation(n)
    n_train = n * A // 100;  n_val = n * B // 100;  n_test = n - n_train - n_val
    train = rows perm[:n_train]
    val   = rows perm[n_train:n_train + n_val]
    test  = rows perm[n_train + n_val:]
For 80/10/10 this is: first 80% of the shuffled indices train, next 10%
validation, last 10% (plus the rounding remainder) test.  Rows whose output
is missing are dropped from each part after the split.

Model: scikit-learn HistGradientBoostingClassifier / HistGradientBoostingRegressor
with default parameters except random_state=0 (the default early stopping on
>10k training rows uses a random internal holdout), fitted on train only; the
validation part is only scored, never used for fitting.  Category inputs go
through OrdinalEncoder (unknown and missing -> NaN) and are passed as
categorical_features; binary inputs are ordinal-encoded as 0/1 numbers; number
inputs as floats, missing -> NaN (handled natively by HGB).

Metrics on the test part: binary output -> ROC AUC (probability of the
label that sorts second) and accuracy; category output -> accuracy; number
output -> R^2.
"""
import argparse
import glob
import json
import os
import re
import sys
import time

import numpy as np
import pandas as pd
from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor
from sklearn.metrics import accuracy_score, r2_score, roc_auc_score
from sklearn.preprocessing import OrdinalEncoder

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATA_RE = re.compile(r'^\s*data\s+"([^"]+)"\s+split\s+(\d+)\s*/\s*(\d+)\s*/\s*(\d+)\s+seed\s+(\d+)\s*$')
FIELD_RE = re.compile(r"^\s*(input|output)\s+([A-Za-z_][A-Za-z0-9_]*)\s*:\s*(number|binary|category)\s*$")


def parse_dml(path):
    spec = {"inputs": [], "outputs": []}
    with open(path) as f:
        for line in f:
            line = line.split("#", 1)[0]
            if not line.strip():
                continue
            m = DATA_RE.match(line)
            if m:
                spec["data"] = os.path.join(os.path.dirname(path), m.group(1))
                spec["split"] = tuple(int(m.group(i)) for i in (2, 3, 4))
                spec["seed"] = int(m.group(5))
                continue
            m = FIELD_RE.match(line)
            if m:
                spec[m.group(1) + "s"].append((m.group(2), m.group(3)))
                continue
            if line.split() and line.split()[0] in ("data", "input", "output"):
                raise ValueError(f"{path}: cannot read line: {line.strip()!r}")
            # other statements (block, combiner, train) only shape mlc's model: skip them
    if "data" not in spec or len(spec["outputs"]) != 1:
        raise ValueError(f"{path}: need one data line and exactly one output")
    return spec


TABULAR = ("number", "binary", "category")
ANY_FIELD_RE = re.compile(r"^\s*(?:input|output)\s+[A-Za-z_][A-Za-z0-9_]*\s*:\s*([A-Za-z_]+)")


def is_tabular(path):
    """True when every input and output of the program is number, binary or category:
    the programs this baseline (and benchmarks/quality.py) compare. Programs with text,
    set, date, ... columns are compared by benchmarks/types_quality.py instead."""
    with open(path) as f:
        return all(m.group(1) in TABULAR for m in map(ANY_FIELD_RE.match, (l.split("#", 1)[0] for l in f)) if m)


def default_programs():
    """benchmarks/heldout/*.dml and examples/*.dml, tabular programs only."""
    paths = sorted(glob.glob(os.path.join(ROOT, "benchmarks", "heldout", "*.dml"))) + \
        sorted(glob.glob(os.path.join(ROOT, "examples", "*.dml")))
    return [p for p in paths if is_tabular(p)]


def split_indices(n, split, seed):
    a, b, _ = split
    perm = np.random.default_rng(seed).permutation(n)
    n_train = n * a // 100
    n_val = n * b // 100
    return perm[:n_train], perm[n_train:n_train + n_val], perm[n_train + n_val:]


def read_csv(path, fields):
    kinds = dict(fields)
    dtypes = {c: (str if k in ("binary", "category") else "float64") for c, k in kinds.items()}
    df = pd.read_csv(path, dtype=dtypes, keep_default_na=False, na_values=[""])
    missing = [c for c in kinds if c not in df.columns]
    if missing:
        raise ValueError(f"{path}: columns not in CSV: {missing}")
    return df


def encode_inputs(train, others, inputs):
    cols, cat_mask = [], []
    blocks = [[] for _ in range(1 + len(others))]
    for name, kind in inputs:
        if kind == "number":
            for blk, df in zip(blocks, [train, *others]):
                blk.append(df[[name]].to_numpy(dtype=float))
            cat_mask.append(False)
        else:
            enc = OrdinalEncoder(handle_unknown="use_encoded_value", unknown_value=np.nan,
                                 encoded_missing_value=np.nan)
            enc.fit(train[[name]].astype(object))
            for blk, df in zip(blocks, [train, *others]):
                blk.append(enc.transform(df[[name]].astype(object)))
            # HGB accepts at most 255 categories per feature; beyond that, use the codes as numbers.
            cat_mask.append(kind == "category" and len(enc.categories_[0]) <= 255)
        cols.append(name)
    return [np.hstack(b) for b in blocks], np.array(cat_mask)


def run_one(dml_path):
    spec = parse_dml(dml_path)
    (out, out_kind), = spec["outputs"]
    df = read_csv(spec["data"], spec["inputs"] + spec["outputs"])
    n = len(df)
    parts = [df.iloc[idx] for idx in split_indices(n, spec["split"], spec["seed"])]
    parts = [p[p[out].notna()] for p in parts]
    train, val, test = parts
    (x_tr, x_va, x_te), cat_mask = encode_inputs(train, [val, test], spec["inputs"])
    cat = cat_mask if cat_mask.any() else None

    res = {"dataset": os.path.splitext(os.path.basename(dml_path))[0],
           "dml": os.path.relpath(dml_path, ROOT), "output": out, "kind": out_kind, "rows": n,
           "n_train": len(train), "n_val": len(val), "n_test": len(test)}
    if out_kind == "number":
        model = HistGradientBoostingRegressor(categorical_features=cat, random_state=0)
        y_tr, y_va, y_te = (p[out].to_numpy(dtype=float) for p in parts)
    else:
        model = HistGradientBoostingClassifier(categorical_features=cat, random_state=0)
        labels = sorted(train[out].unique())
        if out_kind == "binary" and len(labels) != 2:
            raise ValueError(f"{dml_path}: binary output {out} has labels {labels} in train")
        lut = {v: i for i, v in enumerate(labels)}
        y_tr, y_va, y_te = (p[out].map(lut).to_numpy(dtype=float) for p in parts)  # unseen -> NaN
        res["labels"] = labels

    t0 = time.perf_counter()
    model.fit(x_tr, y_tr)
    res["fit_s"] = time.perf_counter() - t0

    for tag, x, y in (("val", x_va, y_va), ("test", x_te, y_te)):
        if out_kind == "number":
            res[f"{tag}_r2"] = float(r2_score(y, model.predict(x)))
        else:
            pred = model.predict(x)
            res[f"{tag}_accuracy"] = float(accuracy_score(y, pred))
            if out_kind == "binary":
                res[f"{tag}_auc"] = float(roc_auc_score(y, model.predict_proba(x)[:, 1]))
    if out_kind == "number":
        res["metric"], res["value"] = "R2", res["test_r2"]
    elif out_kind == "binary":
        res["metric"], res["value"] = "ROC AUC", res["test_auc"]
    else:
        res["metric"], res["value"] = "accuracy", res["test_accuracy"]
    return res


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("dml", nargs="*", help=".dml files (default: the tabular benchmarks/heldout/*.dml examples/*.dml)")
    ap.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    args = ap.parse_args(argv)
    paths = args.dml or default_programs()
    if not paths:
        sys.exit("no .dml files found")

    results = []
    hdr = f"{'dataset':14} {'output':12} {'kind':8} {'rows':>6}  {'metric':8} {'test':>7} {'(acc)':>7} {'fit s':>6}"
    print(hdr)
    print("-" * len(hdr))
    for p in paths:
        r = run_one(p)
        results.append(r)
        acc = f"{r['test_accuracy']:.4f}" if r["kind"] == "binary" else ""
        print(f"{r['dataset']:14} {r['output']:12} {r['kind']:8} {r['rows']:6}  {r['metric']:8} "
              f"{r['value']:7.4f} {acc:>7} {r['fit_s']:6.2f}", flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)
            f.write("\n")


if __name__ == "__main__":
    main()
