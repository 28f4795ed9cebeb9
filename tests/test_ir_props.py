"""Property tests: on random well-typed graphs (helpers_ir.graphs), every pass and the
whole pipeline keep the reference interpreter's results, keep the graph valid and
printable, and fusion produces legal, self-contained kernel groups with a reason
for every fusion it leaves out."""
import os

import numpy as np
from helpers_ir import assert_close, graphs, random_values
from hypothesis import HealthCheck, given, settings

from mlc.fusion import kernels, legality, plan, run_kernels
from mlc.ir.graph import print_graph, verify
from mlc.ir.interp import run_all, run_graph
from mlc.ir.pipeline import PASSES, get_pass, optimize
from mlc.ir.text import parse_graph

# MLC_HYPOTHESIS_NO_DB=1: no example database, so a run does not replay failures found
# earlier (for mutation checks: break a pass on purpose, then run this file).
SETTINGS = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow],
                    **({"database": None} if os.environ.get("MLC_HYPOTHESIS_NO_DB") == "1" else {}))


@SETTINGS
@given(graphs())
def test_generated_graphs_are_well_typed_and_print_back(g):
    verify(g)
    assert parse_graph(print_graph(g)) == g


@SETTINGS
@given(graphs())
def test_every_pass_keeps_results(g):
    params, inputs = random_values(g, batch=4)
    want = run_graph(g, params, inputs)
    cur = g
    for name in PASSES:
        before = print_graph(cur)
        out = get_pass(name)(cur)
        assert print_graph(cur) == before, f"pass {name} changed its input graph"
        verify(out)
        assert parse_graph(print_graph(out)) == out, f"IR after {name} does not print back"
        assert_close(run_graph(out, params, inputs), want, what=f"after pass {name}:")
        cur = out


@SETTINGS
@given(graphs())
def test_pipeline_keeps_results_in_train_mode_with_fixed_masks(g):
    params, inputs = random_values(g, batch=4)
    env = run_all(g, params, inputs)
    rng = np.random.default_rng(0)
    masks = {op.result: rng.random(env[op.result].shape) > op.attrs["rate"]
             for op in g.ops if op.opcode == "dropout"}
    out, _ = optimize(g, verify_each=True)
    assert_close(run_graph(out, params, inputs, train=True, masks=masks),
                 run_graph(g, params, inputs, train=True, masks=masks))


@SETTINGS
@given(graphs())
def test_fusion_gives_legal_self_contained_kernels(g):
    fused, _ = optimize(g)
    params, inputs = random_values(g, batch=4)
    assert_close(run_kernels(fused, params, inputs), run_graph(g, params, inputs), what="kernel by kernel:")

    ops = {op.result: op for op in fused.ops if op.opcode != "const"}
    users = {}
    for op in ops.values():
        for a in dict.fromkeys(op.args):
            users.setdefault(a, []).append(op.result)
    types = {**fused.inputs, **{n: p.type for n, p in fused.params.items()}, **{op.result: op.type for op in fused.ops}}
    for grp in fused.groups:
        if grp.family.endswith("_update"):
            assert set(grp.members) == set(fused.params)
            continue
        err = legality.group_error(set(grp.members), ops, users, set(fused.outputs.values()), types)
        assert err is None, f"group {grp.name} is illegal: {err}"
        assert grp.family == legality.family([ops[m] for m in grp.members])

    ks = kernels(fused)
    assert len(ks) <= len(ops)
    where = {op.result: k.name for k in ks for op in k.ops}
    refusals = plan(fused).refusals
    for op in ops.values():
        for a in op.args:
            if a in ops and where[a] != where[op.result]:
                assert any(r.startswith(f"%{a} -> %{op.result} refused: ") for r in refusals), (a, op.result)
