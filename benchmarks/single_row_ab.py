#!/usr/bin/env python3
"""One-row predictions of this checkout against an earlier revision's, interleaved in one process.

Usage:  python benchmarks/single_row_ab.py --base REV [--model churn19|titanic|credit] [--calls 4000]

The base revision's few-rows encoder (runtime/few_rows.py) and numpy back end
(mlc/backends/numpy_backend.py) are read with `git show REV:PATH` and loaded beside this
checkout's; two copies of the same trained model use one each, and every call alternates
between them on the same row, so both see the same machine (this host's speed drifts by 2x
within minutes: only a paired comparison means anything). Everything else in `predict`
(reading the columns, decoding, checks) is this checkout's for both. Prints the p50 and p99
of each and the median of the paired ratios; the two must give the same answers.
"""
from __future__ import annotations

import argparse
import importlib.util
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "benchmarks"))
import predict_speed  # noqa: E402  (its models and their data)


def module_at(rev: str, path: str, name: str):
    source = subprocess.run(["git", "-C", ROOT, "show", f"{rev}:{path}"], check=True, capture_output=True,
                            text=True).stdout
    spec = importlib.util.spec_from_loader(name, loader=None)
    module = importlib.util.module_from_spec(spec)
    exec(compile(source, f"{rev}:{path}", "exec"), module.__dict__)  # our own repository's file
    return module


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--base", required=True)
    ap.add_argument("--model", default="churn19", choices=["churn19", "titanic", "credit"])
    ap.add_argument("--calls", type=int, default=4000)
    args = ap.parse_args()
    os.environ.setdefault("MLC_DEVICE", "cpu")
    import pyarrow as pa
    import pyarrow.csv as pacsv

    import mlc
    old_rows = module_at(args.base, "runtime/few_rows.py", "base_few_rows")
    old_backend = module_at(args.base, "mlc/backends/numpy_backend.py", "base_numpy_backend")
    with tempfile.TemporaryDirectory() as folder:
        program = predict_speed.make_churn(folder) if args.model == "churn19" else predict_speed.with_epochs(
            os.path.join(ROOT, "examples", f"{args.model}.dml"), folder)
        path = predict_speed.train(program, os.path.join(folder, args.model))
        new, base = mlc.load(path, device="cpu"), mlc.load(path, device="cpu")
        base._row_encoder = old_rows.RowEncoder(base.resolved, base.state)
        base._plan = old_backend.Plan(base.graph, base.params, base.wanted)
        data = pacsv.read_csv(new.resolved.data_path, convert_options=pacsv.ConvertOptions(strings_can_be_null=True))
        cells = {c: data.column(c).slice(0, 1000).to_pylist() for c in new.inputs}
    rows = [{c: cells[c][i:i + 1] for c in new.inputs} for i in range(1000)]
    for row in rows[:300]:
        a, b = new.predict(row), base.predict(row)
        assert a.keys() == b.keys() and all(
            np.allclose(a[k], b[k], rtol=0, atol=1e-6) if "probability" in k else a[k] == b[k] for k in a)
    times = {"this checkout": [], f"base {args.base}": []}
    for i in range(args.calls):
        row = rows[i % 1000]
        for name, model in ((("this checkout", new), (f"base {args.base}", base)) if i % 2 else
                            ((f"base {args.base}", base), ("this checkout", new))):
            t = time.perf_counter()
            model.predict(row)
            times[name].append(time.perf_counter() - t)
    print(f"# {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; {os.cpu_count()} cores, load average "
          f"{os.getloadavg()[0]:.2f}; {args.model}, {args.calls} one-row calls each, interleaved")
    for name, t in times.items():
        print(f"{name:24s} p50 {np.percentile(t, 50) * 1e3:.3f} ms  p99 {np.percentile(t, 99) * 1e3:.3f} ms")
    ratio = np.array(times[f"base {args.base}"]) / np.array(times["this checkout"])
    print(f"paired: base / this checkout, median {np.median(ratio):.2f}x")


if __name__ == "__main__":
    main()
