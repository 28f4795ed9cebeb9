"""Fusion: the families it finds, the fusions it refuses (each with a reason), kernel
counts, and that fused graphs compute exactly what unfused ones do."""
import os
import re
from pathlib import Path

import numpy as np
import pytest
from helpers_ir import EXAMPLES, assert_close, example_graph, random_values

from mlc.backends import jax_backend
from mlc.fusion import cost, fusion_report, kernels, plan, run_kernels
from mlc.ir.graph import Builder, TensorType, print_graph, verify
from mlc.ir.interp import run_graph
from mlc.ir.pipeline import optimize
from mlc.ir.text import parse_graph

GOLDEN = Path(__file__).parent / "golden"


def _fused(text):
    g, _ = optimize(parse_graph(text), verify_each=True)
    return g


def _groups(g):
    return {grp.family: list(grp.members) for grp in g.groups}


# ---- the examples ---------------------------------------------------------------------
@pytest.mark.parametrize("name", EXAMPLES)
def test_fused_kernel_count_is_lower_than_unfused(name):
    g, _ = optimize(example_graph(name))
    unfused = sum(1 for op in g.ops if op.opcode != "const")
    assert len(kernels(g)) < unfused
    assert f"{unfused} kernels unfused -> {len(kernels(g))} fused" in fusion_report(g)


@pytest.mark.parametrize("name", EXAMPLES)
def test_example_families(name):
    g, _ = optimize(example_graph(name))
    fams = [grp.family for grp in g.groups]
    text = any(op.opcode == "embed_bag" for op in g.ops)  # one hidden layer by default with text
    # the hidden layers (bias, relu, dropout) and the head (bias)
    assert fams.count("matmul_epilogue") == (2 if text else 3)
    if any(op.opcode in ("one_hot", "gather") for op in g.ops):
        assert "gather" in fams  # one-hot codes concatenated with the numbers: one row-assembly kernel
    assert fams[-1] == "adamw_update" and g.groups[-1].members == tuple(g.params)
    layer = [grp for grp in g.groups if grp.family == "matmul_epilogue"][0]
    assert [next(op.opcode for op in g.ops if op.result == m) for m in layer.members] == \
        ["matmul", "add", "relu", "dropout"]


def test_softmax_and_its_cross_entropy_share_one_row_kernel():
    g, _ = optimize(example_graph("penguins"))
    row = [grp for grp in g.groups if grp.family == "rowwise"][0]
    assert [next(op.opcode for op in g.ops if op.result == m) for m in row.members] == ["softmax", "softmax_ce", "mean"]


@pytest.mark.parametrize("name", EXAMPLES)
def test_fused_graphs_compute_the_same_values(name):
    g = example_graph(name)
    fused, _ = optimize(g)
    params, inputs = random_values(g, batch=6)
    want = run_graph(g, params, inputs)
    assert_close(run_graph(fused, params, inputs), want)
    assert_close(run_kernels(fused, params, inputs), want)  # one kernel at a time: groups are self-contained
    out = jax_backend.build(fused, list(fused.outputs))(params, inputs)
    assert_close({k: np.asarray(v) for k, v in out.items()}, want)


@pytest.mark.parametrize("name", EXAMPLES)
def test_every_edge_between_kernels_has_a_reason(name):
    g, _ = optimize(example_graph(name))
    _assert_reasons(g)


def _assert_reasons(g):
    p = plan(g)
    where = {m: grp.name for grp in g.groups for m in grp.members}
    ops = {op.result: op for op in g.ops if op.opcode != "const"}
    for op in ops.values():
        for a in op.args:
            if a in ops and where.get(a, a) != where.get(op.result, op.result):
                lines = [r for r in p.refusals if r.startswith(f"%{a} -> %{op.result} refused: ")]
                assert len(lines) == 1 and len(lines[0]) > 40, (a, op.result, p.refusals)
    assert all("\n" not in r and "None" not in r for r in p.refusals)


def test_golden_fusion_report():
    g, _ = optimize(example_graph("titanic"))
    text = fusion_report(g)
    path = GOLDEN / "titanic" / "fusion_report.txt"
    if os.environ.get("MLC_UPDATE_GOLDEN") == "1":
        path.write_text(text)
    assert text == path.read_text()


# ---- legality: what may fuse, and why not -------------------------------------------------
def test_a_producer_with_consumers_in_two_kernels_is_not_fused():
    g = _fused("""graph t {
  input %x : f32[B,4]
  param %w : f32[4,3] = glorot()
  %7 = tanh(%x) : f32[B,4]
  %9 = relu(%7) : f32[B,4]
  %12 = matmul(%7, %w) : f32[B,3]
  output o1 = %9
  output o2 = %12
}
""")
    report = fusion_report(g)
    assert "%7 -> %9 refused: %7 has 2 consumers (%9, %12); fusing would recompute it" in report
    assert g.groups[:-1] == [] and len(kernels(g)) == 3


def test_an_elementwise_input_of_the_epilogue_joins_the_matmul_kernel():
    g = _fused("""graph t {
  input %x : f32[B,4]
  param %w : f32[4,4] = glorot()
  %7 = tanh(%x) : f32[B,4]
  %9 = relu(%7) : f32[B,4]
  %12 = matmul(%7, %w) : f32[B,4]
  %13 = add(%9, %12) : f32[B,4]
  output o = %13
}
""")
    assert _groups(g)["matmul_epilogue"] == ["9", "12", "13"]  # relu computed per output element
    assert "%7 -> %12 refused: %12 is a matmul" in fusion_report(g)


def test_a_value_read_twice_within_one_kernel_is_fused():
    g = _fused("""graph t {
  input %x : f32[B,4]
  %a = tanh(%x) : f32[B,4]
  %b = relu(%a) : f32[B,4]
  %c = sigmoid(%a) : f32[B,4]
  %d = mul(%b, %c) : f32[B,4]
  output o = %d
}
""")
    assert _groups(g) == {"elementwise": ["a", "b", "c", "d"]}
    assert "refused fusions: none" in fusion_report(g)


def test_layernorm_gather_and_reduction_families():
    g = _fused("""graph t {
  input %x : f32[B,4]
  input %idx : i32[B]
  param %e : f32[10,3] = glorot()
  param %w : f32[7,5] = glorot()
  param %b : f32[5] = zeros()
  param %g : f32[5] = ones()
  param %beta : f32[5] = zeros()
  %0 = gather(%e, %idx) : f32[B,3]
  %1 = scale(%0) {factor=2.0} : f32[B,3]
  %2 = concat(%x, %1) {axis=1} : f32[B,7]
  %3 = matmul(%2, %w) : f32[B,5]
  %4 = add(%3, %b) : f32[B,5]
  %5 = layernorm(%4, %g, %beta) {eps=1e-05} : f32[B,5]
  %6 = gelu(%5) : f32[B,5]
  %7 = dropout(%6) {rate=0.1} : f32[B,5]
  %8 = mean(%7) : f32[]
  %9 = scale(%8) {factor=3.0} : f32[]
  output o = %9
}
""")
    assert _groups(g) == {"gather": ["0", "1", "2"], "matmul_epilogue": ["3", "4"], "rowwise": ["5", "6", "7", "8"],
                          "adamw_update": ["e", "w", "b", "g", "beta"]}
    report = fusion_report(g)
    assert "%4 -> %5 refused: %5 (layernorm) is not elementwise; a matmul epilogue" in report
    assert "%8 -> %9 refused: %8 (mean) is a full reduction" in report
    assert "10 kernels unfused -> 4 fused" in report


def test_two_matmuls_never_share_a_kernel_and_no_prologue():
    g = _fused("""graph t {
  input %x : f32[B,4]
  param %w : f32[4,4] = glorot()
  %a = matmul(%x, %w) : f32[B,4]
  %b = matmul(%a, %w) : f32[B,4]
  output o = %b
}
""")
    assert "%a -> %b refused: %b is a matmul; it reads %a once per output tile" in fusion_report(g)
    assert len(kernels(g)) == 2


def test_broadcast_producers_are_not_recomputed_per_row():
    g = _fused("""graph t {
  input %x : f32[B,4]
  param %w : f32[4] = zeros()
  %a = tanh(%w) : f32[4]
  %b = add(%x, %a) : f32[B,4]
  output o = %b
}
""")
    assert "%a -> %b refused: %a (tanh) walks rows [4] but %b (add) walks rows [B]" in fusion_report(g)


def test_sibling_fusion_that_would_close_a_cycle_is_refused():
    g = _fused("""graph t {
  input %x : f32[B,4]
  param %w : f32[4,4] = glorot()
  param %w2 : f32[4,3] = glorot()
  %p = tanh(%x) : f32[B,4]
  %m = matmul(%p, %w) : f32[B,4]
  %r = matmul(%m, %w2) : f32[B,3]
  %q = add(%x, %m) : f32[B,4]
  output o1 = %q
  output o2 = %r
}
""")
    report = fusion_report(g)
    assert "%p + %q (both read %x) refused: another kernel lies on a path between them" in report
    params, inputs = random_values(g)
    assert_close(run_kernels(g, params, inputs), run_graph(g, params, inputs))


def test_cost_model_caps_kernel_size():
    b = Builder("long")
    v = b.input("x", TensorType("f32", ("B", 8)))
    for i in range(cost.MAX_OPS + 5):
        v = b.op("tanh" if i % 2 else "sigmoid", v)
    b.output("o", v)
    g, _ = optimize(b.graph)
    sizes = sorted(len(grp.members) for grp in g.groups)
    assert sizes[-1] == cost.MAX_OPS and sum(sizes) == cost.MAX_OPS + 5
    assert re.search(rf"%\d+ -> %\d+ refused: the fused kernel would have \d+ ops \(limit {cost.MAX_OPS}\)",
                     fusion_report(g))


def test_cost_benefit_counts_writes_and_reads():
    t = TensorType("f32", ("B", 256))
    assert cost.vertical(t, False).bytes_saved == 2 * cost.NOMINAL_BATCH * 256 * 4
    assert cost.vertical(t, True).bytes_saved == cost.NOMINAL_BATCH * 256 * 4  # a graph output is still written
    assert cost.sibling(t).bytes_saved == cost.NOMINAL_BATCH * 256 * 4


def test_fusion_is_idempotent_and_groups_verify():
    g, _ = optimize(example_graph("credit"))
    verify(g)
    again, _ = optimize(g)
    assert print_graph(again) == print_graph(g)


def test_no_params_no_optimizer_group():
    g = _fused("graph t {\n  input %x : f32[B,2]\n  %a = relu(%x) : f32[B,2]\n  output o = %a\n}\n")
    assert g.groups == [] and "optimizer" not in fusion_report(g)
    assert "1 kernels unfused -> 1 fused" in fusion_report(g)


def test_explain_fusion_reports_on_the_optimized_graph():
    from mlc.ir.pipeline import explain_fusion
    text = explain_fusion(example_graph("titanic"), optimizer="sgd")
    assert text.startswith("fusion of graph model: 15 kernels unfused -> 5 fused")
    assert "opt sgd_update:" in text
