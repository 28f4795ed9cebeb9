#!/usr/bin/env python3
"""Encoding a large table a column per thread against one column after another.

Usage:  python benchmarks/encode_threads.py [--rows 100000] [--rounds 9]

Trains the generated 19-input churn model of benchmarks/predict_speed.py (3 epochs), then
times runtime/preprocess.py's `encode_inputs` on `--rows` rows of its data with
PARALLEL_MIN_ROWS at its default (threads) and at 10**12 (one after another), in turn,
`--rounds` times; prints the medians and the median of the paired ratios, and checks the
arrays are identical.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from predict_speed import make_churn, train  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=100_000)
    ap.add_argument("--rounds", type=int, default=9)
    args = ap.parse_args()
    os.environ.setdefault("MLC_DEVICE", "cpu")
    import mlc
    from mlc.runtime import preprocess as P
    threaded_min = P.PARALLEL_MIN_ROWS
    with tempfile.TemporaryDirectory() as folder:
        model = mlc.load(train(make_churn(folder), os.path.join(folder, "out")), device="cpu")
        data = pacsv.read_csv(model.resolved.data_path, convert_options=pacsv.ConvertOptions(strings_can_be_null=True))
        rows = pa.concat_tables([data] * (-(-args.rows // data.num_rows))).slice(0, args.rows).select(model.inputs)

        def encode(threads: bool) -> dict:
            P.PARALLEL_MIN_ROWS = threaded_min if threads else 10 ** 12
            return P.encode_inputs(model.resolved, model.state, rows, unknown={})
        a, b = encode(False), encode(True)
        assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a), "threads changed the arrays"
        times = []
        for _ in range(args.rounds):
            t0 = time.perf_counter()
            encode(False)
            t1 = time.perf_counter()
            encode(True)
            times.append((t1 - t0, time.perf_counter() - t1))
    t = np.array(times)
    print(f"# {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; {os.cpu_count()} cores, load average "
          f"{os.getloadavg()[0]:.2f}; {args.rows:,} rows, {len(model.inputs)} inputs")
    print(f"one after another {np.median(t[:, 0]) * 1e3:.0f} ms, a column per thread {np.median(t[:, 1]) * 1e3:.0f} ms, "
          f"paired ratio {np.median(t[:, 0] / t[:, 1]):.2f}x (identical arrays)")


if __name__ == "__main__":
    main()
