#!/usr/bin/env python3
"""The anchor a user would pick instead of mlc, for programs with text, set and date columns.

Usage:
    python benchmarks/types_quality.py [FILE.dml ...] [--baselines-only] [--json OUT.json]
                                       [--repeats K] [--mlc-timeout S]

Default programs: benchmarks/types/*.dml. For each program it fits one scikit-learn
anchor on the same training rows mlc trains on, scores it on the same test rows, and
records the fit time (features and model, on the training rows; the median of
--repeats fits); then it runs `mlc run PROGRAM --out DIR --seed 0` (a subprocess)
and reads DIR/report.json metrics["test"][OUTPUT][METRIC]. If `mlc run` fails (a column
type it does not know yet, say) the mlc column says so and the script goes on;
`--baselines-only` skips mlc. It prints markdown tables. Needs the `dev` extras
(scikit-learn, pandas); it does not import mlc.

The anchor (`anchor_kind`):
- a `set` output: one-vs-rest LogisticRegression (one binary model per label seen in
  training, a label is predicted when its probability is at least 0.5) on the
  linear features below;
- otherwise, any `text` input: LogisticRegression (binary, category output) or Ridge
  (number output) on the linear features;
- otherwise: HistGradientBoosting (random_state=0), as benchmarks/hgb_baseline.py, on
  the tree features.
Linear features: text -> TfidfVectorizer(word 1-2 grams, min_df=2, sublinear_tf);
number -> median imputation with a missing indicator, standardized; binary, category ->
one-hot (missing is its own value); set -> one 0/1 column per label; date -> one-hot
month, weekday and hour, standardized year, day and day of year.
Tree features: number as is (missing -> NaN); binary -> 0/1; category -> ordinal codes
as categorical features (at most 255 values); set -> one 0/1 column per label seen in
training; date -> year, month, day, weekday, day of year, hour as numbers; text -> none
(a program with text uses the linear anchor).
Every model keeps scikit-learn's defaults otherwise (LogisticRegression max_iter=2000).
Ablations (second table): the same anchor rule refitted without each date, set or text
input in turn (when other inputs remain), to show what that column is worth.

Rows and split, exactly as mlc (mlc/compile.py frontend, runtime/data.py):
- cells equal to "", NA, N/A, NaN, nan, null, NULL or ? are missing (runtime/data.py
  NULL_VALUES);
- rows whose output is missing are dropped FIRST (an empty set cell is missing);
- then, with n the rows left: perm = numpy.random.default_rng(seed).permutation(n);
  train = perm[:n*A//100], validation = the next n*B//100, test = the rest.
Set cells: members are split on the first of `|`, `;`, `,`, space that occurs in the
column (or the program's `separator = "..."` option), trimmed, empty members dropped.
Dates: pandas.to_datetime (ISO 8601 first, then mixed formats); a time zone suffix
is kept (parts in that zone).

Metrics (test split; the first is the lead, as mlc/spec.py METRICS): binary -> roc_auc
(probability of the label that sorts second), accuracy; category -> accuracy, macro_f1;
number -> r2, mae, rmse; set -> jaccard (samples average), f1_micro, f1_macro, from
sklearn.metrics with zero_division=0, over every label that occurs in the data.
"""
from __future__ import annotations

import argparse
import glob
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import warnings

import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor
from sklearn.feature_extraction.text import CountVectorizer, TfidfVectorizer
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.metrics import (accuracy_score, f1_score, jaccard_score, mean_absolute_error,
                             mean_squared_error, r2_score, roc_auc_score)
from sklearn.multiclass import OneVsRestClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import MultiLabelBinarizer, OneHotEncoder, OrdinalEncoder, StandardScaler

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NULL_VALUES = ["", "NA", "N/A", "NaN", "nan", "null", "NULL", "?"]  # runtime/data.py
SEPARATORS = ("|", ";", ",", " ")  # mlc/spec.py: tried in this order
METRICS = {"binary": ("roc_auc", "accuracy"), "category": ("accuracy", "macro_f1"),
           "number": ("r2", "mae", "rmse"), "set": ("jaccard", "f1_micro", "f1_macro")}
HIGHER = {"mae": False, "rmse": False}
DATE_PARTS = ("year", "month", "day", "weekday", "dayofyear", "hour")
TYPES = "number|binary|category|text|set|bag|date|vector|sequence"

DATA_RE = re.compile(r'^\s*data\s+"([^"]+)"\s+split\s+(\d+)\s*/\s*(\d+)\s*/\s*(\d+)\s+seed\s+(\d+)\s*$')
FIELD_RE = re.compile(rf"^\s*(input|output)\s+([A-Za-z_][A-Za-z0-9_]*)\s*:\s*({TYPES})\b(.*)$")
SEP_RE = re.compile(r'separator\s*=\s*"((?:[^"\\]|\\.)*)"')


# ---------------------------------------------------------------- program and rows
def parse_dml(path):
    """data, inputs and outputs of a .dml file; option blocks are skipped except a
    `separator` (block, combiner and train statements only shape mlc's model)."""
    spec = {"path": path, "inputs": [], "outputs": []}
    text = open(path, encoding="utf-8").read()
    text = "\n".join(line.split("#", 1)[0] for line in text.splitlines())
    lines, depth, current = text.splitlines(), 0, None
    for line in lines:
        if depth == 0:
            m = DATA_RE.match(line)
            if m:
                spec["data"] = os.path.normpath(os.path.join(os.path.dirname(path), m.group(1)))
                spec["split"] = tuple(int(m.group(i)) for i in (2, 3, 4))
                spec["seed"] = int(m.group(5))
                continue
            m = FIELD_RE.match(line)
            if m:
                current = {"name": m.group(2), "type": m.group(3), "separator": None}
                spec[m.group(1) + "s"].append(current)
            elif line.split() and line.split()[0] in ("data", "input", "output"):
                raise ValueError(f"{path}: cannot read line: {line.strip()!r}")
            else:
                current = None
        if current is not None:
            s = SEP_RE.search(line)
            if s:
                current["separator"] = s.group(1).encode().decode("unicode_escape")
        depth += line.count("{") - line.count("}")
        if depth == 0 and "}" in line:
            current = None
    if "data" not in spec or len(spec["outputs"]) != 1:
        raise ValueError(f"{path}: need one data line with a ratio split and exactly one output")
    return spec


def split_indices(n, split, seed):
    """runtime/data.py split_indices, ratio form."""
    perm = np.random.default_rng(seed).permutation(n)
    a = n * split[0] // 100
    b = a + n * split[1] // 100
    return np.sort(perm[:a]), np.sort(perm[a:b]), np.sort(perm[b:])


def load_rows(spec):
    df = pd.read_csv(spec["data"], dtype=str, keep_default_na=False, na_values=NULL_VALUES,
                     encoding="utf-8")
    fields = spec["inputs"] + spec["outputs"]
    missing = [f["name"] for f in fields if f["name"] not in df.columns]
    if missing:
        raise ValueError(f"{spec['data']}: columns not in the CSV: {missing}")
    out = spec["outputs"][0]
    n_all = len(df)
    df = df[df[out["name"]].notna()].reset_index(drop=True)  # mlc drops these before splitting
    parts = [df.iloc[i].reset_index(drop=True) for i in split_indices(len(df), spec["split"], spec["seed"])]
    return parts, n_all - len(df)


def set_separator(field, columns):
    if field["separator"] is not None:
        return field["separator"]
    cells = pd.concat([c for c in columns]).dropna()
    for sep in SEPARATORS:
        if cells.str.contains(sep, regex=False).any():
            return sep
    return SEPARATORS[0]


def members(series, sep):
    return [[] if pd.isna(v) else [m.strip() for m in v.split(sep) if m.strip()] for v in series]


def date_parts(series):
    s = series.astype(object).where(series.notna(), None)
    try:
        d = pd.to_datetime(s, format="ISO8601")
    except (ValueError, TypeError):
        d = pd.to_datetime(s, format="mixed")
    parts = {"year": d.dt.year, "month": d.dt.month, "day": d.dt.day, "weekday": d.dt.day_of_week,
             "dayofyear": d.dt.day_of_year, "hour": d.dt.hour}
    return pd.DataFrame({k: v.astype(float) for k, v in parts.items()})


# ---------------------------------------------------------------- features
def to_text(s):
    return s.fillna("").astype(str)


def _cells(x):
    return x  # a list of members: the set column's "tokens"


def linear_features(inputs, parts, seps):
    """A ColumnTransformer (not yet fitted) and the input frame of each part."""
    frames = [pd.DataFrame(index=p.index) for p in parts]
    transformers = []
    for f in inputs:
        name, kind = f["name"], f["type"]
        if kind == "number":
            for fr, p in zip(frames, parts):
                fr[name] = pd.to_numeric(p[name].str.replace(",", ""), errors="raise")
            transformers.append((name, make_pipeline(SimpleImputer(strategy="median", add_indicator=True),
                                                     StandardScaler()), [name]))
        elif kind in ("binary", "category"):
            for fr, p in zip(frames, parts):
                fr[name] = p[name].fillna("<missing>")
            transformers.append((name, OneHotEncoder(handle_unknown="ignore"), [name]))
        elif kind == "text":
            for fr, p in zip(frames, parts):
                fr[name] = to_text(p[name])
            transformers.append((name, TfidfVectorizer(ngram_range=(1, 2), min_df=2, sublinear_tf=True), name))
        elif kind == "set":
            for fr, p in zip(frames, parts):
                fr[name] = pd.Series(members(p[name], seps[name]), index=p.index, dtype=object)
            transformers.append((name, CountVectorizer(analyzer=_cells, binary=True, lowercase=False), name))
        elif kind == "date":
            cat_cols, num_cols = [f"{name}.{k}" for k in ("month", "weekday", "hour")], \
                [f"{name}.{k}" for k in ("year", "day", "dayofyear")]
            for fr, p in zip(frames, parts):
                dp = date_parts(p[name])
                for k in DATE_PARTS:
                    fr[f"{name}.{k}"] = dp[k].to_numpy()
                for c in cat_cols:
                    fr[c] = fr[c].fillna(-1).astype(int).astype(str)
            transformers.append((name + ".cat", OneHotEncoder(handle_unknown="ignore"), cat_cols))
            transformers.append((name + ".num", make_pipeline(SimpleImputer(strategy="median"), StandardScaler()),
                                 num_cols))
        else:
            raise ValueError(f"no linear encoding for a `{kind}` input")
    ct = ColumnTransformer(transformers, sparse_threshold=1.0)
    return ct, frames


def tree_features(inputs, parts, seps):
    """Dense float matrices for HGB and the categorical-feature mask."""
    train = parts[0]
    blocks = [[] for _ in parts]
    cat_mask = []
    for f in inputs:
        name, kind = f["name"], f["type"]
        if kind == "number":
            for b, p in zip(blocks, parts):
                b.append(pd.to_numeric(p[name].str.replace(",", "")).to_numpy(dtype=float)[:, None])
            cat_mask.append(False)
        elif kind in ("binary", "category"):
            enc = OrdinalEncoder(handle_unknown="use_encoded_value", unknown_value=np.nan,
                                 encoded_missing_value=np.nan)
            enc.fit(train[[name]].astype(object))
            for b, p in zip(blocks, parts):
                b.append(enc.transform(p[[name]].astype(object)))
            cat_mask.append(kind == "category" and len(enc.categories_[0]) <= 255)
        elif kind == "set":
            mlb = MultiLabelBinarizer()
            mlb.fit(members(train[name], seps[name]))
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # labels unseen in training are dropped
                for b, p in zip(blocks, parts):
                    b.append(mlb.transform(members(p[name], seps[name])).astype(float))
            cat_mask.extend([False] * len(mlb.classes_))
        elif kind == "date":
            for b, p in zip(blocks, parts):
                b.append(date_parts(p[name])[list(DATE_PARTS)].to_numpy(dtype=float))
            cat_mask.extend([False] * len(DATE_PARTS))
        else:
            raise ValueError(f"no tree encoding for a `{kind}` input")
    return [np.hstack(b) for b in blocks], np.array(cat_mask)


# ---------------------------------------------------------------- anchors
def anchor_kind(spec, inputs):
    out = spec["outputs"][0]["type"]
    if out == "set":
        return "ovr_logreg"
    if any(f["type"] == "text" for f in inputs):
        return "ridge" if out == "number" else "logreg"
    return "hgb"


ANCHOR_NAMES = {"ovr_logreg": "one-vs-rest LogisticRegression", "logreg": "TF-IDF + LogisticRegression",
                "ridge": "TF-IDF + Ridge", "hgb": "HistGradientBoosting"}


def score(kind, y_true, pred, proba=None, labels=None):
    if kind == "number":
        return {"r2": r2_score(y_true, pred), "mae": mean_absolute_error(y_true, pred),
                "rmse": float(np.sqrt(mean_squared_error(y_true, pred)))}
    if kind == "set":
        return {"jaccard": jaccard_score(y_true, pred, average="samples", zero_division=0),
                "f1_micro": f1_score(y_true, pred, average="micro", zero_division=0),
                "f1_macro": f1_score(y_true, pred, average="macro", zero_division=0)}
    r = {"accuracy": accuracy_score(y_true, pred)}
    if kind == "binary":
        r["roc_auc"] = roc_auc_score(y_true == 1, proba)
    else:
        r["macro_f1"] = f1_score(y_true, pred, average="macro", zero_division=0)
    return r


def fit_anchor(spec, parts, inputs, repeats=1):
    out = spec["outputs"][0]
    kind, name = out["type"], out["name"]
    seps = {f["name"]: set_separator(f, [p[f["name"]] for p in parts])
            for f in spec["inputs"] + spec["outputs"] if f["type"] == "set"}
    which = anchor_kind(spec, inputs)
    train, val, test = parts

    # targets
    if kind == "number":
        ys = [pd.to_numeric(p[name].str.replace(",", "")).to_numpy(dtype=float) for p in parts]
    elif kind == "set":
        mlb = MultiLabelBinarizer()
        mlb.fit([m for p in parts for m in members(p[name], seps[name])])  # every label in the data
        ys = [mlb.transform(members(p[name], seps[name])) for p in parts]
    else:
        labels = sorted(train[name].unique())
        if kind == "binary" and len(labels) != 2:
            raise ValueError(f"binary output {name} has labels {labels} in training")
        lut = {v: i for i, v in enumerate(labels)}
        ys = [p[name].map(lut).to_numpy() for p in parts]
        ys = [y.astype(float) for y in ys]

    times = []
    for _ in range(repeats):  # the fit is deterministic; repeats only steady the time
        t0 = time.perf_counter()
        if which == "hgb":
            (x_tr, x_va, x_te), cat = tree_features(inputs, parts, seps)
            cat = cat if cat.any() else None
            model = (HistGradientBoostingRegressor if kind == "number" else HistGradientBoostingClassifier)(
                categorical_features=cat, random_state=0)
            model.fit(x_tr, ys[0])
            predict_x = {"val": x_va, "test": x_te}
        else:
            ct, frames = linear_features(inputs, parts, seps)
            if which == "ovr_logreg":
                est = OneVsRestClassifier(LogisticRegression(max_iter=2000))
            elif which == "ridge":
                est = Ridge()
            else:
                est = LogisticRegression(max_iter=2000)
            model = make_pipeline(ct, est)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # OvR: a label absent from training is predicted constant
                model.fit(frames[0], ys[0])
            predict_x = {"val": frames[1], "test": frames[2]}
        times.append(time.perf_counter() - t0)
    fit_s = float(np.median(times))

    res = {}
    for tag, y in (("val", ys[1]), ("test", ys[2])):
        x = predict_x[tag]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            pred = model.predict(x)
            proba = model.predict_proba(x)[:, 1] if kind == "binary" else None
        if kind in ("binary", "category"):
            ok = ~np.isnan(y)
            pred, y = pred[ok], y[ok]
            proba = proba[ok] if proba is not None else None
        res[tag] = {k: float(v) for k, v in score(kind, y, pred, proba).items()}
    return {"anchor": ANCHOR_NAMES[which], "fit_s": fit_s, "metrics": res}


# ---------------------------------------------------------------- mlc
def mlc_command():
    exe = os.path.join(ROOT, ".venv", "bin", "mlc")
    if os.path.exists(exe):
        return [exe]
    if shutil.which("mlc"):
        return ["mlc"]
    return [sys.executable, "-m", "mlc.cli"]


def run_mlc(path, output, metrics, timeout):
    with tempfile.TemporaryDirectory() as tmp:
        out_dir = os.path.join(tmp, "run")
        t0 = time.perf_counter()
        try:
            r = subprocess.run(mlc_command() + ["run", path, "--out", out_dir, "--seed", "0"],
                               capture_output=True, text=True, timeout=timeout, cwd=ROOT)
        except subprocess.TimeoutExpired:
            return {"ok": False, "note": f"mlc run timed out after {timeout} s"}
        wall = time.perf_counter() - t0
        if r.returncode != 0:
            lines = [l for l in (r.stderr or r.stdout).strip().splitlines() if l.strip()]
            first_error = next((l for l in lines if "error" in l.lower()), lines[-1] if lines else "")
            return {"ok": False, "note": f"mlc run failed (exit {r.returncode}): {first_error.strip()[:160]}",
                    "wall_s": wall}
        try:
            report = json.load(open(os.path.join(out_dir, "report.json")))
            test = report["metrics"]["test"][output]
            vals = {m: float(test[m]) for m in metrics if m in test}
            if metrics[0] not in vals:
                return {"ok": False, "note": f"report.json has no test {metrics[0]} for {output}",
                        "wall_s": wall}
        except (OSError, KeyError, ValueError, TypeError) as e:
            return {"ok": False, "note": f"cannot read report.json: {type(e).__name__}: {e}", "wall_s": wall}
        tr = report.get("training", {})
        return {"ok": True, "metrics": vals, "wall_s": wall,
                "epochs": f"{tr.get('best_epoch', '?')}/{tr.get('epochs_run', '?')}"}


# ---------------------------------------------------------------- main
def run_program(path, baselines_only, timeout, repeats=1):
    spec = parse_dml(path)
    out = spec["outputs"][0]
    if out["type"] not in METRICS:
        raise ValueError(f"{path}: no anchor for a `{out['type']}` output")
    metrics = METRICS[out["type"]]
    parts, dropped = load_rows(spec)
    row = {"program": os.path.relpath(path, ROOT), "output": out["name"], "type": out["type"],
           "metric": metrics[0], "rows": sum(len(p) for p in parts), "dropped": dropped,
           "n_train": len(parts[0]), "n_val": len(parts[1]), "n_test": len(parts[2]),
           "input_types": sorted({f["type"] for f in spec["inputs"]})}
    row.update(fit_anchor(spec, parts, spec["inputs"], repeats))
    # ablations: without each date, set, text input in turn
    row["ablations"] = []
    for f in spec["inputs"]:
        if f["type"] in ("date", "set", "text") and len(spec["inputs"]) > 1:
            rest = [g for g in spec["inputs"] if g is not f]
            a = fit_anchor(spec, parts, rest, repeats)
            row["ablations"].append({"without": f"{f['name']} ({f['type']})", **a})
    row["mlc"] = {"ok": False, "note": "skipped (--baselines-only)"} if baselines_only else \
        run_mlc(path, out["name"], metrics, timeout)
    return row


def fmt(v):
    return "" if v is None else f"{v:.4f}"


def print_tables(rows, baselines_only):
    print("| program | output | rows (train/val/test) | metric | anchor | anchor test | anchor fit s "
          "| mlc test | mlc s | mlc - anchor |")
    print("|---|---|---|---|---|---:|---:|---:|---:|---:|")
    notes = []
    for r in rows:
        m = r["metric"]
        a = r["metrics"]["test"][m]
        if r["mlc"]["ok"]:
            ours = r["mlc"]["metrics"][m]
            mlc_cells = f"{ours:.4f} | {r['mlc']['wall_s']:.1f} | {ours - a:+.4f}"
        else:
            mlc_cells = "pending | | " if baselines_only else "n/a | | "
            if not baselines_only:
                notes.append(f"- {r['program']}: {r['mlc']['note']}")
        print(f"| {r['program']} | {r['output']} ({r['type']}) | {r['rows']:,} ({r['n_train']}/{r['n_val']}/"
              f"{r['n_test']}) | {m} | {r['anchor']} | {a:.4f} | {r['fit_s']:.2f} | {mlc_cells} |")
    print()
    print("All test metrics of the anchor:")
    print()
    print("| program | anchor | " + " | ".join(["metric 1", "metric 2", "metric 3"]) + " |")
    print("|---|---|---|---|---|")
    for r in rows:
        cells = [f"{k} {v:.4f}" for k, v in r["metrics"]["test"].items()]
        cells = sorted(cells, key=lambda c: METRICS[r["type"]].index(c.split()[0]))
        print(f"| {r['program']} | {r['anchor']} | " + " | ".join(cells + [""] * (3 - len(cells))) + " |")
    abl = [(r, a) for r in rows for a in r["ablations"]]
    if abl:
        print()
        print("Ablations (the same anchor rule without one input):")
        print()
        print("| program | without | anchor | metric | test | full program | fit s |")
        print("|---|---|---|---|---:|---:|---:|")
        for r, a in abl:
            m = r["metric"]
            print(f"| {r['program']} | {a['without']} | {a['anchor']} | {m} | {a['metrics']['test'][m]:.4f} | "
                  f"{r['metrics']['test'][m]:.4f} | {a['fit_s']:.2f} |")
    if notes:
        print()
        print("mlc notes:")
        print("\n".join(notes))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("dml", nargs="*", help=".dml programs (default: benchmarks/types/*.dml)")
    ap.add_argument("--baselines-only", action="store_true", help="fit the anchors; do not run mlc")
    ap.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    ap.add_argument("--repeats", type=int, default=1, metavar="K",
                    help="fit each anchor K times and report the median fit time (default 1)")
    ap.add_argument("--mlc-timeout", type=float, default=1800, metavar="S",
                    help="seconds allowed to one `mlc run` (default 1800)")
    args = ap.parse_args(argv)
    paths = [os.path.abspath(p) for p in args.dml] or sorted(glob.glob(os.path.join(ROOT, "benchmarks", "types",
                                                                                      "*.dml")))
    if not paths:
        sys.exit("no .dml files found")
    rows = []
    for p in paths:
        rows.append(run_program(p, args.baselines_only, args.mlc_timeout, args.repeats))
        r = rows[-1]
        status = "" if args.baselines_only else (
            f"  mlc {r['mlc']['metrics'][r['metric']]:.4f} ({r['mlc']['wall_s']:.1f} s)" if r["mlc"]["ok"]
            else f"  mlc: {r['mlc']['note']}")
        print(f"# {r['program']}: {r['anchor']} test {r['metric']} {r['metrics']['test'][r['metric']]:.4f} "
              f"(fit {r['fit_s']:.2f} s){status}", file=sys.stderr, flush=True)
    print_tables(rows, args.baselines_only)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)
            f.write("\n")


if __name__ == "__main__":
    main()
