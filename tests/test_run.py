"""End to end: `mlc run` on the shipped examples, metric floors, determinism,
the artifact, `mlc predict` and `mlc.load(...).predict` agreeing with the report."""
from __future__ import annotations

import csv
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import mlc
from mlc.runtime import data as D
from mlc.runtime import metrics as M
from mlc.runtime.run import run

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
MLC = [sys.executable, "-m", "mlc.cli"]

# Floors sit a little under what the defaults reach (see benchmarks/RESULTS.md) and at
# or above scikit-learn's HistGradientBoosting on the same split, so a regression in
# defaults, preprocessing or training fails here.
FLOORS = {
    "titanic": ("survived", "roc_auc", 0.80),
    "credit": ("status", "roc_auc", 0.84),
    "penguins": ("species", "accuracy", 0.94),
    "diamonds": ("price", "r2", 0.965),
}


@pytest.fixture(scope="module")
def reports(example_run):
    """Each example trained with its defaults and seed 0 (conftest: shared with other modules)."""
    return {name: example_run(name) for name in FLOORS}


@pytest.mark.parametrize("name", list(FLOORS))
def test_example_reaches_its_metric_floor(reports, name):
    report, _ = reports[name]
    output, metric, floor = FLOORS[name]
    assert report["metrics"]["test"][output][metric] >= floor
    assert report["timings_seconds"]["total"] < 60


@pytest.mark.parametrize("name", list(FLOORS))
def test_report_has_every_split_output_and_metric(reports, name):
    report, d = reports[name]
    on_disk = json.loads((d / "report.json").read_text())
    assert on_disk["metrics"] == report["metrics"]
    expected = {"binary": {"accuracy", "roc_auc", "f1"}, "category": {"accuracy", "macro_f1"},
                "number": {"mae", "rmse", "r2"}}
    for split in ("train", "validation", "test"):
        for out in report["resolved"]["outputs"]:
            assert expected[out["type"]] <= set(on_disk["metrics"][split][out["name"]])
    assert on_disk["seed"] == 0
    assert on_disk["timings_seconds"]["total"] > 0
    assert "resolved_program" in on_disk and on_disk["resolved"]["outputs"]


def test_same_seed_same_metrics(reports, tmp_path):
    again = run(EXAMPLES / "titanic.dml", tmp_path, seed=0, log=lambda m: None)
    assert again["metrics"] == reports["titanic"][0]["metrics"]


def test_other_seed_other_model(reports, tmp_path):
    other = run(EXAMPLES / "titanic.dml", tmp_path, seed=1, log=lambda m: None)
    assert other["metrics"]["test"] != reports["titanic"][0]["metrics"]["test"]
    assert other["rows"] == reports["titanic"][0]["rows"]  # the split does not depend on --seed


def _test_rows(name: str):
    """The test split's rows, exactly as `mlc run` drew them."""
    from mlc.compile import frontend
    fe = frontend(EXAMPLES / f"{name}.dml")
    return D.take(fe.table, fe.splits["test"])


@pytest.mark.parametrize("name", ["titanic", "penguins", "diamonds"])
def test_loaded_artifact_reproduces_test_metrics(reports, name):
    report, d = reports[name]
    output, metric, _ = FLOORS[name]
    model = mlc.load(d / "model.mlc")
    rows = _test_rows(name)
    pred = model.predict(rows.select(model.inputs).to_pylist())
    truth = D.as_strings(rows.column(output))
    if metric == "roc_auc":
        pos = report["resolved"]["outputs"][0]["options"]["positive"]
        got = M.roc_auc(np.array([t == pos for t in truth]), np.array(pred[f"{output}_probability"]))
    elif metric == "accuracy":
        got = float(np.mean([p == t for p, t in zip(pred[output], truth)]))
    else:
        y = D.as_numbers(rows.column(output))
        got = M.number_metrics(y, np.array(pred[output]))["r2"]
    assert got == pytest.approx(report["metrics"]["test"][output][metric], abs=1e-6)


def test_cli_predict_writes_outputs_and_probabilities(reports, tmp_path):
    _, d = reports["titanic"]
    rows = _test_rows("titanic")
    src = tmp_path / "rows.csv"
    import pyarrow.csv as pacsv
    pacsv.write_csv(rows.drop(["survived"]), src)
    dest = tmp_path / "pred.csv"
    r = subprocess.run(MLC + ["predict", str(d / "model.mlc"), "--data", str(src), "--out", str(dest)],
                       capture_output=True, text=True, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    with dest.open() as f:
        got = list(csv.DictReader(f))
    assert len(got) == rows.num_rows
    assert set(got[0]) == {"survived", "survived_probability"}
    in_process = mlc.load(d / "model.mlc").predict(rows)
    assert [g["survived"] for g in got] == in_process["survived"]
    np.testing.assert_allclose([float(g["survived_probability"]) for g in got],
                               in_process["survived_probability"], rtol=1e-6)


def test_predict_accepts_columns_rows_unseen_and_missing_values(reports):
    model = mlc.load(reports["titanic"][1] / "model.mlc")
    cols = model.predict({"sex": ["female", "male"], "age": [29, None], "passenger_class": ["1st", "9th"]})
    rows = model.predict([{"sex": "female", "age": 29, "passenger_class": "1st"},
                          {"sex": "male", "age": None, "passenger_class": "9th"}])
    assert cols == rows
    assert set(cols["survived"]) <= {"yes", "no"}
    assert 0 <= min(cols["survived_probability"]) <= max(cols["survived_probability"]) <= 1
    # a first-class woman is far likelier to survive than a man of an unknown class
    assert cols["survived_probability"][0] > cols["survived_probability"][1]
    with pytest.raises(ValueError, match="passenger_class"):
        model.predict({"sex": ["female"], "age": [3]})


def test_artifact_loads_without_program_or_data(reports, tmp_path):
    _, d = reports["penguins"]
    moved = tmp_path / "elsewhere" / "m.mlc"
    moved.parent.mkdir()
    shutil.copy(d / "model.mlc", moved)
    code = ("import mlc, json; m = mlc.load('m.mlc'); "
            "print(json.dumps(m.predict({'bill_length_mm': [39.1], 'bill_depth_mm': [18.7], "
            "'flipper_length_mm': [181], 'body_mass_g': [3750], 'island': ['Torgersen'], "
            "'sex': ['male'], 'year': [2007]})))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=moved.parent)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["species"] == ["Adelie"]


def test_artifact_holds_no_pickle(reports):
    import zipfile
    with zipfile.ZipFile(reports["credit"][1] / "model.mlc") as z:
        names = set(z.namelist())
        assert names == {"manifest.json", "program.dml", "model.ir", "weights.npz"}
        manifest = json.loads(z.read("manifest.json"))
    assert manifest["versions"]["jax"] and manifest["preprocessing"]["inputs"]


def test_cli_run_prints_summary_and_writes_files(tmp_path):
    r = subprocess.run(MLC + ["run", str(EXAMPLES / "penguins.dml"), "--out", str(tmp_path / "o"), "--seed", "3"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "species" in r.stdout and "accuracy" in r.stdout and "test" in r.stdout
    report = json.loads((tmp_path / "o" / "report.json").read_text())
    assert report["seed"] == 3
    assert (tmp_path / "o" / "model.mlc").is_file()
