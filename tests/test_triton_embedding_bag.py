"""The embedding-bag kernel family (mlc/backends/triton/embedding_bag.py), end to end:

- forward and backward under Triton's interpreter against the JAX back end (jax.vjp),
  in fp32 and bf16, on ragged bags (catalog.bag_lengths: an empty bag, one bag filling
  all L slots, L up to 1000, a bag of one repeated id), sum and mean, alone and with
  elementwise ops on the bag's rows; gradients of the table (scatter-add), of the
  weights and of the elementwise ops' parameters;
- groups holding a value of rank > 2 (a sequence [B, T, D]) get no kernel: the
  generators refuse them, and generate() lists them in `skipped` (the XLA path);
- compiled ahead of time for sm_80 and sm_90;
- the `mlc_fused` primitive: a jitted training step whose bag group runs the generated
  kernels (launcher="interpret") next to sequence ops on the XLA path equals jax.grad;
  exported for cuda, the bag group's kernels are triton_kernel_calls.

Tolerances as in test_triton_kernels.py: fp32 1e-5 (2e-5 for sums taken in another
order: long bags, atomics); bf16 2e-2 against the fp32 reference on the same
bf16-rounded inputs (the table gradient is accumulated in fp32 with atomics).
"""
import os

os.environ.setdefault("TRITON_DEFAULT_FP_FUSION", "1")  # Triton 3.9 warns when it is implicit

import numpy as np  # noqa: E402
import pytest  # noqa: E402

triton = pytest.importorskip("triton")

from mlc.backends.triton import Unsupported, compile_kernels, emit_triton, generate  # noqa: E402
from mlc.backends.triton import catalog as C  # noqa: E402
from mlc.backends.triton.embedding_bag import bag_kernel  # noqa: E402
from mlc.backends.triton.matmul import matmul_fwd  # noqa: E402
from mlc.backends.triton.tile import tile_kernel  # noqa: E402
from mlc.ir.graph import Builder, TensorType  # noqa: E402

F32 = dict(rtol=1e-5, atol=1e-5)
F32_SUM = dict(rtol=2e-5, atol=2e-5)
BF16 = dict(rtol=2e-2, atol=2e-2)
ARCHS = ("sm_80", "sm_90")


def _bf16_round(values):
    import ml_dtypes
    return {k: v.astype(ml_dtypes.bfloat16).astype(np.float32) if v.dtype == np.float32 else v
            for k, v in values.items()}


def _close(got, want, tol, what):
    np.testing.assert_allclose(got, want, err_msg=what, **tol)


# label, case, rows (bags), dtypes
CASES = [
    ("sum_37xL7", lambda: C.embedding_bag(11, 13, 7, "sum"), 37, ("fp32", "bf16")),
    ("mean_tanh_37xL7", lambda: C.embedding_bag(11, 13, 7, "mean", epilogue=True), 37, ("fp32", "bf16")),
    ("mean_huge_5xL1000", lambda: C.embedding_bag(50, 16, 1000, "mean"), 5, ("fp32", "bf16")),
    ("sum_huge_5xL1000", lambda: C.embedding_bag(50, 16, 1000, "sum"), 5, ("fp32",)),
]
RUNS = [(label, make, rows, io) for label, make, rows, ios in CASES for io in ios]


@pytest.mark.parametrize("label,make,rows,io", RUNS, ids=[f"{r[0]}-{r[3]}" for r in RUNS])
def test_bag_forward_and_every_gradient(label, make, rows, io):
    case = make()
    values = C.draw(case, rows)
    ids, w = values["ids"], values["weights"]
    L = ids.shape[1]
    assert not w[0].any() and (w[1] > 0).all() and (w[2, :min(L, 4)] > 0).all(), "empty, full, short bags"
    assert len(set(ids[2, :min(L, 4)])) == 1, "bag 2 repeats one id"
    if io == "bf16":
        values = _bf16_round(values)
    ref_out, _ = C.reference(case, values)
    rng = np.random.default_rng(1)
    up = {o: rng.normal(size=np.shape(ref_out[o])).astype(np.float32) for o in case.outputs}
    up = _bf16_round(up) if io == "bf16" else up
    ref_out, ref_grads = C.reference(case, values, up)
    assert not np.abs(ref_out[case.outputs[0]][0]).any(), "an empty bag gives a zero row"

    fwd = bag_kernel(f"bag_{label}_{io}_fwd", case.ops, case.inputs, case.outputs, case.types, io=io)
    got = C.run(fwd, values, rows)
    for o in case.outputs:
        _close(got[("output", o)], ref_out[o], BF16 if io == "bf16" else F32_SUM, f"{label} forward %{o}")

    bwd = bag_kernel(f"bag_{label}_{io}_bwd", case.ops, case.inputs, case.outputs, case.types, variant="bwd",
                     wrt=case.wrt, io=io)
    assert {a.value for a in bwd.args if a.role == "grad_input"} == set(case.wrt)
    assert next(a for a in bwd.args if a.value == "table" and a.role == "grad_input").zero_init
    got = C.run(bwd, values, rows, upstream=up)
    for v in case.wrt:
        _close(got[("grad_input", v)], ref_grads[v], BF16 if io == "bf16" else F32_SUM, f"{label} d%{v}")


@pytest.mark.parametrize("mode", ["sum", "mean"])
def test_bag_ids_and_weight_totals_follow_jax(mode):
    """As the gather kernel: a negative id counts from the end; an id out of range reads
    NaN (its bag's row is NaN, as in JAX) and adds nothing to the table's gradient. A
    mean over a weight total <= 0 divides by 1, as the reference does."""
    case = C.embedding_bag(5, 3, 4, mode)
    values = {"table": C.draw(case, 5)["table"],
              "ids": np.array([[0, -1, 4, -5], [1, 5, 0, 0], [2, 2, -2, 0], [3, 1, 0, 0], [0, 0, 0, 0]], np.int32),
              "weights": np.array([[1, 2, .5, 1], [1, 1, 0, 0], [1, -1, 1, 0], [-1, -.5, 0, 0], [0, 0, 0, 0]],
                                  np.float32)}
    up = {case.outputs[0]: np.random.default_rng(0).normal(size=(5, 3)).astype(np.float32)}
    ref_out, ref_grads = C.reference(case, values, up)
    fwd = bag_kernel(f"bag_take_{mode}_fwd", case.ops, case.inputs, case.outputs, case.types, block_l=2)
    got = C.run(fwd, values, 5)[("output", case.outputs[0])]
    assert np.isnan(got[1]).all() and not np.isnan(got[[0, 2, 3, 4]]).any()
    _close(got, ref_out[case.outputs[0]], F32, "forward")
    bwd = bag_kernel(f"bag_take_{mode}_bwd", case.ops, case.inputs, case.outputs, case.types, variant="bwd",
                     wrt=case.wrt, block_l=2)
    got = C.run(bwd, values, 5, upstream=up)
    for v in case.wrt:  # d weights of the NaN bag is NaN in both
        _close(got[("grad_input", v)], ref_grads[v], F32, f"d {v}")


# ---- a program with a bag and a sequence branch -------------------------------------------
V, D, L, V2, T, E = 23, 12, 9, 17, 6, 8
ROWS = 37


def bag_graph(seq: bool = True):
    """A mean bag with learned per-slot weights (so d weights reaches a param), tanh(bag +
    bias) on its rows; with `seq`, a sequence branch of rank-3 values (gather [B, T, E],
    conv1d, matmul, layer norm, gelu, attention, masked pooling) beside it; a binary head."""
    from mlc.ir.pipeline import optimize

    b = Builder("bagnet")
    ids = b.input("ids", TensorType("i32", ("B", L)))
    raw = b.input("w_in", TensorType("f32", ("B", L)))
    y = b.input("y", TensorType("f32", ("B",)))
    table = b.param("embed.bag", (V, D), {"kind": "normal", "std": 0.1})
    scale = b.param("bag.scale", (L,), {"kind": "ones"})
    bias = b.param("bag.b", (D,), {"kind": "zeros"})
    bag = b.op("embed_bag", table, ids, b.op("mul", raw, scale), mode="mean")
    feats = [b.op("tanh", b.op("add", bag, bias))]
    if seq:
        tok = b.input("tokens", TensorType("i32", ("B", T)))
        mask = b.input("mask", TensorType("f32", ("B", T)))
        s = b.op("gather", b.param("embed.tok", (V2, E), {"kind": "normal", "std": 0.1}), tok)
        s = b.op("conv1d", s, b.param("conv.w", (3, E, E), {"kind": "glorot"}))
        s = b.op("matmul", s, b.param("seq.w", (E, E), {"kind": "glorot"}))
        s = b.op("gelu", b.op("layernorm", s, b.param("seq.g", (E,), {"kind": "ones"}),
                              b.param("seq.beta", (E,), {"kind": "zeros"}), eps=1e-5))
        a = b.op("attention", s, s, s, mask, heads=2)
        feats += [b.op("masked_max", a, mask), b.op("masked_mean", s, mask)]
    h = b.op("concat", *feats, axis=1) if len(feats) > 1 else feats[0]
    w = b.param("head.w", (b.graph.type_of(h).shape[1], 1), {"kind": "glorot"})
    logit = b.op("add", b.op("matmul", h, w), b.param("head.b", (1,), {"kind": "zeros"}))
    b.output("pred", b.op("sigmoid", logit))
    b.output("loss", b.op("mean", b.op("bce_logits", logit, y)))
    return optimize(b.graph)[0]


def bag_values(g, rows=ROWS):
    """Params and inputs as numpy arrays: ragged bags, weight scales near 1, masks with empty rows."""
    from helpers_ir import random_values

    params, inputs = random_values(g, seed=0, batch=rows)
    rng = np.random.default_rng(5)
    real = np.arange(L)[None] < C.bag_lengths(rng, rows, L)[:, None]
    inputs["ids"] = np.where(real, rng.integers(0, V, (rows, L)), 0).astype(np.int32)
    inputs["w_in"] = np.where(real, rng.uniform(0.25, 2, (rows, L)), 0).astype(np.float32)
    params["bag.scale"] = rng.uniform(0.5, 1.5, L).astype(np.float32)
    if "tokens" in inputs:
        inputs["tokens"] = rng.integers(0, V2, (rows, T)).astype(np.int32)
        inputs["mask"] = (np.arange(T)[None] < rng.integers(0, T + 1, rows)[:, None]).astype(np.float32)
    return params, inputs


def _bag_group(gen):
    specs = [s for s in gen.specs if s.family == "embedding_bag"]
    assert {s.variant for s in specs} == {"fwd", "bwd"}
    assert len({s.group for s in specs}) == 1
    return specs


def test_rank3_groups_get_no_kernel_and_are_listed_as_skipped():
    g = bag_graph()
    ops = {op.result: op for op in g.ops}
    deep = {r for r, op in ops.items() if len(op.type.shape) > 2 or any(
        len(g.type_of(a).shape) > 2 for a in op.args)}
    assert {ops[r].opcode for r in deep} == {"gather", "conv1d", "matmul", "layernorm", "gelu", "attention",
                                             "masked_max", "masked_mean"}
    gen = generate(g)
    bag = _bag_group(gen)
    assert "tl.atomic_add" in next(s for s in bag if s.variant == "bwd").source
    skipped = dict(gen.skipped)
    for grp in g.groups:  # a group holding a rank-3 value is skipped as a whole
        if set(grp.members) & deep:
            assert grp.name in skipped, grp.name
    for r in deep:
        if not any(r in grp.members for grp in g.groups):
            assert f"%{r}" in skipped and "rank 3" in skipped[f"%{r}"], r
    made = {s.group for s in gen.specs}
    assert not made & ({f"%{r}" for r in deep} | {grp.name for grp in g.groups if set(grp.members) & deep})
    assert "rank 3" in emit_triton(gen)
    assert [s.variant for s in generate(g, mode="eval").specs if s.family == "embedding_bag"] == ["fwd"]


def test_generators_refuse_rank3_values():
    """Called directly (without generate's rank check), each generator raises Unsupported
    on a sequence value rather than emit code that indexes it as [B, width]."""
    b = Builder("seq")
    x = b.input("x", TensorType("f32", ("B", T, E)))
    tok = b.input("tok", TensorType("i32", ("B", T)))
    table = b.param("emb", (V2, E), {"kind": "normal"})
    w = b.param("w", (E, 5), {"kind": "glorot"})
    gamma, beta = b.param("g", (E,), {"kind": "ones"}), b.param("b", (E,), {"kind": "zeros"})
    g = b.graph
    bag_ids = b.input("ids", TensorType("i32", ("B", L)))
    bag_w = b.input("bw", TensorType("f32", ("B", L)))
    wide = b.param("wide", (V, D, 2), {"kind": "normal"})
    singles = [b.op("gather", table, tok), b.op("matmul", x, w), b.op("layernorm", x, gamma, beta, eps=1e-5),
               b.op("gelu", x), b.op("conv1d", x, b.param("cw", (3, E, E), {"kind": "glorot"})),
               b.op("attention", x, x, x, b.input("m", TensorType("f32", ("B", T))), heads=2),
               b.op("masked_max", x, "m"), b.op("masked_mean", x, "m")]
    types = {**g.inputs, **{n: p.type for n, p in g.params.items()}, **{op.result: op.type for op in g.ops}}
    ops = {op.result: op for op in g.ops}
    for r in singles:
        op = ops[r]
        ins = list(dict.fromkeys(op.args))
        gen = matmul_fwd if op.opcode == "matmul" else tile_kernel
        with pytest.raises(Unsupported):
            gen(f"k{r}", [op], ins, [r], types)
    deep_bag = b.op("embed_bag", wide, bag_ids, bag_w, mode="sum")  # a [V, D, 2] table: [B, D, 2] rows
    types[deep_bag] = g.type_of(deep_bag)
    with pytest.raises(Unsupported, match="table"):
        bag_kernel("kbag", [g.ops[-1]], [wide, bag_ids, bag_w], [deep_bag], types)


def test_generated_kernels_train_like_jax_grad_beside_the_xla_path():
    """launcher='interpret': the bag group's forward and backward kernels (d table by
    scatter-add, d weights into the weight-scale param's own kernel) inside one jitted
    step, with the sequence branch on the XLA path, give XLA's loss, outputs, gradients."""
    import jax
    import jax.numpy as jnp

    from mlc.backends.jax_backend import build as xla_build
    from mlc.backends.triton import primitive

    g = bag_graph()
    _, items = primitive.plans(g)
    bag_plans = [it for it in items if isinstance(it, primitive.GroupPlan) and it.fwd.family == "embedding_bag"]
    assert len(bag_plans) == 1 and set(bag_plans[0].wrt) == {"embed.bag", "bag.b", bag_plans[0].fwd.extra["weights"]}
    params, inputs = bag_values(g)
    P = {k: jnp.asarray(v) for k, v in params.items()}
    inp = {k: jnp.asarray(v) for k, v in inputs.items()}

    def step(fn):
        def run(p, i, key):
            (value, out), grads = jax.value_and_grad(lambda p: (lambda o: (o["loss"], o))(fn(p, i, key, True)),
                                                     has_aux=True)(p)
            return value, grads, out
        return jax.jit(run)

    key = jax.random.PRNGKey(3)
    want = step(xla_build(g, list(g.outputs)))(P, inp, key)
    got = step(primitive.build(g, list(g.outputs), launcher="interpret"))(P, inp, key)
    _close(np.asarray(got[0]), np.asarray(want[0]), F32_SUM, "loss")
    for name in g.outputs:
        _close(np.asarray(got[2][name]), np.asarray(want[2][name]), F32_SUM, name)
    for k in g.params:
        _close(np.asarray(got[1][k]), np.asarray(want[1][k]), F32_SUM, f"d {k}")


def test_reference_launcher_step_matches_jax_grad():
    """runner.train_step (numpy buffers, every kernel under the interpreter) on the bag
    program without its sequence branch: every group has kernels."""
    import jax
    import jax.numpy as jnp

    from mlc.backends.jax_backend import build as xla_build
    from mlc.backends.triton import runner

    g = bag_graph(seq=False)
    params, inputs = bag_values(g)
    gen = generate(g)
    assert not gen.skipped and _bag_group(gen)
    env, grads = runner.train_step(gen, params, inputs, ROWS)
    ji = {k: jnp.asarray(v) for k, v in inputs.items()}
    jgrads = jax.grad(lambda p: xla_build(g, ["loss"])(p, ji)["loss"])({k: jnp.asarray(v) for k, v in params.items()})
    for k in g.params:
        _close(grads[k], np.asarray(jgrads[k]), F32_SUM, f"d {k}")


def test_lowered_for_cuda_the_bag_group_is_triton_kernel_calls(cuda_kernel_calls, monkeypatch):
    import jax
    import jax.numpy as jnp
    from jax import export

    from mlc.backends.triton import jax_call, primitive

    launched = []
    original = jax_call.triton_launch

    def record(spec, *args, **kwargs):
        launched.append(spec.name)
        return original(spec, *args, **kwargs)

    monkeypatch.setattr(jax_call, "triton_launch", record)
    g = bag_graph()
    params, inputs = bag_values(g, rows=64)
    fn = primitive.build(g, ["loss"], launcher="triton", compute_capability=90)
    step = jax.jit(lambda p, i, k: jax.value_and_grad(lambda p: fn(p, i, k, True)["loss"])(p))
    exp = export.export(step, platforms=["cuda"],
                        disabled_checks=[export.DisabledSafetyCheck.custom_call("triton_kernel_call")])(
        {k: jnp.asarray(v) for k, v in params.items()}, {k: jnp.asarray(v) for k, v in inputs.items()},
        jax.random.PRNGKey(0))
    text = exp.mlir_module()
    assert {"bagnet_k0_fwd", "bagnet_k0_bwd"} <= set(launched), launched
    # forwards: weight scale, bag, concat, head matmul, loss (fused with its gradient); backwards:
    # head epilogue, dW, dX, concat, bag, weight scale
    assert text.count("stablehlo.custom_call @triton_kernel_call") == len(launched) == 11
    assert exp.platforms == ("cuda",)


def test_bag_kernels_compile_for_sm80_and_sm90(kernel_cache):
    specs = []
    for case, io, variants in [(C.embedding_bag(11, 13, 7, "sum"), "fp32", ("fwd", "bwd")),
                               (C.embedding_bag(11, 13, 7, "mean", epilogue=True), "fp32", ("bwd",)),
                               (C.embedding_bag(50, 16, 1000, "mean"), "bf16", ("fwd", "bwd"))]:
        for v in variants:
            specs.append(bag_kernel(f"aot_{case.name}_{io}_{v}", case.ops, case.inputs, case.outputs, case.types,
                                    variant=v, wrt=case.wrt if v == "bwd" else (), io=io))
    arts = compile_kernels(specs, archs=ARCHS)
    for a in arts:
        assert a.family == "embedding_bag" and not any(a.cache_hits.values())
        for arch in ARCHS:
            assert f".target {arch}" in a.ptx[arch] and f".entry {a.name}(" in a.ptx[arch], (a.name, arch)
            assert a.cubin[arch][:4] == b"\x7fELF", (a.name, arch)
            if a.variant == "bwd":
                assert "atom.global" in a.ptx[arch] or "red.global" in a.ptx[arch], "scatter-add by atomics"
