"""Fused groups as the `mlc_fused` JAX primitive (mlc/backends/triton/primitive.py).

One jitted training step, built from primitives wrapped in `jax.custom_vjp`:
- on cpu with the default lowering (each group's jax.numpy reference) it equals
  the XLA step: loss, predictions and every parameter's gradient;
- with launcher="interpret" the same step runs the generated kernels themselves
  (jax-triton's argument order, through the wrapper kernels, under Triton's
  interpreter via pure_callback): it still equals `jax.grad` of the XLA step, so
  the launch plan a GPU follows (which buffer, which kernel, the fused loss
  gradient, the matmul backward) is checked here, without a GPU;
- lowered for cuda (jax.export, compute capability 90), every group becomes a
  `triton_kernel_call` custom call.
Dropout rates are set to 0 where values are compared: the kernels and JAX draw
different random streams.
"""
import os

os.environ.setdefault("TRITON_DEFAULT_FP_FUSION", "1")  # Triton 3.9 warns when it is implicit

import json  # noqa: E402
import re  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402

pytest.importorskip("triton")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
from helpers_frontend import mlc  # noqa: E402
from helpers_ir import ROOT, random_values, training_graph  # noqa: E402

from mlc.backends.jax_backend import build as xla_build  # noqa: E402
from mlc.backends.triton import jax_call, primitive  # noqa: E402

F32_SUM = dict(rtol=2e-5, atol=2e-5)
ROWS = 37  # not a multiple of any block size

def _graph(example, tmp_path, dropout=0.0):
    return training_graph(example, tmp_path, dropout)


def _values(g, rows=ROWS):
    params, inputs = random_values(g, seed=0, batch=rows)
    return ({k: jnp.asarray(v) for k, v in params.items()}, {k: jnp.asarray(v) for k, v in inputs.items()})


def _step(fn):
    """A jitted (loss, grads, every output) of one train-mode step."""
    def step(params, inputs, key):
        def loss(p):
            out = fn(p, inputs, key, True)
            return out["loss"], out
        (value, out), grads = jax.value_and_grad(loss, has_aux=True)(params)
        return value, grads, out
    return jax.jit(step)


def _assert_same(got, want, tol, what):
    np.testing.assert_allclose(np.asarray(got), np.asarray(want), err_msg=what, **tol)


def _compare(g, launcher, tol):
    params, inputs = _values(g)
    key = jax.random.PRNGKey(3)
    want_loss, want_grads, want_out = _step(xla_build(g, list(g.outputs)))(params, inputs, key)
    loss, grads, out = _step(primitive.build(g, list(g.outputs), launcher=launcher))(params, inputs, key)
    _assert_same(loss, want_loss, tol, "loss")
    for name in g.outputs:
        _assert_same(out[name], want_out[name], tol, name)
    for k in g.params:
        _assert_same(grads[k], want_grads[k], tol, f"d {k}")


@pytest.mark.parametrize("example", ["titanic", "credit", "diamonds", "penguins", "credit_block"])
def test_fused_step_on_cpu_equals_the_xla_step(example, tmp_path):
    """launcher='triton' on cpu: each group lowers to its jax.numpy reference, wrapped in
    the custom VJP (fwd, bwd, and the fused loss gradient scaled by the cotangent)."""
    _compare(_graph(example, tmp_path), "triton", dict(rtol=1e-5, atol=1e-6))


@pytest.mark.parametrize("example", ["penguins", "titanic", "embed_layernorm"])
def test_generated_kernels_run_a_jitted_step_that_equals_jax_grad(example, tmp_path):
    """launcher='interpret': every forward, the fused loss gradient, the epilogue and
    matmul backwards, layer norm and the embedding scatter-add run as generated
    kernels inside one jitted step, and give JAX's loss, outputs and gradients."""
    _compare(_graph(example, tmp_path), "interpret", F32_SUM)


def test_every_group_is_one_primitive_and_the_loss_gradient_is_fused(tmp_path):
    g = _graph("titanic", tmp_path, dropout=0.1)
    _, items = primitive.plans(g)
    groups = [it for it in items if isinstance(it, primitive.GroupPlan)]
    assert len(groups) == len(items), "every group of titanic has generated kernels"
    params, inputs = _values(g)
    fn = primitive.build(g, ["loss"])
    jaxpr = str(jax.make_jaxpr(jax.grad(lambda p: fn(p, inputs, jax.random.PRNGKey(0), True)["loss"]))(params))
    stages = re.findall(r"mlc_fused\[.*?stage=(\w+)", jaxpr, flags=re.S)
    loss_groups = [p for p in groups if p.fwd_bwd is not None]
    assert len(loss_groups) == 1
    # the loss group runs once (loss and gradient in one pass); every other group a fwd and a bwd
    assert stages.count("fwd_bwd") == 1
    assert stages.count("fwd") == len(groups) - 1
    assert 0 < stages.count("bwd") <= len(groups) - 1
    assert "dot_general" not in jaxpr.split("mlc_fused")[0], "no matmul outside the primitives"


def test_a_cotangent_on_a_prediction_runs_the_loss_groups_backward(tmp_path):
    """The fused loss gradient covers the loss only; differentiating another output of
    the loss group (the prediction) must go through its backward kernel."""
    g = _graph("titanic", tmp_path)
    params, inputs = _values(g)
    want = jax.grad(lambda p: jnp.sum(xla_build(g, ["pred.survived", "loss"])(p, inputs)["pred.survived"] ** 2) +
                    2.5 * xla_build(g, ["loss"])(p, inputs)["loss"])(params)
    fn = primitive.build(g, ["pred.survived", "loss"], launcher="interpret")

    def f(p):
        out = fn(p, inputs, jax.random.PRNGKey(0), True)
        return jnp.sum(out["pred.survived"] ** 2) + 2.5 * out["loss"]  # the fused gradient scales by 2.5
    got = jax.jit(jax.grad(f))(params)
    for k in g.params:
        _assert_same(got[k], want[k], F32_SUM, f"d {k}")


def test_dropout_is_live_and_follows_the_key(tmp_path):
    g = _graph("titanic", tmp_path, dropout=0.5)
    params, inputs = _values(g)
    step = _step(primitive.build(g, list(g.outputs), launcher="interpret"))
    a, ga, _ = step(params, inputs, jax.random.PRNGKey(0))
    b, _, _ = step(params, inputs, jax.random.PRNGKey(1))
    a2, ga2, _ = step(params, inputs, jax.random.PRNGKey(0))
    assert float(a) != float(b)
    assert float(a) == float(a2)
    for k in g.params:
        np.testing.assert_array_equal(np.asarray(ga[k]), np.asarray(ga2[k]))
    # eval mode: no dropout, so it equals the XLA forward
    ev = primitive.build(g, list(g.outputs), launcher="interpret")(params, inputs)
    want = xla_build(g, list(g.outputs))(params, inputs)
    _assert_same(ev["loss"], want["loss"], F32_SUM, "eval loss")


def test_wrapper_kernels_compile_for_sm_90(kernel_cache, tmp_path):
    """The jax-triton-order wrappers (what the cuda lowering launches) compile ahead of time."""
    from mlc.backends.triton import aot, generate

    gen = generate(_graph("embed_layernorm", tmp_path, dropout=0.1))
    for spec in gen.specs:
        if spec.variant == "update":
            continue
        c = aot.compile_spec(jax_call.jax_call_spec(spec), "sm_90")
        assert f".entry {spec.name}_jax" in c.ptx and c.cubin


def test_lowered_for_cuda_every_group_is_a_triton_kernel_call(tmp_path, cuda_kernel_calls):
    from jax import export

    g = _graph("titanic", tmp_path, dropout=0.1)
    params, inputs = _values(g, rows=64)
    fn = primitive.build(g, ["loss"], launcher="triton", compute_capability=90)
    step = jax.jit(lambda p, i, k: jax.value_and_grad(lambda p: fn(p, i, k, True)["loss"])(p))
    exp = export.export(step, platforms=["cuda"],
                        disabled_checks=[export.DisabledSafetyCheck.custom_call("triton_kernel_call")])(
        params, inputs, jax.random.PRNGKey(0))
    text = exp.mlir_module()
    calls = text.count("stablehlo.custom_call @triton_kernel_call")
    # the loss and gradient only (no optimizer here):
    # 5 forwards (the loss one fused with its gradient) + 3 epilogue backwards + 3 dW + 2 dX
    # (the first layer's dX feeds no parameter: dead, removed)
    assert calls == 13, calls
    assert "dot_general" not in text, "every matmul is a Triton kernel"
    assert exp.platforms == ("cuda",)


OPT = {"optimizer": {"name": "adamw", "lr": 3e-3, "b1": 0.9, "b2": 0.999, "weight_decay": 0.1, "momentum": None},
       "schedule": {"name": "cosine", "warmup": 0.2}, "grad_clip": 0.05}


@pytest.mark.parametrize("launcher", ["triton", "interpret"])
def test_fused_adamw_takes_optax_steps_on_optax_state(launcher, tmp_path):
    """mlc_adamw (clip folded into grad_scale, warmup-cosine learning rate, decay on
    weight matrices only) against make_optimizer's optax chain, four steps, same state."""
    import optax

    from mlc.runtime.train import fused_update, make_optimizer

    g = _graph("embed_layernorm", tmp_path)
    params, _ = _values(g)
    opt, fused = make_optimizer(OPT, 10), fused_update(OPT, 10, g, launcher=launcher)
    layout = fused.plan.layout  # weight matrices decay and come first; the embedding table does not
    assert layout.order[:3] == ["combiner.0.w", "combiner.1.w", "head.species.w"]
    assert layout.n_decay == 40 * 24 + 24 * 16 + 16 * 3 <= layout.offsets["embed.island"]

    @jax.jit
    def with_optax(p, s, grads):
        updates, s = opt.update(grads, s, p)
        return optax.apply_updates(p, updates), s

    p1 = p2 = params
    s1 = s2 = opt.init(params)
    rng = np.random.default_rng(0)
    for _ in range(4):
        grads = {k: jnp.asarray(rng.normal(size=v.shape).astype(np.float32)) for k, v in params.items()}
        p1, s1 = with_optax(p1, s1, grads)
        p2, s2 = jax.jit(fused.update)(grads, s2, p2)
    for k in params:
        _assert_same(p2[k], p1[k], dict(rtol=1e-6, atol=1e-6), k)
    assert jax.tree_util.tree_structure(s1) == jax.tree_util.tree_structure(s2)
    for a, b in zip(jax.tree_util.tree_leaves(s1), jax.tree_util.tree_leaves(s2)):
        _assert_same(b, a, dict(rtol=1e-6, atol=1e-9), "optimizer state")


def test_without_the_serializer_the_gpu_artifact_says_why(tmp_path, monkeypatch):
    """No CUDA jaxlib and no unpacked plugin: the cuda train_step stays XLA and the manifest says why."""
    from mlc.export import kernel_steps

    monkeypatch.setattr(jax_call, "cuda_kernel_calls", lambda: "no serializer here")
    programs = {"train_step": {"call": "train_step(...)"}}
    logs = []
    kernel_steps(_graph("titanic", tmp_path), ("sm_90",), None, None, {}, programs, logs.append)
    assert programs["train_step"]["kernel_calls"] == {"embedded": False, "why": "no serializer here"}
    assert "no serializer here" in logs[0]


def test_mlc_run_with_triton_kernels_on_cpu(tmp_path):
    r = mlc(tmp_path, "run", str(ROOT / "examples" / "penguins.dml"), "--out", str(tmp_path / "run"),
            "--kernels", "triton", timeout=600)
    assert r.returncode == 0, r.stderr
    assert "each fused group runs its jax.numpy reference here" in r.stderr
    report = json.loads((tmp_path / "run" / "report.json").read_text())
    assert report["training"]["kernels"] == "triton"
    assert report["metrics"]["test"]["species"]["accuracy"] > 0.9
