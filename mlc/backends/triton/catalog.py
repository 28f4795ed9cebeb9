"""Representative kernels with their references: one place for the interpreter tests,
the ahead-of-time compile tests and a GPU check to draw on.

A `Case` is a small graph (inputs with a batch dimension "B", params, ops, outputs)
that one kernel group computes, the values whose gradients are wanted, and how to
draw its inputs. `reference` evaluates it with the JAX back end (the semantics
every back end must match) and differentiates it with `jax.vjp`; `run` launches a
generated kernel under Triton's interpreter on numpy arrays.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from mlc.ir.graph import Builder, Graph, Op, TensorType

from .spec import KernelSpec


@dataclass
class Case:
    name: str
    family: str
    graph: Graph
    inputs: list[str]  # what the kernel reads, in order
    outputs: list[str]
    wrt: list[str]  # inputs whose gradient the backward computes
    ranges: dict = field(default_factory=dict)  # i32 input -> (low, high); float input -> "positive" | "labels01"

    @property
    def ops(self) -> list[Op]:
        return self.graph.ops

    @property
    def types(self) -> dict[str, TensorType]:
        g = self.graph
        return {**g.inputs, **{n: p.type for n, p in g.params.items()}, **{op.result: op.type for op in g.ops}}


def _case(name, family, b: Builder, outputs, wrt, ranges=None) -> Case:
    g = b.graph
    g.outputs = {o: o for o in outputs}
    inputs = [v for v in list(g.inputs) + list(g.params) if any(v in op.args for op in g.ops)]
    return Case(name, family, g, inputs, list(outputs), list(wrt), ranges or {})


def elementwise_chain(width: int = 53) -> Case:
    """Every elementwise op once, a row-vector bias and a [B, 1] column broadcast."""
    b = Builder("ew")
    x = b.input("x", TensorType("f32", ("B", width)))
    s = b.input("s", TensorType("f32", ("B", 1)))
    bias = b.param("bias", (width,), {"kind": "zeros"})
    h = b.op("add", x, bias)
    a = b.op("gelu", h)
    m = b.op("mul", a, s)
    d = b.op("sub", m, x)
    t = b.op("tanh", d)
    e = b.op("silu", t)
    f = b.op("scale", e, factor=0.5)
    n = b.op("neg", f)
    r = b.op("relu", b.op("add", n, h))
    sg = b.op("sigmoid", r)
    lg = b.op("log", sg)
    ex = b.op("exp", lg)
    return _case(f"elementwise_chain_{width}", "elementwise", b, [t, ex], [x, s, bias])


def padding_poison(width: int = 37) -> Case:
    """log of a positive input, scaled per row: in padded columns log(0) = -inf and its
    gradient 0/0 = NaN, so any reduction that forgets its mask turns the result to NaN."""
    b = Builder("poison")
    x = b.input("x", TensorType("f32", ("B", width)))
    s = b.input("s", TensorType("f32", ("B", 1)))
    y = b.op("mul", b.op("log", x), s)
    return _case(f"padding_poison_{width}", "elementwise", b, [y], [x, s], {"x": "positive"})


def matmul_epilogue(k: int = 53, n: int = 29, act: str = "gelu") -> Case:
    b = Builder("mm")
    x = b.input("x", TensorType("f32", ("B", k)))
    w = b.param("w", (k, n), {"kind": "glorot"})
    bias = b.param("bias", (n,), {"kind": "zeros"})
    y = b.op(act, b.op("add", b.op("matmul", x, w), bias))
    return _case(f"matmul_{act}_{k}x{n}", "matmul_epilogue", b, [y], [x, w, bias])


def softmax_ce(classes: int = 53, smoothing: float = 0.1) -> Case:
    """The category head's loss group: probabilities, cross-entropy per row, mean."""
    b = Builder("ce")
    logits = b.input("logits", TensorType("f32", ("B", classes)))
    y = b.input("y", TensorType("i32", ("B",)))
    p = b.op("softmax", logits)
    loss = b.op("mean", b.op("softmax_ce", logits, y, smoothing=smoothing))
    return _case(f"softmax_ce_{classes}", "rowwise", b, [p, loss], [logits], {"y": (0, classes)})


def layernorm(width: int = 53, act: str | None = "gelu") -> Case:
    b = Builder("ln")
    x = b.input("x", TensorType("f32", ("B", width)))
    g = b.param("gamma", (width,), {"kind": "ones"})
    beta = b.param("beta", (width,), {"kind": "zeros"})
    y = b.op("layernorm", x, g, beta, eps=1e-5)
    if act:
        y = b.op(act, y)
    return _case(f"layernorm_{width}" + (f"_{act}" if act else ""), "rowwise", b, [y], [x, g, beta])


def row_loss(kind: str = "bce_logits") -> Case:
    """A one-column head's loss group: loss per row, then the mean."""
    b = Builder("loss")
    p = b.input("p", TensorType("f32", ("B", 1)))
    y = b.input("y", TensorType("f32", ("B",)))
    outs = []
    if kind == "bce_logits":
        outs.append(b.op("sigmoid", p))
    attrs = {"delta": 0.7} if kind == "huber" else {}
    loss = b.op("mean", b.op(kind, p, y, **attrs))
    return _case(f"{kind}_loss", "rowwise", b, outs + [loss], [p, y], {"y": "labels01"} if kind == "bce_logits" else {})


def embedding(vocab: int = 11, width: int = 13) -> Case:
    """Embedding lookup: gather rows of a table (backward: scatter-add into the table)."""
    b = Builder("emb")
    idx = b.input("idx", TensorType("i32", ("B",)))
    table = b.param("table", (vocab, width), {"kind": "normal", "std": 0.1})
    y = b.op("gather", table, idx)
    return _case(f"embedding_{vocab}x{width}", "gather", b, [y], [table], {"idx": (-vocab, vocab)})


def assemble(dense: int = 5, depth: int = 4, vocab: int = 7, width: int = 3) -> Case:
    """The input layer: concat(numbers, one_hot(category), embedding(category))."""
    b = Builder("asm")
    x = b.input("x_num", TensorType("f32", ("B", dense)))
    c1 = b.input("cat_a", TensorType("i32", ("B",)))
    c2 = b.input("cat_b", TensorType("i32", ("B",)))
    table = b.param("embed.b", (vocab, width), {"kind": "normal", "std": 0.1})
    y = b.op("concat", x, b.op("one_hot", c1, depth=depth), b.op("gather", table, c2), axis=1)
    return _case("assemble", "gather", b, [y], [x, table], {"cat_a": (0, depth), "cat_b": (0, vocab)})


def assemble_shared(dense: int = 6, depth: int = 5) -> Case:
    """An input that is both a concat piece and read by another op: two gradient paths
    into one buffer (both added with atomics)."""
    b = Builder("asm2")
    x = b.input("x_num", TensorType("f32", ("B", dense)))
    c = b.input("cat", TensorType("i32", ("B",)))
    y = b.op("concat", x, b.op("one_hot", c, depth=depth), x, axis=1)
    z = b.op("tanh", x)
    return _case("assemble_shared", "gather", b, [y, z], [x], {"cat": (0, depth)})


def dropout(width: int = 53, rate: float = 0.3) -> Case:
    b = Builder("drop")
    x = b.input("x", TensorType("f32", ("B", width)))
    y = b.op("dropout", x, rate=rate)
    return _case(f"dropout_{width}", "elementwise", b, [y], [x])


def embedding_bag(vocab: int = 11, width: int = 13, length: int = 7, mode: str = "sum",
                  epilogue: bool = False) -> Case:
    """An embedding bag over ragged bags (see `bag_lengths`), its weights differentiable too;
    with `epilogue`, tanh(bag + bias) as well (the bag output stays an output of the group)."""
    b = Builder("bag")
    ids = b.input("ids", TensorType("i32", ("B", length)))
    w = b.input("weights", TensorType("f32", ("B", length)))
    table = b.param("table", (vocab, width), {"kind": "normal", "std": 0.1})
    y = b.op("embed_bag", table, ids, w, mode=mode)
    outs, wrt = [y], [table, w]
    if epilogue:
        bias = b.param("bias", (width,), {"kind": "zeros"})
        outs.append(b.op("tanh", b.op("add", y, bias)))
        wrt.append(bias)
    name = f"embedding_bag_{mode}_{vocab}x{width}_L{length}" + ("_tanh" if epilogue else "")
    return _case(name, "embedding_bag", b, outs, wrt, {"ids": ("bag_ids", vocab), "weights": "bag_weights"})


def bag_lengths(rng, rows: int, length: int) -> np.ndarray:
    """Ragged bag lengths: bag 0 empty, bag 1 fills all `length` slots (one huge bag), bag 2
    repeats one id (see `draw`), the others hold up to 8."""
    n = rng.integers(0, min(length, 8) + 1, rows)
    n[:3] = [0, length, min(length, 4)][:rows]
    return n


# ---- values, references, interpreter runs -------------------------------------------------
def shape_of(shape, rows: int) -> tuple[int, ...]:
    return tuple(rows if d == "B" else int(d) for d in shape)


def draw(case: Case, rows: int, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    out = {}
    lengths = None
    for v in case.inputs:
        t = case.types[v]
        shape = shape_of(t.shape, rows)
        r = case.ranges.get(v)
        if isinstance(r, tuple) and r[0] == "bag_ids" or r == "bag_weights":
            # padding slots: id 0, weight 0; bag 2's ids all equal (repeated ids)
            lengths = bag_lengths(rng, rows, shape[1]) if lengths is None else lengths
            real = np.arange(shape[1])[None, :] < lengths[:, None]
            x = rng.integers(0, r[1], shape) if r != "bag_weights" else rng.uniform(0.25, 2.0, shape)
            if r != "bag_weights" and rows > 2:
                x[2] = x[2, 0]
            out[v] = np.where(real, x, 0).astype(np.int32 if t.dtype == "i32" else np.float32)
        elif t.dtype == "i32":
            lo, hi = r if r else (0, 2)
            out[v] = rng.integers(lo, hi, shape).astype(np.int32)
        elif r == "labels01":
            out[v] = rng.integers(0, 2, shape).astype(np.float32)
        elif r == "positive":
            out[v] = rng.uniform(0.5, 2.0, shape).astype(np.float32)
        else:
            out[v] = rng.normal(0.0, 1.0, shape).astype(np.float32)
    return out


def reference(case: Case, values: dict, upstream: dict | None = None):
    """(outputs, input gradients) from the JAX back end; dropout is the identity here."""
    import jax
    import jax.numpy as jnp

    from mlc.backends.jax_backend import build

    fn = build(case.graph, case.outputs)
    floats = [v for v in case.wrt]

    def f(*xs):
        env = {k: jnp.asarray(a) for k, a in values.items()}
        env.update(dict(zip(floats, xs)))
        out = fn({}, env)
        return tuple(out[o] for o in case.outputs)

    outs, vjp = jax.vjp(f, *[jnp.asarray(values[v], jnp.float32) for v in floats])
    result = {o: np.asarray(x) for o, x in zip(case.outputs, outs)}
    if upstream is None:
        return result, {}
    cot = tuple(jnp.asarray(upstream.get(o, np.zeros(np.shape(result[o]), np.float32)), jnp.float32)
                for o in case.outputs)
    grads = vjp(cot)
    return result, {v: np.asarray(g) for v, g in zip(floats, grads)}


_NP = {"*fp32": np.float32, "*i32": np.int32}


def _np_dtype(t: str):
    if t == "*bf16":
        import ml_dtypes
        return ml_dtypes.bfloat16
    return _NP[t]


def run(spec: KernelSpec, values: dict, rows: int, *, upstream: dict | None = None, seed: int = 1234,
        dloss: float = 1.0, **constexprs) -> dict:
    """Launch under the interpreter. Returns {(role, IR value): array} for what it wrote."""
    from . import interp

    args, written = {}, {}
    for a in spec.args:
        if a.role == "input":
            args[a.name] = np.ascontiguousarray(np.asarray(values[a.value]).astype(_np_dtype(a.type)))
        elif a.role == "grad_output":
            args[a.name] = np.ascontiguousarray(np.asarray(upstream[a.value]).astype(_np_dtype(a.type)))
        elif a.role in ("output", "grad_input"):
            arr = np.zeros(shape_of(a.shape, rows), _np_dtype(a.type))
            args[a.name] = arr
            written[(a.role, a.value)] = arr
        elif a.role == "size" and a.name == "n_rows":
            args[a.name] = rows
        elif a.role == "seed":
            args[a.name] = seed
        elif a.name == "dloss":
            args[a.name] = dloss
        else:
            args[a.name] = values[a.name]
    interp.run(spec, args, **constexprs)
    return {k: np.asarray(v, np.float32) if v.dtype != np.int32 else v for k, v in written.items()}
