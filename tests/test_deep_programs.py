"""Deep programs (issue 10, items 11 and 18).

Nesting past the documented limits (docs/language.md, "Lexical rules") is a located
diagnostic, never a RecursionError; everything up to the limits checks and lowers with
stack to spare. A block of many identical layers compiles in time linear in its depth:
the back end traces the repeated layers once, as a `lax.scan`, with the same values.
"""
from __future__ import annotations

import shutil
import sys
from contextlib import contextmanager
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mlc.backends import jax_backend
from mlc.compile import frontend
from mlc.diagnostics import MlcError
from mlc.grammar.parse import MAX_EXPR_NESTING, MAX_VALUE_NESTING, parse
from mlc.ir.blocks import lower_block
from mlc.ir.graph import Builder, TensorType, live_ops
from mlc.ir.lower import lower
from mlc.ir.pipeline import optimize

ROOT = Path(__file__).resolve().parents[1]
HEAD = 'data "data/titanic.csv" split 80/10/10 seed 7\ninput sex : binary\ninput age : number\noutput survived : binary\n'


def block(expr: str, assigns: str = "") -> str:
    return HEAD + "block b(x) {\n" + assigns + "  return " + expr + "\n}\ncombiner b()\n"


def error_of(source: str) -> tuple[str, str]:
    """(first line of the rendered diagnostic, its hint line)."""
    with pytest.raises(MlcError) as e:
        parse(source, "deep.dml")
    lines = e.value.render().splitlines()
    return lines[0], next(line for line in lines if line.startswith("  hint:"))


# ---- item 11: nesting limits ---------------------------------------------------------
def test_lists_nested_500_deep_are_a_diagnostic_at_the_first_list_past_the_limit():
    line = "train { x = " + "[" * 500 + "1" + "]" * 500 + " }"
    first, hint = error_of(HEAD + line + "\n")
    col = line.index("[") + MAX_VALUE_NESTING + 1  # the 33rd `[`
    assert first == f"deep.dml:5:{col}: error: this value nests more than 32 levels of lists and calls"
    assert "at most 32" in hint


def test_option_calls_nested_250_deep_are_a_diagnostic_at_the_call_past_the_limit():
    value = "f(a = " * 250 + "1" + ")" * 250
    first, _ = error_of(HEAD + "train { optimizer = " + value + " }\n")
    col = len("train { optimizer = ") + len("f(a = ") * MAX_VALUE_NESTING + 1
    assert first == f"deep.dml:5:{col}: error: this value nests more than 32 levels of lists and calls"


def test_500_nested_calls_in_a_block_are_a_diagnostic_with_a_hint():
    first, hint = error_of(block("relu(" * 500 + "x" + ")" * 500))
    col = len("  return ") + len("relu(") * MAX_EXPR_NESTING + 1
    assert first == f"deep.dml:6:{col}: error: this expression nests more than 100 levels deep"
    assert "give inner parts a name" in hint


def test_a_500_term_sum_is_a_diagnostic_that_says_to_sum_in_parts():
    first, hint = error_of(block("x" + " + x" * 499))
    assert first == "deep.dml:6:10: error: this expression nests more than 100 levels deep"
    assert "sum the terms in parts" in hint


def test_500_unary_minus_are_a_diagnostic():
    first, _ = error_of(block("-" * 500 + "x"))
    assert first == f"deep.dml:6:{len('  return ') + MAX_EXPR_NESTING + 1}: error: this expression nests more than 100 levels deep"


def test_slice_conditions_have_the_expression_limit():
    if "slice_stmt" not in (ROOT / "grammar" / "dml.lark").read_text():
        pytest.skip("no slices in this grammar")
    first, hint = error_of(HEAD + "slice s = " + "not " * 150 + "age > 3\n")
    assert first == f"deep.dml:5:{len('slice s = ') + 4 * MAX_EXPR_NESTING + 1}: error: this condition nests more than 100 levels deep"
    assert "in [...]" in hint


def test_parentheses_alone_do_not_count():
    parse(block("(" * 500 + "x" + ")" * 500))


@contextmanager
def stack_budget(frames: int):
    """Python's recursion limit set to the current depth + `frames`."""
    depth, f = 0, sys._getframe()
    while f is not None:
        depth, f = depth + 1, f.f_back
    old = sys.getrecursionlimit()
    sys.setrecursionlimit(depth + frames)
    try:
        yield
    finally:
        sys.setrecursionlimit(old)


@pytest.fixture
def titanic(tmp_path):
    shutil.copytree(ROOT / "examples" / "data", tmp_path / "data", ignore=shutil.ignore_patterns("[!t]*"))
    return tmp_path


def test_programs_at_the_limits_check_lower_and_optimize_with_stack_to_spare(titanic):
    calls = "relu(" * (MAX_EXPR_NESTING - 1) + "dense(x, 4)" + ")" * (MAX_EXPR_NESTING - 1)
    terms = "h" + " + h" * MAX_EXPR_NESTING  # 100 operators
    program = block(terms, f"  h = {calls}\n")
    path = titanic / "deep.dml"
    path.write_text(program)
    with stack_budget(600):  # well below Python's default 1000, above what pytest and the CLI use
        fe = frontend(path)
        graph, _ = optimize(lower(fe.resolved, fe.state))
    assert sum(op.opcode == "relu" for op in graph.ops) == MAX_EXPR_NESTING - 1


def test_values_at_the_limit_are_checked_cleanly(titanic):
    deep = "[" * MAX_VALUE_NESTING + "64" + "]" * MAX_VALUE_NESTING
    path = titanic / "deep.dml"
    path.write_text(HEAD + f"combiner concat {{ layers = {deep} }}\n")
    with stack_budget(600), pytest.raises(MlcError) as e:
        frontend(path)
    assert e.value.render().startswith(f"{path}:5:")


# ---- item 18: repeated layers are scanned ----------------------------------------------
def residual_graph(depth: int, layer: str = "h + relu(dense(layernorm(h), width))", width: int = 8):
    b = Builder("deep")
    x = b.input("x", TensorType("f32", ("B", 4)))
    text = ("block deep(x, width: int = 8) {\n  h = dense(x, width)\n"
            + f"  h = {layer}\n" * depth + "  return h\n}\n")
    out = lower_block(b, text, {"width": width}, x)
    y = b.input("y", TensorType("f32", ("B",)))
    b.output("pred", out)
    b.output("loss", b.op("mean", b.op("squared_error", b.op("row_sum", out), y)))
    return b.graph


def loss_and_grads(graph, *, unrolled: bool, monkeypatch, train: bool = True):
    if unrolled:
        monkeypatch.setattr(jax_backend, "MIN_REPEATS", 10**9)
    try:
        fn = jax_backend.build(graph, ["loss", "pred"])
    finally:
        monkeypatch.undo()
    params = jax_backend.init_params(graph, jax.random.PRNGKey(0))
    rng = np.random.default_rng(0)
    data = {"x": jnp.asarray(rng.normal(size=(16, 4)), jnp.float32), "y": jnp.asarray(rng.normal(size=16), jnp.float32)}

    def loss(p):
        out = fn(p, data, jax.random.PRNGKey(5), train)
        return out["loss"], out["pred"]

    (value, pred), grads = jax.jit(jax.value_and_grad(loss, has_aux=True))(params)
    return float(value), np.asarray(pred), {k: np.asarray(v) for k, v in grads.items()}


def test_a_residual_stack_is_found_as_one_run():
    g = residual_graph(12)
    runs = jax_backend.find_runs(live_ops(g, ["loss"]), g.params, [g.outputs["loss"]])
    assert [(r.period, r.count) for r in runs] == [(5, 12)]  # layernorm, matmul, add, relu, add


@pytest.mark.parametrize("layer", [
    "h + relu(dense(layernorm(h), width))",
    "h + dropout(gelu(dense(layernorm(h), width)), 0.3)",
    "layernorm(h + dense(x, width)) * 0.5 + h",  # every layer also reads the block's input
])
def test_scanned_layers_give_the_same_loss_predictions_and_gradients(layer, monkeypatch):
    g = residual_graph(10, layer)
    runs = jax_backend.find_runs(live_ops(g, ["loss", "pred"]), g.params, [g.outputs["loss"], g.outputs["pred"]])
    assert runs and sum(r.count for r in runs) >= 9
    scanned = loss_and_grads(g, unrolled=False, monkeypatch=monkeypatch)
    unrolled = loss_and_grads(g, unrolled=True, monkeypatch=monkeypatch)
    np.testing.assert_allclose(scanned[0], unrolled[0], rtol=1e-6)
    np.testing.assert_allclose(scanned[1], unrolled[1], rtol=1e-5, atol=1e-6)
    assert scanned[2].keys() == unrolled[2].keys()
    for k in scanned[2]:
        np.testing.assert_allclose(scanned[2][k], unrolled[2][k], rtol=1e-4, atol=1e-6, err_msg=k)


def test_layers_read_from_outside_the_next_layer_are_not_scanned():
    # every layer's value is also an output: nothing may be hidden inside a scan
    g = residual_graph(10)
    ops = live_ops(g, ["loss"])
    mids = [op.result for op in ops if op.opcode == "add"]
    assert jax_backend.find_runs(ops, g.params, [g.outputs["loss"]] + mids) == []


def test_short_stacks_are_traced_as_before():
    g = residual_graph(jax_backend.MIN_REPEATS - 1)
    assert jax_backend.find_runs(live_ops(g, ["loss"]), g.params, [g.outputs["loss"]]) == []


def test_compiled_training_step_grows_linearly_with_depth():
    """Unrolled, XLA's fusion copies the residual chain (forward and gradient) into every
    layer's kernels: the compiled step of 20 layers was 2.6x the size of 10 layers' (40: 7.9x).
    Scanned, it grows by a fixed amount per layer (the stacking of parameters)."""
    sizes = {}
    for depth in (10, 20):
        g = residual_graph(depth)
        fn = jax_backend.build(g, ["loss"])
        params = jax_backend.init_params(g, jax.random.PRNGKey(0))
        step = jax.jit(jax.grad(lambda p, x, y: fn(p, {"x": x, "y": y})["loss"]))
        sizes[depth] = step.lower(params, jnp.ones((4, 4)), jnp.ones(4)).compile().as_text().count("\n")
    assert sizes[20] < 1.6 * sizes[10], sizes


@pytest.mark.parametrize("name,clip", [("adamw", 1.0), ("adamw", 0.0), ("adam", 1.0), ("sgd", 0.5)])
def test_flat_optimizer_takes_the_same_steps_as_per_tensor(monkeypatch, name, clip):
    """Deep programs (FLAT_OPTIMIZER_MIN_TENSORS tensors or more) update on one flat vector so
    that compile time stays linear in depth; the steps must be those of the per-tensor chain,
    weight decay on matrices only included."""
    import jax
    import jax.numpy as jnp
    import numpy as np
    import optax

    from mlc.runtime import train as T
    cfg = {"optimizer": {"name": name, "lr": 0.01, "b1": 0.9, "b2": 0.999, "weight_decay": 0.1, "momentum": 0.9},
           "schedule": {"name": "cosine", "warmup": 0.1}, "grad_clip": clip}
    rng = np.random.default_rng(0)
    params = {f"layer.{i}.{k}": jnp.asarray(rng.normal(size=s).astype(np.float32))
              for i in range(20) for k, s in (("w", (6, 6)), ("b", (6,)), ("g", (6,)))}
    params["embed.x"] = jnp.asarray(rng.normal(size=(5, 6)).astype(np.float32))
    assert len(params) >= T.FLAT_OPTIMIZER_MIN_TENSORS - 3

    def steps(threshold):
        monkeypatch.setattr(T, "FLAT_OPTIMIZER_MIN_TENSORS", threshold)
        opt = T.make_optimizer(cfg, 10)
        p, s = params, opt.init(params)
        g_rng = np.random.default_rng(1)
        for _ in range(4):
            grads = {k: jnp.asarray(g_rng.normal(size=v.shape).astype(np.float32)) for k, v in p.items()}
            updates, s = jax.jit(opt.update)(grads, s, p)
            p = optax.apply_updates(p, updates)
        return p, s
    flat, flat_state = steps(1)
    per_tensor, per_state = steps(10**9)
    assert len(jax.tree.leaves(flat_state)) < len(jax.tree.leaves(per_state))  # the flat path ran
    for k in params:
        np.testing.assert_allclose(flat[k], per_tensor[k], rtol=1e-5, atol=1e-6, err_msg=k)
