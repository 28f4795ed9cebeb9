"""`mlc explain` round-trips; metrics agree with scikit-learn; preprocessing
fits on the training split only."""
from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from sklearn import metrics as skm

from mlc.compile import frontend
from mlc.explain import explain
from mlc.runtime import metrics as M
from mlc.runtime import preprocess as P

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = sorted((ROOT / "examples").glob("*.dml"))


@pytest.mark.parametrize("program", EXAMPLES, ids=lambda p: p.stem)
def test_explain_output_is_valid_dml_that_resolves_to_the_same_program(program, tmp_path):
    shutil.copytree(program.parent / "data", tmp_path / "data")
    first = frontend(program).resolved
    text = explain(first)
    again_path = tmp_path / program.name
    again_path.write_text(text)
    second = frontend(again_path).resolved
    assert second.to_json() == first.to_json()
    def code(t):  # the program without its comments: the reasons now say "set in the program"
        return [line.split("#")[0].rstrip() for line in t.splitlines()]
    assert code(explain(second)) == code(text)
    # every default carries its reason
    block_lines = {line for b in first.blocks.values() for line in b.splitlines()}
    for line in text.splitlines():
        if " = " in line and not line.lstrip().startswith("#") and line not in block_lines:
            assert "  # " in line, line


def test_explain_cli_prints_the_resolved_program():
    r = subprocess.run([sys.executable, "-m", "mlc.cli", "explain", str(ROOT / "examples" / "titanic.dml")],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "encoder = ple(bins = 16)" in r.stdout and "early_stop = " in r.stdout


def test_explain_keeps_what_the_program_set(tmp_path):
    shutil.copytree(ROOT / "examples" / "data", tmp_path / "data")
    p = tmp_path / "t.dml"
    p.write_text('data "data/titanic.csv"\ninput age : number { encoder = linear }\ninput sex : binary\n'
                 'output survived : binary\ncombiner concat { layers = [32] }\n'
                 'train { optimizer = adamw(lr = 3e-4), epochs = 7, early_stop = 3 on val.loss }\n')
    r = frontend(p).resolved
    assert r.inputs[0]["options"]["encoder"] == {"name": "linear"}
    assert r.combiner["options"]["layers"] == [32]
    assert r.train["optimizer"]["lr"] == 3e-4 and r.train["optimizer"]["weight_decay"] == 0.0001
    assert r.train["epochs"] == 7
    assert r.train["early_stop"] == {"patience": 3, "metric": "val.loss"}
    assert r.reasons["input.age.encoder"] == "set in the program"


@pytest.mark.parametrize("seed", range(5))
def test_binary_metrics_match_sklearn(seed):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, 300)
    p = np.round(rng.random(300), 2)  # rounded: many ties, which AUC must handle
    m = M.binary_metrics(y, p)
    assert m["roc_auc"] == pytest.approx(skm.roc_auc_score(y, p))
    assert m["accuracy"] == pytest.approx(skm.accuracy_score(y, p >= 0.5))
    assert m["f1"] == pytest.approx(skm.f1_score(y, p >= 0.5))
    assert m["loss"] == pytest.approx(skm.log_loss(y, np.clip(p, 1e-7, 1 - 1e-7)), rel=1e-6)


@pytest.mark.parametrize("seed", range(5))
def test_category_and_number_metrics_match_sklearn(seed):
    rng = np.random.default_rng(seed)
    probs = rng.dirichlet(np.ones(4), 200)
    y = rng.integers(0, 4, 200)
    m = M.category_metrics(y, probs)
    assert m["accuracy"] == pytest.approx(skm.accuracy_score(y, probs.argmax(1)))
    assert m["macro_f1"] == pytest.approx(skm.f1_score(y, probs.argmax(1), average="macro"))
    t, pred = rng.normal(size=100), rng.normal(size=100)
    n = M.number_metrics(t, pred)
    assert n["r2"] == pytest.approx(skm.r2_score(t, pred))
    assert n["mae"] == pytest.approx(skm.mean_absolute_error(t, pred))
    assert n["rmse"] == pytest.approx(np.sqrt(skm.mean_squared_error(t, pred)))


def test_preprocessing_fits_on_training_rows_only():
    fe = frontend(ROOT / "examples" / "credit.dml")
    from mlc.runtime import data as D
    train = D.take(fe.table, fe.splits["train"])
    state = P.fit(fe.resolved, train, fe.facts)
    income = D.as_numbers(train.column("income"))
    assert state["inputs"]["income"]["fill"] == pytest.approx(np.nanmedian(income))
    # a vocabulary holds only values seen in training
    home_train = set(v for v in D.as_strings(train.column("home")) if v)
    assert set(state["inputs"]["home"]["vocab"]) <= home_train


def test_unseen_category_and_missing_number_encode_safely():
    fe = frontend(ROOT / "examples" / "titanic.dml")
    from mlc.runtime import data as D
    state = P.fit(fe.resolved, D.take(fe.table, fe.splits["train"]), fe.facts)
    rows = pa.table({"sex": ["female", None], "age": [None, 200.0], "passenger_class": ["never-seen", "1st"]})
    enc = P.encode_inputs(fe.resolved, state, rows)
    assert np.isfinite(enc["x_num"]).all()
    assert enc["cat_passenger_class"][0] == 0  # <unknown>
    assert enc["cat_passenger_class"][1] > 0
    assert abs(enc["x_num"][1, 0]) < 3.01  # the robust scaler's smooth clip bounds outliers
