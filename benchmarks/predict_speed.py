#!/usr/bin/env python3
"""Prediction speed of a loaded artifact, paired with HistGradientBoosting in the same run.

Usage:  python benchmarks/predict_speed.py [--rows 100000] [--single 2000] [--json OUT.json]

Models (trained here with `mlc run`, 3 epochs: speed does not depend on how well they learned):
  churn19   a generated 19-input churn table (3 numbers, 6 binary, 10 categories: the shape
            of the Telco churn export), 20,000 rows, made by this script
  titanic   examples/titanic.dml (3 inputs)
  credit    examples/credit.dml (13 inputs)

For each model it measures, on `--rows` rows drawn from its data (repeated to that count):
  batch     rows/s of `mlc.load(...).predict(rows)` for a dict of lists, a pyarrow Table and a
            pandas DataFrame, each timed in turn with HistGradientBoostingClassifier.predict_proba
            on the same rows already ordinal-encoded (its encoding is not timed: that favours
            HGB), and with HGB given the same form (a pandas frame of it, its OrdinalEncoder,
            predict_proba: timed), 5 rounds; each ratio is the median of the 5 paired ratios
  single    p50/p99 of predict on one row (a dict of one-element lists), after warm-up, and
            the p50 of the calling thread's CPU time (the cost of a call on an idle core)
  sizes     compiles while predicting 200 different batch sizes (1..200), and the growth of
            the process's peak RSS over them
  cold      a fresh Python process: `import mlc`, `mlc.load`, first predict (seconds each;
            the median of 3 processes, with Python's bytecode cache written)
  crossover the forward pass alone per batch size: the numpy plan (one BLAS thread) against
            the XLA program padded to its bucket, median microseconds; where numpy stops
            winning is where mlc/backends/numpy_backend.py's MAX_ROWS belongs
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CATS = {"gender": ["Female", "Male"], "MultipleLines": ["No", "Yes", "No phone service"],
        "InternetService": ["DSL", "Fiber optic", "No"], "OnlineSecurity": ["No", "Yes", "No internet service"],
        "OnlineBackup": ["No", "Yes", "No internet service"], "DeviceProtection": ["No", "Yes", "No internet service"],
        "TechSupport": ["No", "Yes", "No internet service"], "StreamingTV": ["No", "Yes", "No internet service"],
        "Contract": ["Month-to-month", "One year", "Two year"],
        "PaymentMethod": ["Electronic check", "Mailed check", "Bank transfer", "Credit card"]}
BINS = ["SeniorCitizen", "Partner", "Dependents", "PhoneService", "StreamingMovies", "PaperlessBilling"]
NUMS = ["tenure", "MonthlyCharges", "TotalCharges"]


def make_churn(folder: str, n: int = 20000) -> str:
    rng = np.random.default_rng(0)
    cols = {k: rng.choice(v, n).tolist() for k, v in CATS.items()}
    cols.update({k: rng.choice(["Yes", "No"], n).tolist() for k in BINS})
    tenure = rng.integers(0, 72, n)
    monthly = np.round(rng.uniform(18, 120, n), 2)
    cols.update(tenure=tenure, MonthlyCharges=monthly, TotalCharges=np.round(tenure * monthly, 2))
    logit = -1 + 1.2 * (np.array(cols["Contract"]) == "Month-to-month") - 0.03 * tenure + 0.01 * monthly
    cols["Churn"] = np.where(rng.random(n) < 1 / (1 + np.exp(-logit)), "Yes", "No")
    pacsv.write_csv(pa.table(cols), os.path.join(folder, "churn.csv"))
    lines = [f'data "{folder}/churn.csv" split 80/10/10 seed 7', ""]
    lines += [f"input {k} : category" for k in CATS] + [f"input {k} : binary" for k in BINS]
    lines += [f"input {k} : number" for k in NUMS] + ["output Churn : binary", "train { epochs = 3 }"]
    path = os.path.join(folder, "churn19.dml")
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
    return path


def with_epochs(program: str, folder: str) -> str:
    """A copy of an example with `train { epochs = 3 }` and its data path made absolute."""
    text = open(program).read()
    data_dir = os.path.dirname(os.path.abspath(program))
    text = text.replace('data "data/', f'data "{data_dir}/data/')
    path = os.path.join(folder, os.path.basename(program))
    with open(path, "w") as f:
        f.write(text + "\ntrain { epochs = 3 }\n")
    return path


def train(program: str, out: str) -> str:
    subprocess.run([sys.executable, "-m", "mlc.cli", "run", program, "--out", out, "--device", "cpu"],
                   check=True, stdout=subprocess.DEVNULL)
    return os.path.join(out, "model.mlc")


def timed(fn, repeats: int = 3) -> float:
    best = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        best.append(time.perf_counter() - t)
    return float(np.median(best))


def hgb_predictor(model, data: pa.Table, rows: pa.Table):
    """HistGradientBoosting fitted on the model's data; returns a call that predicts `rows`
    already ordinal-encoded (its encoding is not timed), and one that predicts rows given in
    the user's form (a dict of lists, a Table or a DataFrame) with its encoding timed: a pandas
    frame of the columns, the fitted OrdinalEncoder on the text columns, then predict_proba."""
    import pandas as pd
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.preprocessing import OrdinalEncoder
    names = model.inputs
    kinds = {f["name"]: f["type"] for f in model.resolved.inputs}
    text = [c for c in names if kinds[c] != "number"]
    enc = OrdinalEncoder(handle_unknown="use_encoded_value", unknown_value=np.nan)

    def frame(t) -> np.ndarray:
        df = t.select(names).to_pandas() if isinstance(t, pa.Table) else pd.DataFrame(t, columns=names)
        if text:
            df[text] = enc.transform(df[text].astype(str))
        return df.to_numpy(dtype=np.float64)

    enc.fit(data.select(text).to_pandas().astype(str))
    target = model.outputs[0]
    y = np.asarray(data.column(target).to_pylist(), dtype=str)
    hgb = HistGradientBoostingClassifier(random_state=0, max_iter=100,
                                         categorical_features=[names.index(c) for c in text] or None)
    hgb.fit(frame(data), y)
    x = frame(rows)
    hgb.predict_proba(x[:100])
    return (lambda: hgb.predict_proba(x)), (lambda form: hgb.predict_proba(frame(form)))


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def cold_start(path: str, row: dict) -> dict:
    code = ("import json, time, sys; t0 = time.perf_counter(); import mlc; t1 = time.perf_counter(); "
            f"m = mlc.load({path!r}, device='cpu'); t2 = time.perf_counter(); m.predict({row!r}); "
            "t3 = time.perf_counter(); print(json.dumps({'import': t1 - t0, 'load': t2 - t1, "
            "'first_predict': t3 - t2, 'load_and_first_predict': t3 - t1}))")
    # With Python's bytecode cache, as an installed package has it (a first run writes it): a
    # machine with PYTHONDONTWRITEBYTECODE=1 would compile mlc's modules in every process (~0.17 s
    # here). The median of 3 fresh processes.
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    runs = [json.loads(subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True,
                                      env=env).stdout.strip().splitlines()[-1]) for _ in range(4)][1:]
    return {k: float(np.median([r[k] for r in runs])) for k in runs[0]}


def measure(name: str, program: str, args, folder: str) -> dict:
    import mlc
    path = train(program, os.path.join(folder, name))
    model = mlc.load(path, device="cpu")
    data = pacsv.read_csv(model.resolved.data_path, convert_options=pacsv.ConvertOptions(strings_can_be_null=True))
    data = data.filter(pa.compute.is_valid(data.column(model.outputs[0])))
    reps = -(-args.rows // data.num_rows)
    rows = pa.concat_tables([data] * reps).slice(0, args.rows).select(model.inputs)
    as_dict = {c: rows.column(c).to_pylist() for c in model.inputs}
    as_frame = rows.to_pandas()
    model.predict(rows.slice(0, 1000))
    result = {"inputs": len(model.inputs), "rows": rows.num_rows}
    hgb, hgb_from = hgb_predictor(model, data, rows)
    # each form paired with HGB in turn, 5 rounds: the ratio is the median of the pairs (the
    # machine's load changes between rounds, much less within one). Two ratios: against HGB on
    # rows it already encoded (not timed), and against HGB given the same form (encoding timed)
    for kind, value in (("dict", as_dict), ("table", rows), ("dataframe", as_frame)):
        ours, theirs, theirs_from = [], [], []
        for _ in range(5):
            ours.append(timed(lambda: model.predict(value), 1))
            theirs.append(timed(hgb, 1))
            theirs_from.append(timed(lambda: hgb_from(value), 1))
        result[f"{kind}_rows_per_s"] = rows.num_rows / float(np.median(ours))
        result[f"{kind}_vs_hgb"] = float(np.median(np.array(theirs) / np.array(ours)))
        result[f"{kind}_vs_hgb_from_{kind}"] = float(np.median(np.array(theirs_from) / np.array(ours)))
        result[f"hgb_from_{kind}_rows_per_s"] = rows.num_rows / float(np.median(theirs_from))
        result.setdefault("hgb_times", []).extend(theirs)
    result["hgb_rows_per_s"] = rows.num_rows / float(np.median(result.pop("hgb_times")))
    one = {c: as_dict[c][:1] for c in model.inputs}
    for _ in range(200):
        model.predict(one)
    lat, cpu = [], []
    for i in range(args.single):
        row = {c: as_dict[c][i % 1000:i % 1000 + 1] for c in model.inputs}
        t, c = time.perf_counter(), time.thread_time()
        model.predict(row)
        lat.append(time.perf_counter() - t)
        cpu.append(time.thread_time() - c)
    result["single_p50_ms"] = float(np.percentile(lat, 50) * 1e3)
    result["single_p99_ms"] = float(np.percentile(lat, 99) * 1e3)
    # the calling thread's CPU time: what a call costs when no other process takes the core
    result["single_cpu_p50_ms"] = float(np.percentile(cpu, 50) * 1e3)
    compiles = compile_count()
    rss = peak_rss_mb()
    for size in range(1, 201):
        model.predict({c: as_dict[c][:size] for c in model.inputs})
    result["compiles_200_sizes"] = compile_count() - compiles
    result["rss_growth_mb_200_sizes"] = peak_rss_mb() - rss
    result["cold"] = cold_start(path, one)
    result["crossover"] = crossover(model)
    return result


def crossover(model) -> dict:
    from mlc.backends.numpy_backend import Plan
    from mlc.runtime.artifact import bucket, rows_to_table
    plan = Plan(model.graph, model.params, model.wanted)
    one = model.encode(rows_to_table({c: [None] for c in model.inputs}, model.resolved, model.state))
    out = {}
    for size in (1, 4, 16, 64, 128, 256, 1024, 4096):
        rows = {k: np.repeat(v, size, axis=0) for k, v in one.items()}
        padded = {k: np.repeat(v, bucket(size), axis=0) for k, v in one.items()}
        model.forward(padded)
        times = {"numpy_us": [], "xla_us": []}
        for _ in range(200):
            t = time.perf_counter()
            plan.run(rows)
            times["numpy_us"].append(time.perf_counter() - t)
            t = time.perf_counter()
            model.forward(padded)
            times["xla_us"].append(time.perf_counter() - t)
        out[size] = {k: float(np.median(v) * 1e6) for k, v in times.items()}
    return out


_COMPILES = [0]


def compile_count() -> int:
    return _COMPILES[0]


def count_compiles():
    import jax.monitoring
    jax.monitoring.register_event_duration_secs_listener(
        lambda event, *_a, **_k: _COMPILES.__setitem__(0, _COMPILES[0] + 1)
        if event == "/jax/core/compile/backend_compile_duration" else None)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=100_000)
    ap.add_argument("--single", type=int, default=2000)
    ap.add_argument("--json")
    ap.add_argument("--only", nargs="*", help="churn19, titanic, credit")
    args = ap.parse_args()
    os.environ.setdefault("MLC_DEVICE", "cpu")
    count_compiles()
    import jax
    import sklearn
    print(f"# {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; {platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f}; python {platform.python_version()}, jax {jax.__version__}, "
          f"pyarrow {pa.__version__}, scikit-learn {sklearn.__version__}")
    results = {}
    with tempfile.TemporaryDirectory() as folder:
        programs = {"churn19": make_churn(folder),
                    "titanic": with_epochs(os.path.join(ROOT, "examples/titanic.dml"), folder),
                    "credit": with_epochs(os.path.join(ROOT, "examples/credit.dml"), folder)}
        for name, program in programs.items():
            if args.only and name not in args.only:
                continue
            r = results[name] = measure(name, program, args, folder)
            print(f"{name:8s} inputs={r['inputs']:2d}  dict {r['dict_rows_per_s']:9,.0f}  table "
                  f"{r['table_rows_per_s']:9,.0f}  dataframe {r['dataframe_rows_per_s']:9,.0f}  HGB "
                  f"{r['hgb_rows_per_s']:9,.0f} rows/s (paired ratios to HGB: dict {r['dict_vs_hgb']:.2f}x, table "
                  f"{r['table_vs_hgb']:.2f}x, dataframe {r['dataframe_vs_hgb']:.2f}x; to HGB given the same "
                  f"form, its encoding timed: dict {r['dict_vs_hgb_from_dict']:.2f}x, table "
                  f"{r['table_vs_hgb_from_table']:.2f}x, dataframe {r['dataframe_vs_hgb_from_dataframe']:.2f}x)"
                  f"  single p50 {r['single_p50_ms']:.3f} ms p99 {r['single_p99_ms']:.3f} ms "
                  f"(CPU p50 {r['single_cpu_p50_ms']:.3f} ms)  "
                  f"200 sizes: {r['compiles_200_sizes']} compiles, +{r['rss_growth_mb_200_sizes']:.0f} MB  "
                  f"cold: import {r['cold']['import']:.2f} s, load+first predict "
                  f"{r['cold']['load_and_first_predict']:.2f} s", flush=True)
            print(f"{'':8s} forward alone, numpy plan vs XLA (us): " + ", ".join(
                f"{size} rows {c['numpy_us']:.0f} vs {c['xla_us']:.0f}" for size, c in r["crossover"].items()),
                flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
