"""Streamed data (runtime/stream.py, sketches.py, stream_run.py): a folder, a glob, CSV and
Parquet read in record batches; the same split as the in-memory path; preprocessing from
one pass equal to the in-memory fit where it is exact and within the stated bound where it
is sampled; `mlc run` on a folder trains a model as good as the in-memory one."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from helpers_frontend import cli_env
from mlc.compile import frontend
from mlc.runtime import data as D
from mlc.runtime import sketches as S
from mlc.runtime import stream as ST
from mlc.runtime.stream_run import prepare

PROGRAM = """data "{path}" {split}
input  x1   : number {{ normalize = {norm} }}
input  x2   : number
input  kind : category
output y    : binary
train {{ epochs = 2, batch_size = 128 }}
"""


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("stream")
    rng = np.random.default_rng(0)
    n = 12000
    x1, x2 = rng.normal(size=n) * 3 + 1, rng.exponential(size=n)
    x1[rng.random(n) < 0.05] = np.nan
    kind = np.array([f"k{i}" for i in rng.zipf(1.6, size=n) % 300])
    y = ((np.nan_to_num(x1) - 1) / 3 + x2 - 1 + (kind == "k1") + rng.normal(scale=0.6, size=n)) > 0
    y_col = pa.array(np.where(rng.random(n) < 0.02, None, y.astype(int)).tolist(), pa.int64())  # some dropped
    part = np.array(["train"] * 8 + ["validation", "test"])[rng.integers(0, 10, size=n)]
    t = pa.table({"x1": x1, "x2": x2, "kind": kind, "y": y_col, "part": part})
    pq.write_table(t, folder / "all.parquet", row_group_size=2500)
    (folder / "parts").mkdir()
    (folder / "csv").mkdir()
    for i in range(3):
        piece = t.slice(i * 4000, 4000)
        pq.write_table(piece, folder / "parts" / f"p{i}.parquet", row_group_size=1500)
        pa.csv.write_csv(piece, folder / "csv" / f"c{i}.csv")
    return folder


def program(folder: Path, path: str, split: str = "split 80/10/10 seed 5", norm: str = "zscore",
            name: str = "p.dml") -> Path:
    p = folder / name
    p.write_text(PROGRAM.format(path=path, split=split, norm=norm))
    return p


def in_memory_codes(prog: Path) -> np.ndarray:
    fe = frontend(prog)
    codes = np.full(fe.table.num_rows, -1)
    for name, rows in fe.splits.items():
        codes[rows] = ST.SPLIT_CODES[name]
    return codes, fe


@pytest.mark.parametrize("split", ["split 80/10/10 seed 5", "split by part"])
def test_streamed_split_is_the_in_memory_split(data, split):
    codes, fe = in_memory_codes(program(data, "all.parquet", split))
    for path in ("all.parquet", "parts/", "parts/*.parquet", "csv/"):
        source = ST.Source.open(data / path.rstrip("/") if "*" not in path else data / path)
        spl = fe.resolved.split
        pos = ST.positions(source, fe.resolved.outputs, spl)
        got = np.full(len(codes), -1)
        for name, ids, _ in ST.split_rows(source, pos, fe.resolved.outputs, spl, ST.columns_of(fe.resolved, spl),
                                          set(ST.SPLIT_CODES)):
            got[ids] = ST.SPLIT_CODES[name]
        assert fe.dropped_rows > 0
        np.testing.assert_array_equal(got, codes, err_msg=path)


def test_one_pass_preprocessing_matches_the_in_memory_fit(data):
    prog = program(data, "parts/")
    _, fe = in_memory_codes(program(data, "all.parquet", name="whole.dml"))
    *_, state, _ = prepare(prog, print)  # fewer training rows than the sample: all of it exact
    assert state["inputs"]["kind"]["vocab"] == fe.state["inputs"]["kind"]["vocab"]
    assert state["outputs"] == fe.state["outputs"]
    for name in ("x1", "x2"):
        for k, v in fe.state["inputs"][name].items():
            assert state["inputs"][name][k] == pytest.approx(v, rel=1e-9, abs=1e-12), (name, k)


def test_sampled_quantiles_stay_within_the_stated_bound(data, monkeypatch):
    """With a sample of 1500 of the ~9,400 training rows, moments stay exact and quantile-based
    values (robust scaling, ple edges) are off in rank by at most the DKW bound."""
    monkeypatch.setattr(S, "SAMPLE_SIZE", 1500)
    monkeypatch.setattr(ST.S, "SAMPLE_SIZE", 1500)
    prog = program(data, "parts/", norm="robust")
    _, fe = in_memory_codes(program(data, "all.parquet", norm="robust", name="whole.dml"))
    checked, source, pos, split, r, stats, state, _ = prepare(prog, print)
    assert stats.sample.num_rows == 1500
    m = stats.moments["x1"]
    train = D.take(fe.table, fe.splits["train"])
    x1 = D.as_numbers(train.column("x1"))
    assert m.n == np.isfinite(x1).sum() and m.mean == pytest.approx(np.nanmean(x1), rel=1e-12)
    assert m.std == pytest.approx(np.nanstd(x1), rel=1e-9)
    eps = S.rank_error(1500)
    filled = np.where(np.isnan(x1), state["inputs"]["x1"]["fill"], x1)
    for edge, exact in zip(state["inputs"]["x1"]["edges"][1:-1], fe.state["inputs"]["x1"]["edges"][1:-1]):
        assert abs((filled <= edge).mean() - (filled <= exact).mean()) <= eps
    assert state["inputs"]["kind"]["vocab"] == fe.state["inputs"]["kind"]["vocab"], "counts stay exact"


def test_mlc_run_streams_a_folder_and_matches_the_in_memory_model(data, tmp_path):
    from mlc.runtime.run import run
    whole = program(data, "all.parquet", name="whole.dml")
    folder = program(data, "parts/", name="folder.dml")
    env = cli_env()
    run(whole, tmp_path / "m", log=lambda m: None)
    r2 = subprocess.run([sys.executable, "-m", "mlc.cli", "run", str(folder), "--out", str(tmp_path / "s")],
                        env=env, capture_output=True, text=True, timeout=600)
    assert r2.returncode == 0, r2.stderr[-2000:]
    assert "note: data streamed: a data set of 3 files" in r2.stderr
    m, s = (json.loads((tmp_path / d / "report.json").read_text()) for d in "ms")
    assert m["data"]["path"] == "memory" and s["data"]["path"] == "stream"
    assert s["rows"] == m["rows"]
    assert s["metrics"]["test"]["y"]["roc_auc"] == pytest.approx(m["metrics"]["test"]["y"]["roc_auc"], abs=0.02)
    assert s["metrics"]["test"]["y"]["roc_auc"] > 0.8
    e = subprocess.run([sys.executable, "-m", "mlc.cli", "explain", str(folder)], env=env,
                       capture_output=True, text=True, timeout=300)
    assert e.returncode == 0 and "#   data streamed: a data set of 3 files" in e.stdout, e.stderr
    c = subprocess.run([sys.executable, "-m", "mlc.cli", "check", str(folder)], env=env,
                       capture_output=True, text=True, timeout=300)
    assert c.returncode == 0 and f"{sum(m['rows'].values())} rows (train {m['rows']['train']}" in c.stdout, c.stderr


def test_csv_files_stream_with_forced_streaming(data, tmp_path):
    prog = program(data, "csv/*.csv", name="csv.dml")
    env = {**cli_env(), "MLC_DATA_PATH": "stream"}
    r = subprocess.run([sys.executable, "-m", "mlc.cli", "run", str(prog), "--out", str(tmp_path / "c")],
                       env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    rep = json.loads((tmp_path / "c" / "report.json").read_text())
    assert rep["data"]["files"] == 3 and rep["metrics"]["test"]["y"]["roc_auc"] > 0.8


def test_sketches_merge_like_one_pass():
    rng = np.random.default_rng(3)
    x = rng.normal(size=10000) * 5 + 2
    a, b, whole = S.Moments(), S.Moments(), S.Moments()
    a.add(x[:3000]), b.add(x[3000:]), whole.add(x)
    a.merge(b)
    assert a.n == whole.n == 10000 and a.mean == pytest.approx(x.mean()) and a.std == pytest.approx(x.std())
    assert S.rank_error(1 << 18) == pytest.approx(0.0052, abs=1e-4)


def test_tune_on_streamed_data_is_refused_with_the_reason(data, tmp_path):
    from mlc.diagnostics import UserError
    from mlc.runtime.run import run
    prog = program(data, "parts/", name="tuned.dml")
    prog.write_text(prog.read_text() + "tune { trials = 4 }\n")
    with pytest.raises(UserError, match=r"`tune` needs the data in memory, and this data is streamed: a data set of 3 files"):
        run(prog, tmp_path / "t", log=lambda m: None)
    assert not (tmp_path / "t" / "model.mlc").exists()
