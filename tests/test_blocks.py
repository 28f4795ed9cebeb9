"""Expert blocks: checked at their own lines, lowered to the same IR as the built-in
combiner, optimized and fused like it, trained to the same quality, and carried in
the artifact."""
from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import mlc
from mlc.compile import frontend
from mlc.diagnostics import MlcError
from mlc.fusion import kernels
from mlc.ir import pipeline
from mlc.runtime.run import run

ROOT = Path(__file__).resolve().parents[1]
HEAD = 'data "data/titanic.csv"\n'
FEATURES = "input age : number\ninput sex : binary\noutput survived : binary\n"


def program(tmp_path, text: str) -> Path:
    if not (tmp_path / "data").exists():
        shutil.copytree(ROOT / "examples" / "data", tmp_path / "data")
    p = tmp_path / "p.dml"
    p.write_text(text)
    return p


def first_error(path: Path) -> str:
    with pytest.raises(MlcError) as e:
        frontend(path)
    return e.value.render().splitlines()[0].replace(str(path.parent) + "/", "")


@pytest.mark.parametrize("body, expected", [
    ("  h = gelux(x)\n  return h\n", "p.dml:3:7: error: unknown function `gelux`"),
    ("  return dense(x, 4, 5)\n", "p.dml:3:10: error: `dense` takes 2 arguments (tensor, int), got 3"),
    ("  return dense(x, 2.5)\n", "p.dml:3:19: error: argument 2 of `dense` must be an int, not a float"),
    ("  return relu(y)\n", "p.dml:3:15: error: `y` is not defined"),
    ("  return x / dense(x, 3)\n", "p.dml:3:10: error: a tensor can only be divided by a number"),
    ("  return dim(x)\n", "p.dml:3:10: error: block `b` must return a tensor, not an int"),
])
def test_block_mistakes_are_reported_at_their_line(tmp_path, body, expected):
    p = program(tmp_path, HEAD + "block b(x) {\n" + body + "}\n" + FEATURES + "combiner b\n")
    assert first_error(p) == expected


def test_shape_error_points_at_the_expression(tmp_path):
    p = program(tmp_path, HEAD + "\nblock b(x) {\n  h = dense(x, 8)\n  return h + dense(h, 3)\n}\n"
                + FEATURES + "combiner b\n")
    assert first_error(p) == "p.dml:5:10: error: shape error: cannot broadcast f32[B,8] with f32[B,3]"


def test_block_call_arguments_are_checked(tmp_path):
    p = program(tmp_path, HEAD + "block b(x, w: int) {\n  return dense(x, w)\n}\n" + FEATURES
                + "combiner b(v = 3)\n")
    with pytest.raises(MlcError) as e:
        frontend(p)
    text = e.value.render().replace(str(tmp_path) + "/", "")
    assert "p.dml:8:12: error: block `b` has no parameter `v`" in text
    assert "p.dml:8:10: error: block `b` needs a value for `w`" in text


def test_block_lowers_to_the_same_ir_as_the_builtin_combiner():
    builtin = pipeline.lower_file(ROOT / "examples" / "credit.dml")
    block = pipeline.lower_file(ROOT / "examples" / "credit_block.dml")
    assert [op.opcode for op in block.ops] == [op.opcode for op in builtin.ops]
    assert [p.type for p in block.params.values()] == [p.type for p in builtin.params.values()]
    fused_block, _ = pipeline.optimize(block)
    fused_builtin, _ = pipeline.optimize(builtin)
    assert [k.family for k in kernels(fused_block)] == [k.family for k in kernels(fused_builtin)]
    assert len(kernels(fused_block)) < len(block.ops)


def test_block_trains_to_the_quality_of_the_builtin_and_ships_in_the_artifact(tmp_path, example_run):
    a, _ = example_run("credit")  # credit.dml with seed 0, shared with test_run.py (conftest)
    b = run(ROOT / "examples" / "credit_block.dml", tmp_path / "b", log=lambda m: None)
    auc = lambda r: r["metrics"]["test"]["status"]["roc_auc"]  # noqa: E731
    assert abs(auc(a) - auc(b)) < 0.01
    model = mlc.load(tmp_path / "b" / "model.mlc")
    assert any(name.startswith("block.mlp.") for name in model.params)
    rows = [{"seniority": 9, "home": "rent", "time": 60, "age": 30, "marital": "married", "records": "no",
             "job": "fixed", "expenses": 73, "income": 129, "assets": 0, "debt": 0, "amount": 800,
             "price": 846}]
    assert model.predict(rows)["status"][0] in ("good", "bad")


def test_explain_prints_the_block_and_its_arguments():
    r = subprocess.run([sys.executable, "-m", "mlc.cli", "explain", str(ROOT / "examples" / "credit_block.dml")],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "block mlp(x, width: int = 256, rate: float = 0.1) {" in r.stdout
    assert "combiner mlp(width = 256, rate = 0.1)" in r.stdout
