"""Silent wrong answers and runaway runs (issue 10): divergence is an error that names the
epoch and the likely option and writes no model; float32 rounding of options is a
check-time diagnostic; metrics refuse NaN scores; `38,5` is never read as 385; a huge
cell does not blow up memory; patience is capped and `max_time` stops a run."""
from __future__ import annotations

import json
import tracemalloc
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from helpers_frontend import mlc, write_files

from mlc import spec
from mlc.runtime import data as D
from mlc.runtime import metrics as M
from mlc.runtime import preprocess as P

ROOT = Path(__file__).resolve().parents[1]
TITANIC = (ROOT / "examples" / "data" / "titanic.csv").read_text()
HEAD = 'data "t.csv"\ninput sex : binary\ninput age : number\noutput survived : binary\n'


def _run(tmp_path, program: str):
    write_files(tmp_path, {"t.csv": TITANIC, "p.dml": program})
    r = mlc(tmp_path, "run", "p.dml", "--out", "out", timeout=300)
    assert "Traceback" not in r.stderr, r.stderr
    return r


def test_divergence_is_an_error_at_the_option_and_writes_no_model(tmp_path):
    r = _run(tmp_path, HEAD + "train { optimizer = adamw(weight_decay = 1e30), epochs = 3 }\n")
    assert r.returncode == 1
    assert "p.dml:5:9: error: training diverged in epoch 1: the training loss is nan; no model was written" in r.stderr
    assert "hint: weight_decay = 1e+30 is very large; try 0.0001" in r.stderr
    assert not (tmp_path / "out" / "model.mlc").exists() and not (tmp_path / "out" / "report.json").exists()


def test_a_block_that_computes_nan_points_at_the_combiner(tmp_path):
    block = "block bad(x) {\n  return log(dense(x, 8) - 1000)\n}\ncombiner bad()\ntrain { epochs = 2 }\n"
    r = _run(tmp_path, HEAD + block)
    assert r.returncode == 1
    assert "p.dml:8:10: error: training diverged in epoch 1" in r.stderr
    assert "check the expert block `bad` for log or division" in r.stderr


@pytest.mark.parametrize("option,message", [
    ("adam(b1 = 0.9999999999)", "`b1` = 0.9999999999 rounds to 1 in float32"),
    ("adamw(b2 = 0.99999999)", "`b2` = 0.99999999 rounds to 1 in float32"),
    ("adamw(lr = 1e308)", "`lr` is too large for float32"),
])
def test_options_broken_by_float32_are_check_time_diagnostics(tmp_path, option, message):
    write_files(tmp_path, {"t.csv": TITANIC, "p.dml": HEAD + f"train {{ optimizer = {option} }}\n"})
    r = mlc(tmp_path, "check", "p.dml")
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert r.first.startswith("p.dml:5:") and message in r.first


def test_metrics_refuse_nan_scores():
    y = np.array([0, 1, 1, 0])
    with pytest.raises(M.NonFiniteScores):
        M.binary_metrics(y, np.array([0.1, np.nan, 0.8, 0.3]))
    with pytest.raises(M.NonFiniteScores):
        M.roc_auc(y, np.array([np.nan] * 4))
    with pytest.raises(M.NonFiniteScores):
        M.number_metrics(np.ones(3), np.array([1.0, np.inf, 2.0]))
    with pytest.raises(M.NonFiniteScores):
        M.set_metrics(np.ones((2, 2)), np.array([[0.5, np.nan], [0.1, 0.2]]))


def test_a_decimal_comma_is_never_a_thousands_separator():
    grouped = pa.chunked_array([pa.array(["1,234", "12", "1,234,567.5", None])])
    assert D.as_numbers(grouped)[[0, 1, 2]].tolist() == [1234, 12, 1234567.5]
    with pytest.raises(D.DataError, match=r"holds `38,5` \(row 2\), where the comma is not a thousands separator"):
        D.as_numbers(pa.chunked_array([pa.array(["1,234", "38,5"])]))
    assert D.unparsable_numbers(pa.chunked_array([pa.array(["38,5", "1"])])) is None  # an error, not a dirty cell


def test_decimal_commas_in_a_file_are_a_diagnostic(tmp_path):
    rows = "".join(f'"{i},5",{"yes" if i % 2 else "no"}\n' for i in range(40))
    write_files(tmp_path, {"c.csv": "x,survived\n" + rows,
                           "p.dml": 'data "c.csv"\ninput x : number\noutput survived : binary\n'})
    r = mlc(tmp_path, "check", "p.dml")
    assert r.returncode == 1
    assert r.first == ("p.dml:2:11: error: column `x` is declared `number` but holds `0,5` (row 1), where the "
                       "comma is not a thousands separator")
    assert r.hint == "if commas are decimal points (38,5), replace them with `.`; thousands are written 1,234,567"


def test_one_huge_category_cell_keeps_memory_proportional():
    col = pa.array(["x" * 1_000_000] + [f"v{i % 50}" for i in range(20_000)])
    r = spec.Resolved("f", "d", {}, [{"name": "c", "type": "category",
                                       "options": {"min_count": 1, "encoder": {"name": "onehot"}}}], [], {}, {})
    tracemalloc.start()
    state = P.fit(r, pa.table({"c": col}))
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 200e6, f"{peak / 1e6:.0f} MB"  # a padded '<U' array would need 80 GB
    assert state["inputs"]["c"]["vocab"][:2] == ["v0", "v1"]


def test_patience_is_capped_and_max_time_stops_training(tmp_path):
    r = _run(tmp_path, HEAD + "train { epochs = 2147483647, max_time = 2 }\n")
    assert r.returncode == 0, r.stderr
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["training"]["early_stop"]["patience"] == 50
    assert report["training"]["stopped_by"] in ("max_time", "early_stop")
    assert report["timings_seconds"]["train"] < 60
