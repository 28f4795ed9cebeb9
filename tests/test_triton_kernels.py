"""Every generated Triton kernel, run under Triton's interpreter on the CPU (numpy
arrays, zero-copy), against the JAX back end: forward outputs and every gradient,
on odd shapes so the row and column masks matter.

Tolerances (max |got - want| <= atol + rtol * |want|):
- float32: rtol = atol = 1e-5 (2e-5 where a matmul or a sum over rows adds
  many terms in another order).
- bfloat16 (inputs, outputs and gradients stored in bf16, math in fp32): compared
  with the fp32 reference on the same bf16-rounded inputs, rtol = atol = 2e-2.
  That covers the final rounding (bf16 keeps 8 significant bits: 2^-8 relative)
  and one more ulp: Triton 3.9's interpreter truncates fp32 -> bf16 where the GPU
  rounds to nearest. Buffers added with atomics (bias gradients, table gradients,
  the mean) stay fp32.
Dropout cannot match JAX bit for bit (different random streams); its tests check
the mask's properties and that forward and backward draw the same mask.
"""
import os

os.environ.setdefault("TRITON_DEFAULT_FP_FUSION", "1")  # Triton 3.9 warns when it is implicit

import numpy as np  # noqa: E402
import pytest  # noqa: E402

triton = pytest.importorskip("triton")

from mlc.backends.triton import catalog as C  # noqa: E402
from mlc.backends.triton import interp  # noqa: E402
from mlc.backends.triton.adamw import adamw_kernel, flat_layout  # noqa: E402
from mlc.backends.triton.matmul import (epilogue_bwd, matmul_backward_launches, matmul_fwd,  # noqa: E402
                                        matmul_kernel)
from mlc.backends.triton.tile import tile_kernel  # noqa: E402

F32 = dict(rtol=1e-5, atol=1e-5)
F32_SUM = dict(rtol=2e-5, atol=2e-5)
BF16 = dict(rtol=2e-2, atol=2e-2)


@pytest.fixture(autouse=True, scope="module")
def _cache(kernel_cache):
    return kernel_cache



def _bf16_round(values):
    import ml_dtypes
    return {k: v.astype(ml_dtypes.bfloat16).astype(np.float32) if v.dtype == np.float32 else v
            for k, v in values.items()}


def _upstream(case, ref_out, seed=1, io="fp32"):
    rng = np.random.default_rng(seed)
    up = {o: rng.normal(size=np.shape(ref_out[o])).astype(np.float32) for o in case.outputs}
    return _bf16_round(up) if io == "bf16" else up


def _close(got, want, tol, what):
    np.testing.assert_allclose(got, want, err_msg=what, **tol)


# case builder, rows, BLOCK_R (None: the generator's choice), dtypes to run
TILE_CASES = [
    ("elementwise_37x53", lambda: C.elementwise_chain(53), 37, 16, ("fp32", "bf16")),
    ("elementwise_1x7", lambda: C.elementwise_chain(7), 1, None, ("fp32",)),
    ("padding_poison_37x37", lambda: C.padding_poison(37), 37, 16, ("fp32",)),
    ("softmax_ce_37x53", lambda: C.softmax_ce(53, 0.1), 37, 16, ("fp32", "bf16")),
    ("softmax_ce_129x3", lambda: C.softmax_ce(3, 0.0), 129, 32, ("fp32",)),
    ("layernorm_gelu_37x53", lambda: C.layernorm(53, "gelu"), 37, 16, ("fp32", "bf16")),
    ("layernorm_1x7", lambda: C.layernorm(7, None), 1, None, ("fp32",)),
    ("bce_129", lambda: C.row_loss("bce_logits"), 129, 32, ("fp32", "bf16")),
    ("squared_error_37", lambda: C.row_loss("squared_error"), 37, 16, ("fp32",)),
    ("abs_error_37", lambda: C.row_loss("abs_error"), 37, 16, ("fp32",)),
    ("huber_37", lambda: C.row_loss("huber"), 37, 16, ("fp32",)),
    ("embedding_37x11x13", lambda: C.embedding(11, 13), 37, 16, ("fp32",)),
    ("assemble_37", lambda: C.assemble(), 37, 16, ("fp32",)),
    ("assemble_shared_37", lambda: C.assemble_shared(), 37, 16, ("fp32",)),
]


TILE_RUNS = [(label, make, rows, block_r, io) for label, make, rows, block_r, ios in TILE_CASES for io in ios]


@pytest.mark.parametrize("label,make,rows,block_r,io", TILE_RUNS, ids=[f"{r[0]}-{r[4]}" for r in TILE_RUNS])
def test_tile_kernel_forward_and_every_gradient(label, make, rows, block_r, io):
    case = make()
    values = C.draw(case, rows)
    if io == "bf16":
        values = _bf16_round(values)
    ref_out, _ = C.reference(case, values)
    up = _upstream(case, ref_out, io=io)
    ref_out, ref_grads = C.reference(case, values, up)
    tol = BF16 if io == "bf16" else F32
    kw = dict(io=io, block_r=block_r, family=case.family)

    fwd = tile_kernel(f"{label}_{io}_fwd", case.ops, case.inputs, case.outputs, case.types, variant="fwd", **kw)
    got = C.run(fwd, values, rows)
    for o in case.outputs:
        _close(got[("output", o)], ref_out[o], tol, f"{label} forward %{o}")

    bwd = tile_kernel(f"{label}_{io}_bwd", case.ops, case.inputs, case.outputs, case.types, variant="bwd",
                      wrt=case.wrt, **kw)
    got = C.run(bwd, values, rows, upstream=up)
    for v in case.wrt:
        _close(got[("grad_input", v)], ref_grads[v], BF16 if io == "bf16" else F32_SUM, f"{label} d%{v}")


def test_embedding_indices_follow_jnp_take():
    """Negative indices count from the end; an index out of range reads a NaN row (as
    jnp.take) and adds nothing to the table's gradient."""
    case = C.embedding(5, 3)
    rows = 9
    values = C.draw(case, rows)
    values["idx"] = np.array([0, 4, -1, -5, 5, -6, 2, 2, 100], np.int32)
    ref_out, _ = C.reference(case, values)
    up = _upstream(case, ref_out)
    ref_out, ref_grads = C.reference(case, values, up)
    fwd = tile_kernel("emb_nan_fwd", case.ops, case.inputs, case.outputs, case.types, variant="fwd", block_r=4)
    got = C.run(fwd, values, rows)[("output", case.outputs[0])]
    assert np.isnan(got[[4, 5, 8]]).all() and not np.isnan(got[[0, 1, 2, 3, 6, 7]]).any()
    _close(got, ref_out[case.outputs[0]], F32, "gather")
    bwd = tile_kernel("emb_nan_bwd", case.ops, case.inputs, case.outputs, case.types, variant="bwd",
                      wrt=case.wrt, block_r=4)
    _close(C.run(bwd, values, rows, upstream=up)[("grad_input", "table")], ref_grads["table"], F32, "scatter-add")


LOSS_CASES = [("softmax_ce_37x53", lambda: C.softmax_ce(53, 0.1), 37, 16),
              ("softmax_ce_129x3", lambda: C.softmax_ce(3, 0.0), 129, 32),
              ("bce_129", lambda: C.row_loss("bce_logits"), 129, 32),
              ("huber_37", lambda: C.row_loss("huber"), 37, 16)]


@pytest.mark.parametrize("dloss", [1.0, 0.25])
@pytest.mark.parametrize("label,make,rows,block_r", LOSS_CASES, ids=[c[0] for c in LOSS_CASES])
def test_loss_and_its_gradient_in_one_pass(label, make, rows, block_r, dloss):
    """fwd_bwd (Liger-style): the loss, the predictions and d loss / d logits from one
    read of the logits, seeded with the loss's upstream gradient `dloss`."""
    case = make()
    values = C.draw(case, rows)
    ref_out, _ = C.reference(case, values)
    up = {o: np.float32(dloss) if np.shape(ref_out[o]) == () else np.zeros_like(ref_out[o]) for o in case.outputs}
    ref_out, ref_grads = C.reference(case, values, up)
    spec = tile_kernel(f"{label}_fb", case.ops, case.inputs, case.outputs, case.types, variant="fwd_bwd",
                       wrt=case.wrt, block_r=block_r, family="rowwise")
    got = C.run(spec, values, rows, dloss=dloss)
    for o in case.outputs:
        _close(got[("output", o)], ref_out[o], F32, f"{label} %{o}")
    for v in case.wrt:
        _close(got[("grad_input", v)], ref_grads[v], F32, f"{label} d%{v}")


MATMUL_CASES = [("37x53x29_gelu", 37, 53, 29, "gelu"), ("129x3x1_sigmoid", 129, 3, 1, "sigmoid"),
                ("1x7x5_silu", 1, 7, 5, "silu")]
SMALL_TILES = {"BLOCK_M": 16, "BLOCK_N": 16, "BLOCK_K": 16}


@pytest.mark.parametrize("label,rows,k,n,act", MATMUL_CASES, ids=[c[0] for c in MATMUL_CASES])
def test_matmul_epilogue_forward_and_backward(label, rows, k, n, act):
    case = C.matmul_epilogue(k, n, act)
    mm = case.ops[0]
    values = C.draw(case, rows)
    ref_out, _ = C.reference(case, values)
    up = _upstream(case, ref_out)
    ref_out, ref_grads = C.reference(case, values, up)
    (y,) = case.outputs

    fwd = matmul_fwd(f"mm_{label}_fwd", case.ops, case.inputs, case.outputs, case.types, blocks=SMALL_TILES)
    got = C.run(fwd, values, rows)
    _close(got[("output", y)], ref_out[y], F32_SUM, "forward")
    z = got[("output", mm.result)]
    _close(z, values["x"] @ values["w"], F32_SUM, "saved product")

    eb = epilogue_bwd(f"mm_{label}_bwd", case.ops, case.inputs, case.outputs, case.types, wrt=case.wrt, block_r=16)
    g = C.run(eb, {**values, mm.result: z}, rows, upstream=up)
    _close(g[("grad_input", "bias")], ref_grads["bias"], F32_SUM, "d bias")

    spec = matmul_kernel(f"mm_{label}_generic", blocks=SMALL_TILES)
    bufs = {"dZ": g[("grad_input", mm.result)], "W": values["w"], "X": values["x"],
            "dX": np.zeros((rows, k), np.float32), "dW": np.zeros((k, n), np.float32)}
    for which, launch in matmul_backward_launches(rows, k, n).items():
        interp.run(spec, {a: bufs[v] if isinstance(v, str) else v for a, v in launch.items()})
    _close(bufs["dX"], ref_grads["x"], F32_SUM, "d x")
    _close(bufs["dW"], ref_grads["w"], F32_SUM, "d w")


def test_matmul_epilogue_bf16():
    """bf16 operands, fp32 accumulation (the interpreter's dot is widened as the tensor cores do)."""
    case = C.matmul_epilogue(53, 29, "gelu")
    rows = 37
    values = _bf16_round(C.draw(case, rows))
    ref_out, _ = C.reference(case, values)
    fwd = matmul_fwd("mm_bf16_fwd", case.ops, case.inputs, case.outputs, case.types, io="bf16", blocks=SMALL_TILES)
    got = C.run(fwd, values, rows)
    (y,) = case.outputs
    scale = np.abs(ref_out[y]).max()
    _close(got[("output", y)] / scale, ref_out[y] / scale, BF16, "bf16 matmul forward")


def test_dropout_mask_is_shared_by_forward_and_backward():
    case = C.dropout(53, rate=0.3)
    rows = 37
    values = C.draw(case, rows)
    (y,) = case.outputs
    x = values["x"]
    fwd = tile_kernel("drop_fwd", case.ops, case.inputs, case.outputs, case.types, variant="fwd", block_r=16)
    out = C.run(fwd, values, rows, seed=7)[("output", y)]
    kept = out != 0
    np.testing.assert_allclose(out[kept], x[kept] / 0.7, rtol=1e-6)
    assert abs(kept.mean() - 0.7) < 0.05, kept.mean()
    g = np.random.default_rng(2).normal(size=x.shape).astype(np.float32)
    bwd = tile_kernel("drop_bwd", case.ops, case.inputs, case.outputs, case.types, variant="bwd", wrt=["x"],
                      block_r=16)
    dx = C.run(bwd, values, rows, upstream={y: g}, seed=7)[("grad_input", "x")]
    np.testing.assert_allclose(dx, np.where(kept, g / 0.7, 0.0), rtol=1e-6)
    other = C.run(fwd, values, rows, seed=8)[("output", y)]
    assert ((other != 0) != kept).any(), "another seed draws another mask"


def test_matmul_dropout_forward_and_epilogue_backward_agree():
    """The matmul kernel and the epilogue's backward kernel draw the same dropout mask."""
    from mlc.ir.graph import Builder, TensorType
    b = Builder("mmd")
    x = b.input("x", TensorType("f32", ("B", 19)))
    w = b.param("w", (19, 37), {"kind": "glorot"})
    y = b.op("dropout", b.op("relu", b.op("matmul", x, w)), rate=0.5)
    g = b.graph
    types = {**g.inputs, **{k: p.type for k, p in g.params.items()}, **{op.result: op.type for op in g.ops}}
    rows = 23
    values = {"x": np.random.default_rng(0).uniform(0.1, 1, (rows, 19)).astype(np.float32),
              "w": np.random.default_rng(1).uniform(0.1, 1, (19, 37)).astype(np.float32)}
    fwd = matmul_fwd("mmd_fwd", g.ops, ["x", "w"], [y], types, blocks=SMALL_TILES)
    got = C.run(fwd, values, rows, seed=3)
    kept = got[("output", y)] != 0
    assert 0.35 < kept.mean() < 0.65
    eb = epilogue_bwd("mmd_bwd", g.ops, ["x", "w"], [y], types, wrt=[], block_r=8)
    z = got[("output", g.ops[0].result)]
    dz = C.run(eb, {"x": values["x"], g.ops[0].result: z}, rows, upstream={y: np.ones((rows, 37), np.float32)},
               seed=3)[("grad_input", g.ops[0].result)]
    np.testing.assert_array_equal(dz != 0, kept)


def test_adamw_update_matches_optax():
    import jax.numpy as jnp
    import optax
    shapes = {"combiner.0.w": (7, 3), "combiner.0.b": (3,), "embed.city": (5, 2), "head.w": (3, 1), "head.b": (1,)}
    rng = np.random.default_rng(0)
    params = {k: rng.normal(size=s).astype(np.float32) for k, s in shapes.items()}
    layout = flat_layout(shapes)
    assert layout.order[:2] == ["combiner.0.w", "head.w"] and layout.n_decay == 24
    lr, b1, b2, eps, wd, clip = 3e-3, 0.9, 0.999, 1e-8, 0.1, 0.5
    mask = lambda p: {k: v.ndim == 2 and not k.startswith("embed.") for k, v in p.items()}  # noqa: E731
    opt = optax.adamw(lr, b1=b1, b2=b2, eps=eps, weight_decay=wd, mask=mask)
    ref = {k: jnp.asarray(v) for k, v in params.items()}
    state = opt.init(ref)
    spec = adamw_kernel(block=16)
    p, m, v = layout.pack(params), np.zeros(layout.size, np.float32), np.zeros(layout.size, np.float32)
    for step in (1, 2, 3):
        grads = {k: rng.normal(size=s).astype(np.float32) for k, s in shapes.items()}
        upd, state = opt.update({k: jnp.asarray(g * clip) for k, g in grads.items()}, state, ref)
        ref = optax.apply_updates(ref, upd)
        interp.run(spec, {"p_ptr": p, "g_ptr": layout.pack(grads), "m_ptr": m, "v_ptr": v,
                          "n_elements": layout.size, "n_decay": layout.n_decay, "step": step, "lr": lr, "b1": b1,
                          "b2": b2, "eps": eps, "weight_decay": wd, "grad_scale": clip})
        got = layout.unpack(p)
        for k in shapes:
            np.testing.assert_allclose(got[k], np.asarray(ref[k]), rtol=1e-6, atol=1e-6, err_msg=f"step {step} {k}")


@pytest.mark.parametrize("example", ["penguins", "titanic", "embed_layernorm"])
def test_training_step_from_generated_kernels_matches_jax_grad(example, tmp_path):
    """Every kernel generate() makes for a program, chained by the reference launcher
    (forward, fused loss gradient, epilogue and matmul backwards, layer norm and
    embedding scatter-add backwards): the loss, the predictions and every parameter's
    gradient equal the JAX back end's. Dropout rates are set to 0 here so JAX and
    Triton compute the same function."""
    import jax
    import jax.numpy as jnp
    from helpers_ir import random_values, training_graph

    from mlc.backends.jax_backend import build
    from mlc.backends.triton import generate, runner

    g = training_graph(example, tmp_path)
    rows = 37
    params, inputs = random_values(g, seed=0, batch=rows)
    gen = generate(g)
    assert not gen.skipped
    env, grads = runner.train_step(gen, params, inputs, rows)
    jp = {k: jnp.asarray(v) for k, v in params.items()}
    ji = {k: jnp.asarray(v) for k, v in inputs.items()}
    want = build(g, list(g.outputs))(jp, ji)
    for name, v in g.outputs.items():
        _close(env[v], np.asarray(want[name]), F32_SUM, name)
    jgrads = jax.grad(lambda p: build(g, ["loss"])(p, ji)["loss"])(jp)
    for k in g.params:
        _close(grads[k], np.asarray(jgrads[k]), F32_SUM, f"d {k}")


def test_interpreter_leaves_triton_language_as_it_found_it():
    """After an interpreted run, triton.language's library functions are JITFunctions
    again (so the same process can still compile kernels)."""
    import triton.language as tl
    from triton.runtime.jit import JITFunction
    case = C.softmax_ce(3, 0.0)
    spec = tile_kernel("restore_check", case.ops, case.inputs, case.outputs, case.types, variant="fwd")
    C.run(spec, C.draw(case, 3), 3)
    assert isinstance(tl.sum, JITFunction) and isinstance(tl.max, JITFunction) and isinstance(tl.rand, JITFunction)
    from triton.runtime.interpreter import interpreter_builder
    assert "create_dot" not in vars(interpreter_builder)
