"""Each pass on small graphs written to show one rule; the pass manager; golden IR
text before and after every pass for two example programs.

Regenerate the golden files after an intended change with
    MLC_UPDATE_GOLDEN=1 python -m pytest tests/test_ir_passes.py
and read the diff before committing it."""
import os
from pathlib import Path

import pytest
from helpers_ir import EXAMPLES, assert_close, example_graph, random_values

from mlc.ir.graph import IRError, TensorType, print_graph, verify
from mlc.ir.interp import run_graph
from mlc.ir.pipeline import PASSES, STAGES, emit, get_pass, optimize
from mlc.ir.text import parse_graph

GOLDEN = Path(__file__).parent / "golden"


def _run(name, text):
    g = parse_graph(text)
    out = get_pass(name)(g)
    assert g == parse_graph(text), f"pass {name} changed its input"
    verify(out)
    return out


def _body(g):
    """The op lines and outputs of a graph, as text (no header)."""
    return [ln.strip() for ln in print_graph(g).splitlines()[1:-1] if not ln.strip().startswith(("input", "param"))]


HEAD = "graph t {\n  input %x : f32[B,3]\n  input %y : f32[B,3]\n  param %w : f32[3] = zeros()\n"


def _g(*lines, outputs="  output o = %r\n"):
    return HEAD + "".join(f"  {ln}\n" for ln in lines) + outputs + "}\n"


# ---- simplify -------------------------------------------------------------------------
@pytest.mark.parametrize("lines, expect", [
    # x * 1, x + 0, x - 0 (constant second) and 1 * x, 0 + x (commuted first)
    (["%c = const() {value=1.0} : f32[]", "%r = mul(%c, %x) : f32[B,3]"], ["output o = %x"]),
    (["%c = const() {value=[0.0, 0.0, 0.0]} : f32[3]", "%r = add(%x, %c) : f32[B,3]"], ["output o = %x"]),
    (["%c = const() {value=0.0} : f32[]", "%r = sub(%x, %c) : f32[B,3]"], ["output o = %x"]),
    (["%r = scale(%x) {factor=1.0} : f32[B,3]"], ["output o = %x"]),
    (["%r = dropout(%x) {rate=0.0} : f32[B,3]"], ["output o = %x"]),
    (["%a = neg(%x) : f32[B,3]", "%r = neg(%a) : f32[B,3]"], ["output o = %x"]),
    (["%a = scale(%x) {factor=2.0} : f32[B,3]", "%r = scale(%a) {factor=3.0} : f32[B,3]"],
     ["%r = scale(%x) {factor=6.0} : f32[B,3]", "output o = %r"]),
    (["%a = neg(%x) : f32[B,3]", "%r = scale(%a) {factor=3.0} : f32[B,3]"],
     ["%r = scale(%x) {factor=-3.0} : f32[B,3]", "output o = %r"]),
    (["%r = scale(%x) {factor=-1.0} : f32[B,3]"], ["%r = neg(%x) : f32[B,3]", "output o = %r"]),
    (["%c = const() {value=2.5} : f32[]", "%r = mul(%x, %c) : f32[B,3]"],
     ["%r = scale(%x) {factor=2.5} : f32[B,3]", "output o = %r"]),
    (["%c = const() {value=0.0} : f32[]", "%r = sub(%c, %x) : f32[B,3]"], ["%r = neg(%x) : f32[B,3]", "output o = %r"]),
    (["%a = neg(%y) : f32[B,3]", "%r = add(%x, %a) : f32[B,3]"], ["%r = sub(%x, %y) : f32[B,3]", "output o = %r"]),
    (["%a = neg(%y) : f32[B,3]", "%r = sub(%x, %a) : f32[B,3]"], ["%r = add(%x, %y) : f32[B,3]", "output o = %r"]),
    # commutative operands: computed values, then inputs, then params, then constants
    (["%a = relu(%x) : f32[B,3]", "%r = add(%w, %a) : f32[B,3]"],
     ["%a = relu(%x) : f32[B,3]", "%r = add(%a, %w) : f32[B,3]", "output o = %r"]),
    (["%r = mul(%y, %x) : f32[B,3]"], ["%r = mul(%x, %y) : f32[B,3]", "output o = %r"]),  # inputs in input order
    (["%r = mul(%w, %x) : f32[B,3]"], ["%r = mul(%x, %w) : f32[B,3]", "output o = %r"]),
])
def test_simplify_rules(lines, expect):
    out = get_pass("dce")(_run("simplify", _g(*lines)))  # dce drops what the rewrite left unused
    assert _body(out) == expect


def test_simplify_keeps_identities_that_broadcast():
    # x[B,1] * ones[3] is a [B,3] value, not x: the rule must not fire
    text = ("graph t {\n  input %x : f32[B,1]\n  %c = const() {value=[1.0, 1.0, 1.0]} : f32[3]\n"
            "  %r = mul(%x, %c) : f32[B,3]\n  output o = %r\n}\n")
    assert _run("simplify", text) == parse_graph(text)


def test_simplify_never_drops_nan_sensitive_ops():
    text = _g("%c = const() {value=0.0} : f32[]", "%r = mul(%x, %c) : f32[B,3]")
    out = _run("simplify", text)
    assert [op.opcode for op in out.ops] == ["const", "scale"]  # x*0 stays computed (NaN*0 is NaN)


# ---- constfold ------------------------------------------------------------------------
def test_constfold_evaluates_constant_ops():
    out = _run("constfold", _g("%a = const() {value=[0.0, 1.0, -1.0]} : f32[3]", "%b = exp(%a) : f32[3]",
                               "%c = const() {value=2.0} : f32[]", "%d = mul(%b, %c) : f32[3]",
                               "%r = add(%x, %d) : f32[B,3]"))
    assert [op.opcode for op in out.ops] == ["const", "const", "const", "const", "add"]
    assert out.ops[3].attrs["value"] == pytest.approx([2.0, 2 * 2.718281828, 2 * 0.36787944], rel=1e-6)


def test_constfold_leaves_dropout_batch_values_and_big_results():
    text = _g("%a = const() {value=[1.0, 2.0, 3.0]} : f32[3]", "%b = dropout(%a) {rate=0.5} : f32[3]",
              "%r = add(%x, %b) : f32[B,3]")
    assert _run("constfold", text) == parse_graph(text)
    big = [float(i) for i in range(2000)]
    text = ("graph t {\n" f"  %a = const() {{value={big!r}}} : f32[2000]\n"
            "  %r = exp(%a) : f32[2000]\n  output o = %r\n}\n")
    assert _run("constfold", text) == parse_graph(text)


def test_constfold_keeps_integer_constants_integer():
    text = ("graph t {\n  %a = const() {value=[0, 2], dtype='i32'} : i32[2]\n"
            "  %r = one_hot(%a) {depth=3} : f32[2,3]\n  %s = add(%a, %a) : i32[2]\n"
            "  output o = %r\n  output s = %s\n}\n")
    out = _run("constfold", text)
    assert out.ops[1].attrs == {"value": [[1.0, 0.0, 0.0], [0.0, 0.0, 1.0]]}
    assert out.ops[2].attrs == {"value": [0, 4], "dtype": "i32"} and str(out.ops[2].type) == "i32[2]"


# ---- cse --------------------------------------------------------------------------------
def test_cse_merges_equal_ops_and_keeps_different_ones():
    out = _run("cse", _g("%a = tanh(%x) : f32[B,3]", "%b = tanh(%x) : f32[B,3]",
                         "%s = scale(%x) {factor=2.0} : f32[B,3]", "%t = scale(%x) {factor=3.0} : f32[B,3]",
                         "%u = add(%a, %b) : f32[B,3]", "%v = add(%s, %t) : f32[B,3]", "%r = add(%u, %v) : f32[B,3]"))
    assert _body(out) == ["%a = tanh(%x) : f32[B,3]", "%s = scale(%x) {factor=2.0} : f32[B,3]",
                          "%t = scale(%x) {factor=3.0} : f32[B,3]", "%u = add(%a, %a) : f32[B,3]",
                          "%v = add(%s, %t) : f32[B,3]", "%r = add(%u, %v) : f32[B,3]", "output o = %r"]


def test_cse_never_merges_dropouts():
    text = _g("%a = dropout(%x) {rate=0.5} : f32[B,3]", "%b = dropout(%x) {rate=0.5} : f32[B,3]",
              "%r = add(%a, %b) : f32[B,3]")
    assert _run("cse", text) == parse_graph(text)


def test_cse_after_canonical_order_finds_commuted_ops():
    g, _ = optimize(parse_graph(_g("%a = add(%w, %x) : f32[B,3]", "%b = add(%x, %w) : f32[B,3]",
                                   "%r = mul(%a, %b) : f32[B,3]")), passes=["simplify", "cse"])
    assert _body(g) == ["%a = add(%x, %w) : f32[B,3]", "%r = mul(%a, %a) : f32[B,3]", "output o = %r"]


# ---- dce ----------------------------------------------------------------------------------
def test_dce_removes_dead_ops_unused_inputs_and_params():
    out = _run("dce", _g("%d = sigmoid(%y) : f32[B,3]", "%e = add(%d, %w) : f32[B,3]", "%r = relu(%x) : f32[B,3]"))
    assert list(out.inputs) == ["x"] and not out.params
    assert _body(out) == ["%r = relu(%x) : f32[B,3]", "output o = %r"]


def test_an_unused_example_input_costs_nothing():
    g = example_graph("titanic")
    g.inputs["extra"] = TensorType("f32", ("B", 8))
    out, _ = optimize(g)
    assert "extra" not in out.inputs and "extra" not in print_graph(out)


# ---- infer ------------------------------------------------------------------------------
def test_infer_fills_missing_types_and_rejects_wrong_ones():
    g = parse_graph(_g("%a = relu(%x) : f32[B,3]", "%r = add(%a, %w) : f32[B,3]"))
    g.ops[1].type = None
    assert str(get_pass("infer")(g).ops[1].type) == "f32[B,3]"
    g.ops[1].type = TensorType("f32", ("B", 4))
    with pytest.raises(IRError, match=r"%r = add: declared f32\[B,4\] but its inputs give f32\[B,3\]"):
        get_pass("infer")(g)
    g.ops[1].type = None
    g.ops[1].args = ("a", "q")
    with pytest.raises(IRError, match="uses %q before it is defined"):
        get_pass("infer")(g)


# ---- the pass manager --------------------------------------------------------------------
def test_optimize_logs_every_pass_and_dumps_after_one():
    g = example_graph("titanic")
    out, log = optimize(g, dump_after="simplify", verify_each=True)
    assert [r.name for r in log.records] == PASSES
    simplify = log.records[PASSES.index("simplify")]
    assert (simplify.ops_before, simplify.ops_after) == (16, 15)  # scale by a loss weight of 1.0
    assert all(r.seconds >= 0 for r in log.records)
    assert log.dump == print_graph(optimize(g, passes=PASSES[:PASSES.index("simplify") + 1])[0])
    assert "simplify" in log.format() and "total" in log.format()
    assert out.groups and log.records[-1].groups_after == len(out.groups)


def test_optimize_rejects_unknown_passes():
    with pytest.raises(ValueError, match="unknown pass `fold`; the passes are: infer, constfold"):
        optimize(example_graph("titanic"), dump_after="fold")
    with pytest.raises(ValueError, match="does not run here"):
        optimize(example_graph("titanic"), dump_after="fuse", passes=["dce"])


def test_verify_each_names_the_pass_that_broke_the_graph(monkeypatch):
    import mlc.passes.cse as cse

    def broken(graph):
        g = graph.__class__(graph.name, dict(graph.inputs), dict(graph.params), list(graph.ops[1:]),
                            dict(graph.outputs))
        return g
    monkeypatch.setattr(cse, "run", broken)
    with pytest.raises(IRError, match="after pass cse: %1: uses %0 before it is defined"):
        optimize(example_graph("titanic"), verify_each=True)


def test_emit_stages():
    g = example_graph("credit")
    assert emit(g, "ir") == print_graph(g)
    assert "group" not in emit(g, "opt") and "scale" not in emit(g, "opt")
    assert "group k0" in emit(g, "fused")
    assert set(STAGES) == {"ir", "opt", "fused"}
    with pytest.raises(ValueError, match="unknown stage"):
        emit(g, "triton")


@pytest.mark.parametrize("name", EXAMPLES)
def test_pipeline_keeps_example_results(name):
    g = example_graph(name)
    params, inputs = random_values(g, batch=9)
    out, _ = optimize(g, verify_each=True)
    assert_close(run_graph(out, params, inputs), run_graph(g, params, inputs))


# ---- golden IR text before and after each pass -------------------------------------------
def _golden_stages(name):
    g = example_graph(name)
    stages = [("00_lowered", g)]
    for i, p in enumerate(PASSES, start=1):
        g = get_pass(p)(g)
        stages.append((f"{i:02d}_{p}", g))
    return stages


@pytest.mark.parametrize("name", ["titanic", "credit"])
def test_golden_ir_after_each_pass(name):
    folder = GOLDEN / name
    update = os.environ.get("MLC_UPDATE_GOLDEN") == "1"
    for stage, g in _golden_stages(name):
        path = folder / f"{stage}.ir"
        text = print_graph(g)
        if update:
            folder.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
            continue
        assert path.exists(), f"{path} is missing; run with MLC_UPDATE_GOLDEN=1 to create it"
        assert text == path.read_text(), f"IR after {stage} differs from {path} (MLC_UPDATE_GOLDEN=1 to accept)"
        assert parse_graph(path.read_text()) == g
