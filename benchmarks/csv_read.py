"""Reading a CSV with quoted line breaks allowed (`newlines_in_values=True`) against without,
on a generated 300,000-row file of the common kind (no line breaks in values), in one process.

    python benchmarks/csv_read.py [--rows 300000] [--repeats 5]

Both readers use mlc's options (one thread, the invalid-row handler, mlc's null values);
each repeat reads the file once each way, alternating, and the best time of each is
reported with their ratio. Also timed: `runtime.data.read_table`, mlc's whole read
(UTF-8 check and the checks after pyarrow). Results: benchmarks/RESULTS.md.
"""
from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from mlc.runtime import data as D  # noqa: E402


def make_file(path: Path, rows: int) -> None:
    rng = np.random.default_rng(0)
    words = np.array(["late", "fee", "plan", "call", "support", "bill", "fast", "slow", "cancel", "upgrade"])
    table = pa.table({
        "tenure": rng.integers(0, 72, rows), "monthly": np.round(rng.normal(65, 30, rows), 2),
        "contract": rng.choice(["month", "one_year", "two_year"], rows),
        "payment": rng.choice(["card", "bank", "check", "electronic"], rows),
        "note": [" ".join(s) for s in rng.choice(words, (rows, 6))],
        "churn": rng.choice(["yes", "no"], rows)})
    pacsv.write_csv(table, path)


def read(path: Path, newlines: bool) -> float:
    t = time.perf_counter()
    pacsv.read_csv(path, read_options=pacsv.ReadOptions(use_threads=False),
                   parse_options=pacsv.ParseOptions(newlines_in_values=newlines, invalid_row_handler=lambda r: "skip"),
                   convert_options=pacsv.ConvertOptions(null_values=D.NULL_VALUES, strings_can_be_null=True))
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=300_000)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "rows.csv"
        make_file(path, args.rows)
        size = path.stat().st_size / 1e6
        before, after, whole = [], [], []
        for _ in range(args.repeats):
            before.append(read(path, False))
            after.append(read(path, True))
            t = time.perf_counter()
            D.read_table(path)
            whole.append(time.perf_counter() - t)
    print(f"# {time.strftime('%Y-%m-%d %H:%M %Z')}, Python {platform.python_version()}, pyarrow {pa.__version__}, "
          f"{os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}; {args.rows:,} rows, {size:.1f} MB, "
          f"best of {args.repeats}")
    print(f"without newlines_in_values: {min(before):.3f} s")
    print(f"with newlines_in_values:    {min(after):.3f} s  (ratio {min(after) / min(before):.2f})")
    print(f"mlc read_table (with):      {min(whole):.3f} s")


if __name__ == "__main__":
    main()
