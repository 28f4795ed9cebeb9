"""Helpers for the middle-end tests: example graphs, random values for a graph's
params and inputs, comparison of results, and a hypothesis strategy for random
well-typed graphs."""
from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
from hypothesis import strategies as st

from mlc.ir.graph import Builder, Graph, TensorType

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = sorted(p.stem for p in (ROOT / "examples").glob("*.dml"))


@functools.lru_cache(maxsize=None)
def _example_text(name: str) -> str:
    from mlc.ir.graph import print_graph
    from mlc.ir.pipeline import lower_file
    return print_graph(lower_file(ROOT / "examples" / f"{name}.dml"))


def example_graph(name: str) -> Graph:
    """The graph an example program lowers to (a fresh copy each call)."""
    from mlc.ir.text import parse_graph
    return parse_graph(_example_text(name))


# A program with an embedding, layer norm and a softmax cross-entropy loss (the
# examples have none of the first two): the Triton tests train through all three.
EMBED_LAYERNORM = """
data "{data}" split 80/10/10 seed 7
input  island            : category {{ encoder = embed(size = 3) }}
input  bill_length_mm    : number
input  flipper_length_mm : number
input  sex               : binary
output species           : category {{ loss = cross_entropy(label_smoothing = 0.1) }}
combiner concat {{ layers = [24, 16], activation = gelu, dropout = 0.1, norm = layernorm }}
"""


def training_graph(name: str, tmp_path: Path, dropout: float | None = 0.0) -> Graph:
    """The optimized graph of an example (or of EMBED_LAYERNORM for "embed_layernorm"),
    with every dropout rate set to `dropout` (None keeps the program's)."""
    from mlc.ir.pipeline import lower_file, optimize
    if name == "embed_layernorm":
        src = tmp_path / "embed_layernorm.dml"
        src.write_text(EMBED_LAYERNORM.format(data=ROOT / "examples" / "data" / "penguins.csv"))
        g, _ = optimize(lower_file(src))
        assert {op.opcode for op in g.ops} >= {"gather", "layernorm", "softmax_ce"}
    else:
        g, _ = optimize(example_graph(name))
    for op in g.ops:
        if op.opcode == "dropout" and dropout is not None:
            op.attrs["rate"] = dropout
    return g


def _dim(d, batch):
    return batch if isinstance(d, str) else d


def random_values(graph: Graph, seed: int = 0, batch: int = 5) -> tuple[dict, dict]:
    """(params, inputs) as numpy arrays; indices in range, targets plausible."""
    rng = np.random.default_rng(seed)
    params = {}
    for name, p in graph.params.items():
        shape = tuple(_dim(d, batch) for d in p.type.shape)
        std = 0.5 if len(shape) < 2 else 1.0 / np.sqrt(shape[0])  # like glorot: values stay O(1)
        params[name] = rng.normal(0, std, shape).astype(np.float32)
    inputs = {}
    index_range = _index_ranges(graph)
    for name, t in graph.inputs.items():
        shape = tuple(_dim(d, batch) for d in t.shape)
        if t.dtype == "i32":
            inputs[name] = rng.integers(0, index_range.get(name, 2), shape).astype(np.int32)
        elif name.startswith("mask"):
            inputs[name] = (rng.random(shape) < 0.7).astype(np.float32)  # token masks: 0 or 1
        elif name.startswith("bagw") or name.startswith("w_bag"):
            inputs[name] = rng.random(shape).astype(np.float32)  # bag weights: positive
        elif name.startswith("y_"):
            inputs[name] = rng.integers(0, 2, shape).astype(np.float32)  # binary targets (also fine for numbers)
        else:
            inputs[name] = rng.normal(0, 1, shape).astype(np.float32)
    return params, inputs


def _index_ranges(graph: Graph) -> dict:
    """For each i32 input, the size of what it indexes (table rows, depth, classes)."""
    out: dict[str, int] = {}
    for op in graph.ops:
        for i, a in enumerate(op.args):
            if a in graph.inputs and graph.inputs[a].dtype == "i32":
                if op.opcode in ("gather", "embed_bag") and i == 1:
                    k = graph.type_of(op.args[0]).shape[0]
                elif op.opcode == "one_hot":
                    k = op.attrs["depth"]
                elif op.opcode == "softmax_ce" and i == 1:
                    k = graph.type_of(op.args[0]).shape[-1]
                else:
                    continue
                out[a] = min(out.get(a, k), k)
    return out


def assert_close(got: dict, want: dict, rtol=1e-5, atol=1e-5, what=""):
    assert set(got) == set(want), (sorted(got), sorted(want))
    for k in want:
        np.testing.assert_allclose(np.asarray(got[k], np.float64), np.asarray(want[k], np.float64),
                                   rtol=rtol, atol=atol, equal_nan=True, strict=True, err_msg=f"{what} output {k}")


# ---- random well-typed graphs ---------------------------------------------------
UNARY = ("relu", "gelu", "silu", "tanh", "sigmoid", "neg", "scale", "dropout")
BOUNDED = ("tanh", "sigmoid", "softmax")  # ops whose results are small, safe for exp
POSITIVE = ("exp", "sigmoid", "softmax")  # ops whose results are > 0, safe for log


@st.composite
def graphs(draw, max_ops: int = 14) -> Graph:
    """A random well-typed graph over f32[B,W] values, with the patterns the passes
    look for planted often: constants, x*1, x+0, scale chains, double negation,
    duplicated ops (dropouts too), dead ops and unused inputs, plus matmul,
    layernorm, softmax, concat, gather, one_hot, losses and mean, and a diamond
    that fusion must not turn into a cycle between kernels."""
    b = Builder("random")
    widths = draw(st.lists(st.integers(1, 4), min_size=1, max_size=2, unique=True))
    values: list[tuple[str, dict]] = []  # (name, flags)

    def f32(name, w):
        return b.input(name, TensorType("f32", ("B", w)))

    for i, w in enumerate(widths):
        values.append((f32(f"x{i}", w), {}))
    if 1 not in widths:
        values.append((f32("col", 1), {}))  # a column: broadcasting against it is common
    if draw(st.booleans()):
        b.input("unused", TensorType("f32", ("B", 3)))
    n_params = [0]

    def param(shape):
        n_params[0] += 1
        return b.param(f"p{n_params[0]}", shape, {"kind": "normal", "std": 0.5})

    def width(v):
        return b.graph.type_of(v).shape[-1]

    def pick(pred=lambda v, f: True):
        cands = [v for v, f in values if pred(v, f)]
        return draw(st.sampled_from(cands)) if cands else None

    def add(v, **flags):
        values.append((v, flags))
        return v

    n_ops = draw(st.integers(3, max_ops))
    for _ in range(n_ops):
        kind = draw(st.sampled_from([
            "unary", "unary", "binary", "binary", "exp", "log", "const_binary", "const_binary", "scale_chain",
            "neg_neg", "duplicate", "duplicate", "matmul", "layernorm", "softmax", "concat", "gather",
            "one_hot", "const_fold", "dead", "neg_add", "diamond"]))
        x = pick()
        w = width(x)
        if kind == "unary":
            op = draw(st.sampled_from(UNARY))
            if op == "scale":
                add(b.op("scale", x, factor=draw(st.sampled_from([1.0, 2.0, -0.5, 0.25]))))
            elif op == "dropout":
                add(b.op("dropout", x, rate=draw(st.sampled_from([0.0, 0.1, 0.5]))))
            else:
                add(b.op(op, x), bounded=op in BOUNDED, positive=op in POSITIVE)
        elif kind == "binary":
            y = pick(lambda v, f: width(v) in (w, 1)) or x
            args = (x, y) if draw(st.booleans()) else (y, x)
            add(b.op(draw(st.sampled_from(["add", "sub", "mul"])), *args))
        elif kind == "exp":
            bx = pick(lambda v, f: f.get("bounded")) or b.op("tanh", x)
            add(b.op("exp", bx), positive=True)
        elif kind == "log":
            px = pick(lambda v, f: f.get("positive")) or b.op("sigmoid", x)
            add(b.op("log", px))
        elif kind == "const_binary":
            c_shape = draw(st.sampled_from(["scalar", "row"]))
            val = draw(st.sampled_from([0.0, 1.0, 2.0, -1.0]))
            cw = draw(st.sampled_from([1, 3])) if w == 1 else w  # a row constant may broadcast x up
            c = b.op("const", value=val if c_shape == "scalar" else [val] * cw)
            op = draw(st.sampled_from(["add", "sub", "mul"]))
            add(b.op(op, *((x, c) if draw(st.booleans()) else (c, x))))
        elif kind == "scale_chain":
            s1 = b.op("scale", x, factor=draw(st.sampled_from([0.5, 2.0, -1.0])))
            add(b.op("scale", s1, factor=draw(st.sampled_from([1.0, 3.0, -0.5]))))
        elif kind == "neg_neg":
            add(b.op("neg", b.op("neg", x)))
        elif kind == "neg_add":
            y = pick(lambda v, f: b.graph.type_of(v) == b.graph.type_of(x)) or x
            op = draw(st.sampled_from(["add", "sub"]))
            add(b.op(op, x, b.op("neg", y)))
        elif kind == "duplicate":
            op = draw(st.sampled_from(["tanh", "relu", "scale", "dropout"]))
            attrs = {"factor": 2.0} if op == "scale" else {"rate": 0.5} if op == "dropout" else {}
            other = {"factor": 3.0} if op == "scale" and draw(st.booleans()) else attrs
            v1, v2 = b.op(op, x, **attrs), b.op(op, x, **other)
            add(b.op("add", v1, v2))
        elif kind == "matmul":
            out = draw(st.integers(1, 4))
            h = b.op("matmul", x, param((w, out)))
            if draw(st.booleans()):
                h = b.op("add", h, param((out,)))
            add(h)
        elif kind == "layernorm":
            add(b.op("layernorm", x, param((w,)), param((w,)), eps=1e-5))
        elif kind == "softmax":
            add(b.op("softmax", x), bounded=True, positive=True)
        elif kind == "concat":
            y = pick()
            add(b.op("concat", x, y, axis=1))
        elif kind == "gather":
            if "idx" not in b.graph.inputs:
                b.input("idx", TensorType("i32", ("B",)))
            add(b.op("gather", param((3, draw(st.integers(1, 3)))), "idx"))
        elif kind == "one_hot":
            if "idx" not in b.graph.inputs:
                b.input("idx", TensorType("i32", ("B",)))
            add(b.op("one_hot", "idx", depth=3))
        elif kind == "const_fold":
            c1 = b.op("const", value=[float(draw(st.integers(-2, 2)))] * w)
            c2 = b.op(draw(st.sampled_from(["tanh", "neg", "exp"])), c1)
            c3 = b.op("mul", c2, b.op("const", value=0.5))
            add(b.op("add", x, c3))
        elif kind == "diamond":  # p and q both read x, and p reaches q through another kernel
            p = b.op("tanh", x)
            m = b.op("matmul", p, param((w, w)))
            add(b.op("matmul", m, param((w, w + 1))))
            add(b.op("add", x, m))
        elif kind == "dead":
            b.op("sigmoid", x)

    # outputs: every value nothing else reads (so most ops stay live), and maybe a loss
    last = values[-1][0]
    used = {a for op in b.graph.ops for a in op.args}
    sinks = [v for v, _ in values if v not in used and v not in b.graph.inputs]
    for i, v in enumerate(dict.fromkeys(sinks + [last])):
        b.output(f"out{i}", v)
    loss = draw(st.sampled_from(["none", "bce", "mse", "huber", "ce"]))
    if loss != "none":
        logits = last
        if loss == "ce":
            y = b.input("y_cls", TensorType("i32", ("B",)))
            per_row = b.op("softmax_ce", logits, y, smoothing=draw(st.sampled_from([0.0, 0.1])))
        else:
            y = b.input("y_t", TensorType("f32", ("B",)))
            op = {"bce": "bce_logits", "mse": "squared_error", "huber": "huber"}[loss]
            per_row = b.op(op, logits, y, **({"delta": 1.0} if op == "huber" else {}))
        m = b.op("mean", per_row)
        b.output("loss", b.op("scale", m, factor=draw(st.sampled_from([1.0, 0.5]))))
    return b.graph

