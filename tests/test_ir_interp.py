"""The numpy reference interpreter against the JAX back end: every op, odd shapes,
the example graphs and random graphs, forward to 1e-5; gradients of the JAX back end
against finite differences of the interpreter run in float64."""
import jax
import numpy as np
import pytest
from helpers_ir import EXAMPLES, assert_close, example_graph, graphs, random_values
from hypothesis import HealthCheck, given, settings

from mlc.backends import jax_backend
from mlc.ir import interp
from mlc.ir.graph import OPS, Builder, IRError, TensorType, live_ops
from mlc.ir.interp import run_graph


def _jax(g, params, inputs, wanted=None, **kw):
    wanted = list(g.outputs) if wanted is None else wanted
    out = jax_backend.build(g, wanted)(params, inputs, **kw)
    return {k: np.asarray(v) for k, v in out.items()}


# ---- one small graph per op ------------------------------------------------------
def _f32(b, name, *shape):
    return b.input(name, TensorType("f32", ("B",) + shape))


def _case(opcode):
    b = Builder(opcode)
    x = _f32(b, "x", 5)
    if opcode in ("relu", "gelu", "silu", "tanh", "sigmoid", "neg", "exp"):
        out = b.op(opcode, x)
    elif opcode == "log":
        out = b.op("log", b.op("exp", x))
    elif opcode == "scale":
        out = b.op("scale", x, factor=0.3)
    elif opcode == "dropout":
        out = b.op("dropout", x, rate=0.25)
    elif opcode in ("add", "sub", "mul"):
        row = b.param("row", (5,), {"kind": "zeros"})
        col = _f32(b, "col", 1)
        out = b.op(opcode, b.op(opcode, x, row), col)
    elif opcode == "softmax":
        out = b.op("softmax", _f32(b, "z", 7))
    elif opcode == "matmul":
        out = b.op("matmul", _f32(b, "z", 3), b.param("w", (3, 5), {"kind": "glorot"}))
    elif opcode == "concat":
        out = b.op("concat", x, _f32(b, "z", 1), _f32(b, "u", 2), axis=1)
    elif opcode == "gather":
        out = b.op("gather", b.param("table", (6, 4), {"kind": "normal", "std": 1.0}),
                   b.input("idx", TensorType("i32", ("B",))))
    elif opcode == "one_hot":
        out = b.op("one_hot", b.input("idx", TensorType("i32", ("B",))), depth=5)
    elif opcode == "layernorm":
        out = b.op("layernorm", x, b.param("g", (5,), {"kind": "ones"}), b.param("bb", (5,), {"kind": "zeros"}), eps=1e-5)
    elif opcode in ("bce_logits", "squared_error", "abs_error", "huber"):
        y = b.input("y_t", TensorType("f32", ("B",)))
        out = b.op(opcode, _f32(b, "p", 1), y, **({"delta": 0.7} if opcode == "huber" else {}))
    elif opcode == "softmax_ce":
        out = b.op("softmax_ce", _f32(b, "z", 4), b.input("y_cls", TensorType("i32", ("B",))), smoothing=0.1)
    elif opcode == "mean":
        out = b.op("mean", x)
    elif opcode in ("row_sum", "row_mean"):
        out = b.op(opcode, x)
    elif opcode == "reshape":
        out = b.op("row_sum", b.op("reshape", _f32(b, "z", 6), shape=[2, 3]))
    elif opcode == "const":
        b.output("i", b.op("const", value=[1, 2], dtype="i32"))
        out = b.op("add", x, b.op("const", value=[0.5, -1.0, 2.0, 0.0, 3.25]))
    elif opcode == "embed_bag":  # both modes; a row of zero weights is an empty bag
        table = b.param("table", (7, 3), {"kind": "normal", "std": 1.0})
        ids, w = b.input("ids", TensorType("i32", ("B", 4))), b.input("w_bag", TensorType("f32", ("B", 4)))
        out = b.op("concat", b.op("embed_bag", table, ids, w, mode="sum"),
                   b.op("embed_bag", table, ids, w, mode="mean"), axis=1)
    elif opcode in ("conv1d", "masked_max", "masked_mean", "attention"):
        seq = b.input("seq", TensorType("f32", ("B", 6, 4)))
        mask = b.input("mask", TensorType("f32", ("B", 6)))
        if opcode == "conv1d":
            h = b.op("conv1d", seq, b.param("w", (3, 4, 5), {"kind": "glorot"}))
        elif opcode == "attention":
            h = b.op("attention", seq, b.op("scale", seq, factor=0.5), seq, mask, heads=2)
        else:
            h = seq
        out = b.op("masked_mean" if opcode != "masked_max" else "masked_max", h, mask)
    elif opcode in ("multi_bce", "vec_squared_error", "vec_abs_error"):
        out = b.op(opcode, _f32(b, "p", 3), _f32(b, "y_t", 3))
    else:
        raise AssertionError(f"no test case for op {opcode}: add one")
    b.output("out", out)
    if opcode == "mean" or b.graph.type_of(out).shape == ():
        b.output("loss", out)
    else:  # a scalar whose gradient reaches every input: mean(out * fixed weights)
        t = b.graph.type_of(out)
        wt = b.input("wt", TensorType("f32", t.shape))
        b.output("loss", b.op("mean", b.op("mul", out, wt)))
    return b.graph


def test_every_op_has_an_interpreter_rule():
    assert set(OPS) - {"dropout", "const"} <= set(interp.IMPLS)
    assert set(OPS) - {"dropout"} <= set(jax_backend.IMPLS)


@pytest.mark.parametrize("batch", [1, 3])
@pytest.mark.parametrize("opcode", sorted(OPS))
def test_each_op_matches_jax(opcode, batch):
    g = _case(opcode)
    params, inputs = random_values(g, seed=batch, batch=batch)
    assert_close(run_graph(g, params, inputs), _jax(g, params, inputs), what=opcode)


def test_gather_and_one_hot_out_of_range_follow_jax():
    b = Builder("idx")
    idx = b.input("idx", TensorType("i32", ("B",)))
    b.output("g", b.op("gather", b.param("t", (3, 2), {"kind": "glorot"}), idx))
    b.output("o", b.op("one_hot", idx, depth=3))
    params = {"t": np.arange(6, dtype=np.float32).reshape(3, 2)}
    inputs = {"idx": np.array([0, -1, -3, 3, -4, 7], np.int32)}
    got, want = run_graph(b.graph, params, inputs), _jax(b.graph, params, inputs)
    assert_close(got, want)
    assert np.isnan(got["g"][3:]).all()


# ---- dropout ------------------------------------------------------------------------
def _jax_masks(g, params, inputs, wanted, key):
    """The keep masks the JAX back end draws in train mode (same keys, same shapes)."""
    env = interp.run_all(g, params, inputs)
    masks = {}
    for i, op in enumerate(live_ops(g, wanted)):
        if op.opcode == "dropout":
            keep = jax.random.bernoulli(jax.random.fold_in(key, i), 1.0 - op.attrs["rate"], env[op.result].shape)
            masks[op.result] = np.asarray(keep)
    return masks


def test_dropout_is_identity_in_eval_mode():
    g = _case("dropout")
    params, inputs = random_values(g)
    assert_close({"out": run_graph(g, params, inputs)["out"]}, {"out": inputs["x"]})


@pytest.mark.parametrize("name", EXAMPLES)
def test_train_mode_with_jax_masks_matches_jax(name):
    g = example_graph(name)
    params, inputs = random_values(g, batch=6)
    wanted = list(g.outputs)
    key = jax.random.PRNGKey(3)
    masks = _jax_masks(g, params, inputs, wanted, key)
    assert masks and any(not m.all() for m in masks.values())
    got = run_graph(g, params, inputs, train=True, masks=masks)
    assert_close(got, _jax(g, params, inputs, key=key, train=True))
    assert not np.allclose(got["loss"], run_graph(g, params, inputs)["loss"])


def test_train_mode_without_a_mask_is_an_error():
    g = _case("dropout")
    params, inputs = random_values(g)
    with pytest.raises(IRError, match="train mode needs a mask"):
        run_graph(g, params, inputs, train=True)


# ---- whole graphs -------------------------------------------------------------------
@pytest.mark.parametrize("name", EXAMPLES)
def test_examples_match_jax_with_initialized_params(name):
    g = example_graph(name)
    params = {k: np.asarray(v) for k, v in jax_backend.init_params(g, jax.random.PRNGKey(0)).items()}
    _, inputs = random_values(g, batch=33)
    assert_close(run_graph(g, params, inputs), _jax(g, params, inputs))


def test_only_the_wanted_outputs_run():
    g = example_graph("titanic")
    params, inputs = random_values(g)
    del inputs["y_survived"]  # a prediction needs no target
    out = run_graph(g, params, inputs, ["pred.survived"])
    assert list(out) == ["pred.survived"] and out["pred.survived"].shape == (5, 1)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(graphs(max_ops=10))
def test_random_graphs_match_jax(g):
    params, inputs = random_values(g, batch=3)
    assert_close(run_graph(g, params, inputs), _jax(g, params, inputs))


# ---- gradients: JAX is the oracle, checked against finite differences ---------------
def _directional_check(g, params, inputs, wrt, seed=0, eps=1e-6, n_dirs=3):
    """<jax.grad(loss), v> against (loss(x + eps v) - loss(x - eps v)) / 2 eps in float64."""
    fn = jax_backend.build(g, ["loss"])
    if wrt == "params":
        grads = jax.grad(lambda p: fn(p, inputs)["loss"])(params)
        base = params
    else:
        # masks select positions (a step function): not differentiated
        names = [n for n, t in g.inputs.items() if t.dtype == "f32" and n != "wt" and not n.startswith("mask")]
        grads = jax.grad(lambda x: fn(params, {**inputs, **x})["loss"])({n: inputs[n] for n in names})
        base = {n: inputs[n] for n in names}
    rng = np.random.default_rng(seed)
    for _ in range(n_dirs):
        v = {k: rng.normal(size=np.shape(a)) for k, a in base.items()}
        shifted = []
        for sign in (1, -1):
            moved = {k: np.asarray(a, np.float64) + sign * eps * v[k] for k, a in base.items()}
            p2, x2 = (moved, inputs) if wrt == "params" else (params, {**inputs, **moved})
            shifted.append(float(run_graph(g, p2, x2, ["loss"], dtype=np.float64)["loss"]))
        fd = (shifted[0] - shifted[1]) / (2 * eps)
        analytic = sum(float(np.sum(np.asarray(grads[k], np.float64) * v[k])) for k in base)
        assert abs(fd - analytic) <= 2e-4 * (1 + abs(fd)), (fd, analytic)


@pytest.mark.parametrize("name", EXAMPLES)
def test_example_gradients_match_finite_differences(name):
    g = example_graph(name)
    params, inputs = random_values(g, batch=7)
    _directional_check(g, params, inputs, "params")


DIFFERENTIABLE = sorted(set(OPS) - {"one_hot", "const", "gather", "dropout"}) + ["gather", "dropout"]


@pytest.mark.parametrize("opcode", DIFFERENTIABLE)
def test_each_op_gradient_matches_finite_differences(opcode):
    g = _case(opcode)
    params, inputs = random_values(g, seed=1, batch=3)
    if g.params:
        _directional_check(g, params, inputs, "params")
    if any(t.dtype == "f32" and n != "wt" for n, t in g.inputs.items()):
        _directional_check(g, params, inputs, "inputs")
