"""Slices: parse, check (every diagnostic), explain round trip, per-slice metrics in the
report (checked against metrics computed by hand on the same rows), weights in the loss."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from helpers_frontend import mlc, write_files

from mlc.compile import frontend
from mlc.explain import explain
from mlc.grammar.parse import parse
from mlc.runtime import slices as S

ROOT = Path(__file__).resolve().parents[1]
TITANIC = (ROOT / "examples" / "data" / "titanic.csv").read_text()
HEAD = ('data "t.csv" split 80/10/10 seed 7\ninput sex : binary\ninput age : number\n'
        "input passenger_class : category\noutput survived : binary\n")


def _check(tmp_path, extra: str):
    write_files(tmp_path, {"t.csv": TITANIC, "p.dml": HEAD + extra})
    r = mlc(tmp_path, "check", "p.dml")
    assert "Traceback" not in r.stderr, r.stderr
    return r


@pytest.mark.parametrize("slice_line,first,hint", [
    ("slice a = agee < 3", "p.dml:6:11: error: the data has no column `agee`", "did you mean `age`?"),
    ('slice a = age > "3"', 'p.dml:6:17: error: `age` holds numbers but is compared with the text "3"',
     "write a number without quotes"),
    ("slice a = passenger_class == 1", "p.dml:6:30: error: `passenger_class` holds text but is compared with the "
     "number 1", 'write the value in quotes, such as "1"'),
    ('slice a = sex < "m"', "p.dml:6:11: error: `sex` holds text: `<` does not order it",
     "compare text with `==`, `!=` or `in [...]`"),
    ("slice a = age > 500", "p.dml:6:7: error: slice `a` holds no row of the validation split",
     "its metrics would be empty; check the condition"),
    ("slice a = age > 5 { wieght = 2 }", "p.dml:6:21: error: unknown option `wieght` for slices",
     "did you mean `weight`?"),
])
def test_slice_diagnostics(tmp_path, slice_line, first, hint):
    r = _check(tmp_path, slice_line + "\n")
    assert r.returncode == 1
    assert r.first == first and r.hint == hint


def test_duplicate_slice_and_syntax_error(tmp_path):
    r = _check(tmp_path, "slice a = age > 5\nslice a = age < 5\n")
    assert r.first == "p.dml:7:7: error: duplicate slice `a`"
    r = _check(tmp_path, "slice a = age >\n")
    assert r.returncode == 1 and r.first.startswith("p.dml:")


def test_conditions_on_a_table():
    t = pa.table({"age": [3.0, None, 40.0, 17.0], "cls": ["1st", "3rd", None, "3rd"]})
    cond = lambda text: parse(f"slice s = {text}", "x").slices[0].cond  # noqa: E731
    assert S.mask(cond("age < 18"), t).tolist() == [True, False, False, True]
    assert S.mask(cond("not age < 18"), t).tolist() == [False, True, True, False]
    assert S.mask(cond("age is missing or cls in [\"1st\"]"), t).tolist() == [True, True, False, False]
    assert S.mask(cond("cls == \"3rd\" and age is not missing"), t).tolist() == [False, False, False, True]
    assert S.mask(cond("cls != \"3rd\""), t).tolist() == [True, False, False, False]  # empty: false


def test_explain_round_trips_slices(tmp_path):
    write_files(tmp_path, {"t.csv": TITANIC, "p.dml": HEAD + 'slice a = age < 18 or passenger_class == "1st" '
                                                             "{ weight = 2.0 }\nslice b = not age is missing\n"})
    r = frontend(tmp_path / "p.dml").resolved
    text = explain(r)
    assert 'slice a = age < 18 or passenger_class == "1st" { weight = 2.0 }' in text
    (tmp_path / "again.dml").write_text(text)
    assert frontend(tmp_path / "again.dml").resolved.to_json() == r.to_json()


def test_slice_metrics_in_the_report_and_weights_in_the_loss(tmp_path):
    extra = 'slice men = sex == "male" { weight = 3.0 }\nslice young = age < 18\ntrain { epochs = 3 }\n'
    write_files(tmp_path, {"t.csv": TITANIC, "p.dml": HEAD + extra})
    r = mlc(tmp_path, "run", "p.dml", "--out", "out", timeout=300)
    assert r.returncode == 0, r.stderr
    assert "slices (lead metric)" in r.stdout and "young" in r.stdout
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    men = report["slices"]["men"]
    assert men["weight"] == 3.0 and men["rows"]["test"] > 0
    # the slice's test accuracy, recomputed from model.mlc's predictions on the same rows
    import mlc as api
    from mlc.runtime import data as D
    fe = frontend(tmp_path / "p.dml")
    test = D.take(fe.table, fe.splits["test"])
    rows = S.mask(parse("slice s = sex == \"male\"", "x").slices[0].cond, test)
    pred = api.load(tmp_path / "out" / "model.mlc").predict(test)
    truth = np.array(test.column("survived").to_pylist())[rows]
    acc = float((np.array(pred["survived"])[rows] == truth).mean())
    assert abs(acc - men["metrics"]["test"]["survived"]["accuracy"]) < 1e-9
    # the weighted slice multiplies each output's per-row loss by the rows' weights
    from mlc.ir.lower import lower
    g = lower(fe.resolved, fe.state)
    assert "row_weight" in g.inputs
    weights = S.row_weights(fe.resolved.slices, D.take(fe.table, fe.splits["train"]))
    is_man = np.array(D.take(fe.table, fe.splits["train"]).column("sex").to_pylist()) == "male"
    assert abs(weights.mean() - 1) < 1e-6 and np.allclose(weights[is_man] / weights[~is_man][0], 3.0)
    fe.resolved.slices = [dict(sl, weight=1.0) for sl in fe.resolved.slices]
    assert "row_weight" not in lower(fe.resolved, fe.state).inputs


def test_run_writes_report_html_and_predict_adds_slice_columns(tmp_path):
    extra = 'slice young = age < 18\nslice no_age = age is missing\ntrain { epochs = 2 }\n'
    write_files(tmp_path, {"t.csv": TITANIC, "p.dml": HEAD + extra})
    r = mlc(tmp_path, "run", "p.dml", "--out", "out", timeout=300)
    assert r.returncode == 0, r.stderr
    page = (tmp_path / "out" / "report.html").read_text()
    assert "<h2>Slices</h2>" in page and 'data-chart="slices-survived"' in page
    r = mlc(tmp_path, "predict", "out/model.mlc", "--data", "t.csv", "--out", "p.csv", "--slices")
    assert r.returncode == 0, r.stderr
    import pyarrow.csv as pacsv
    got = pacsv.read_csv(tmp_path / "p.csv")
    ages = pacsv.read_csv(tmp_path / "t.csv").column("age").to_pylist()
    assert got.column("slice_no_age").to_pylist() == [a is None for a in ages]
    assert got.column("slice_young").to_pylist() == [a is not None and a < 18 for a in ages]
    write_files(tmp_path, {"noage.csv": "sex,passenger_class\nmale,1st\n"})
    r = mlc(tmp_path, "predict", "out/model.mlc", "--data", "noage.csv", "--out", "q.csv", "--slices")
    assert r.returncode == 1 and "Traceback" not in r.stderr


def test_slices_on_a_parquet_list_column(tmp_path):
    """A set column stored as a Parquet list: comparing it is a diagnostic (it used to crash
    the check casting list<string> to text); `is missing` and `is present` work on it."""
    import pyarrow.parquet as pq
    n = 200
    rng = np.random.default_rng(0)
    table = pa.table({"tags": [["a", "b"] if i % 3 else None for i in range(n)],
                      "age": rng.normal(40, 10, n), "y": ["yes" if i % 2 else "no" for i in range(n)]})
    pq.write_table(table, tmp_path / "t.parquet")
    head = 'data "t.parquet" split 80/10/10 seed 7\ninput tags : set\ninput age : number\noutput y : binary\n'
    write_files(tmp_path, {"p.dml": head + 'slice a = tags == "a"\n'})
    r = mlc(tmp_path, "check", "p.dml")
    assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr
    assert r.first == "p.dml:5:11: error: `tags` holds several values per cell (list<element: string>): a slice " \
                      "compares one value"
    assert r.hint == "use `tags is missing` or `is present`, or slice on another column"
    cond = parse("slice s = tags is missing", "x").slices[0].cond
    assert S.mask(cond, table).tolist() == [i % 3 == 0 for i in range(n)]
    write_files(tmp_path, {"p.dml": head + "slice a = tags is missing\n"})
    r = mlc(tmp_path, "check", "p.dml")
    assert r.returncode == 0, r.stderr
