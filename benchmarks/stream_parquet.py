"""Streaming benchmark: one epoch on a generated 20-million-row Parquet file, peak memory,
and rows/s of the streamed path against the in-memory path on a size both can hold.

    .venv/bin/python benchmarks/stream_parquet.py [--rows 20000000] [--compare-rows 1000000] [--folder DIR]

The data is generated here (not shipped): numbers with missing cells, a skewed category
with 1,000 values, a binary output; written in row groups of 500,000 rows. Each run is a
separate process (`mlc run`, batch 1024; one epoch on the big file, three for the comparison), timed from outside; its peak RSS is
the child's ru_maxrss. The training rows/s are report.json's (steps only, no compile);
the end-to-end time includes the passes over the data (split, statistics), validation,
evaluation and writing the model.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

PROGRAM = """data "{file}" split 80/10/10 seed 1
input  a    : number
input  b    : number
input  c    : number
input  kind : category
output y    : binary
train {{ epochs = {epochs}, batch_size = 1024 }}
"""


def generate(path: Path, rows: int, group: int = 500_000) -> None:
    rng = np.random.default_rng(0)
    schema = pa.schema([("a", pa.float64()), ("b", pa.float64()), ("c", pa.float64()),
                        ("kind", pa.string()), ("y", pa.int8())])
    names = np.array([f"k{i}" for i in range(1000)], dtype=object)
    with pq.ParquetWriter(path, schema) as w:
        for start in range(0, rows, group):
            n = min(group, rows - start)
            a, b, c = rng.normal(size=(3, n))
            a[rng.random(n) < 0.03] = np.nan
            k = rng.zipf(1.5, size=n) % 1000
            y = (np.nan_to_num(a) + b * c + (k % 7 == 0) + rng.normal(scale=0.7, size=n)) > 0.4
            w.write_table(pa.table({"a": a, "b": b, "c": c, "kind": pa.array(names[k], pa.string()),
                                    "y": y.astype(np.int8)}, schema=schema))


def run(program: Path, out: Path, path: str) -> dict:
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "MLC_DATA_PATH": path}
    code = ("import resource, sys, json\nfrom mlc.runtime.run import run\n"
            "r = run(sys.argv[1], sys.argv[2], log=lambda m: None)\n"
            "print('RESULT' + json.dumps({'rows_per_second': r['training']['rows_per_second'], "
            "'timings': r['timings_seconds'], 'rows': r['rows'], 'auc': r['metrics']['test']['y']['roc_auc'], "
            "'maxrss_kib': resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}))")
    t = time.perf_counter()
    p = subprocess.run([sys.executable, "-c", code, str(program), str(out)], env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t
    if p.returncode:
        sys.exit(p.stderr[-4000:])
    got = json.loads(next(x for x in p.stdout.splitlines() if x.startswith("RESULT"))[6:])
    got["wall_seconds"] = wall
    return got


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=20_000_000)
    ap.add_argument("--compare-rows", type=int, default=1_000_000)
    ap.add_argument("--folder", type=Path, default=None)
    args = ap.parse_args()
    folder = args.folder or Path(tempfile.mkdtemp(prefix="mlc_stream_"))
    folder.mkdir(parents=True, exist_ok=True)
    results = {}
    for label, rows in (("compare", args.compare_rows), ("big", args.rows)):
        data = folder / f"rows_{rows}.parquet"
        if not data.exists():
            t = time.perf_counter()
            generate(data, rows)
            print(f"generated {data} ({data.stat().st_size / 2**20:.0f} MiB) in {time.perf_counter() - t:.0f} s",
                  flush=True)
        prog = folder / f"{label}.dml"
        # the comparison runs 3 epochs: the in-memory path times the epochs after the first
        # (which compiles); the big run is the one epoch the issue asks for
        prog.write_text(PROGRAM.format(file=data.name, epochs=3 if label == "compare" else 1))
        paths = ("memory", "stream") if label == "compare" else ("stream",)
        for path in paths:
            results[(label, path)] = r = run(prog, folder / f"out_{label}_{path}", path)
            print(f"{rows:>10,} rows {path:>6}: train {r['rows_per_second']:>9,.0f} rows/s, "
                  f"end to end {r['wall_seconds']:6.1f} s, peak RSS {r['maxrss_kib'] / 2**20:.2f} GiB, "
                  f"test AUC {r['auc']:.4f}, timings {r['timings']}", flush=True)
    m, s = results[("compare", "memory")], results[("compare", "stream")]
    print(f"streamed / in memory at {args.compare_rows:,} rows: training rows/s "
          f"{s['rows_per_second'] / m['rows_per_second']:.2f}x, end to end {m['wall_seconds'] / s['wall_seconds']:.2f}x")
    big = results[("big", "stream")]
    print(f"{args.rows:,} rows streamed: peak RSS {big['maxrss_kib'] / 2**20:.2f} GiB "
          f"({'under' if big['maxrss_kib'] < 2 * 2**20 else 'OVER'} 2 GiB)")


if __name__ == "__main__":
    main()
