"""The graph IR, defined in one place: typed SSA tensor ops.

A Graph has named inputs (data fed per batch), parameters (learned tensors with
an initializer), a list of ops in SSA form (each defines one value, used by name)
and named outputs. Shapes use "B" for the batch dimension. Every op's result
type is computed by its rule in `OPS`, so a graph built here is well-typed.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

Dim = int | str
Shape = tuple[Dim, ...]


@dataclass(frozen=True)
class TensorType:
    dtype: str  # "f32" | "i32"
    shape: Shape

    def __str__(self) -> str:
        return f"{self.dtype}[{','.join(str(d) for d in self.shape)}]"


@dataclass
class Op:
    result: str
    opcode: str
    args: tuple[str, ...]
    attrs: dict
    type: TensorType


@dataclass
class Param:
    name: str
    type: TensorType
    init: dict  # {"kind": "glorot"} | {"kind": "zeros"} | {"kind": "normal", "std": s} | {"kind": "const", "values": [...]}


@dataclass
class Group:
    """A kernel group: an annotation naming ops (or, for an optimizer update, params)
    that one fused kernel computes. The ops stay in `Graph.ops`, so every executor
    that ignores groups still computes the same values (see mlc/fusion/)."""
    name: str
    family: str  # "elementwise" | "matmul_epilogue" | "rowwise" | "gather" | ... | "adamw_update"
    members: tuple[str, ...]
    attrs: dict = field(default_factory=dict)


@dataclass
class Graph:
    name: str
    inputs: dict[str, TensorType] = field(default_factory=dict)
    params: dict[str, Param] = field(default_factory=dict)
    ops: list[Op] = field(default_factory=list)
    outputs: dict[str, str] = field(default_factory=dict)
    groups: list[Group] = field(default_factory=list)  # filled by the fusion pass

    def type_of(self, value: str) -> TensorType:
        if value in self.inputs:
            return self.inputs[value]
        if value in self.params:
            return self.params[value].type
        # newest first: lowering asks for the value it just made, which made a forward
        # scan quadratic in depth (values are SSA: one op each, so the order is free)
        for op in reversed(self.ops):
            if op.result == value:
                return op.type
        raise KeyError(value)


class IRError(Exception):
    pass


# ---- typing rules ------------------------------------------------------------
def _same(ts, a):
    return ts[0]


def _broadcast(ts, a):
    x, y = ts
    if x.dtype != y.dtype:
        raise IRError(f"dtype mismatch {x} vs {y}")
    shape = []
    for dx, dy in zip(reversed((1,) * (len(y.shape) - len(x.shape)) + x.shape),
                      reversed((1,) * (len(x.shape) - len(y.shape)) + y.shape)):
        if dx != dy and 1 not in (dx, dy):
            raise IRError(f"cannot broadcast {x} with {y}")
        shape.append(dy if dx == 1 else dx)
    return TensorType(x.dtype, tuple(reversed(shape)))


def _matmul(ts, a):
    x, w = ts
    if x.shape[-1] != w.shape[0]:
        raise IRError(f"matmul inner dimensions differ: {x} @ {w}")
    return TensorType(x.dtype, x.shape[:-1] + w.shape[1:])


def _concat(ts, a):
    axis = a["axis"]
    width = sum(t.shape[axis] for t in ts)
    return TensorType(ts[0].dtype, ts[0].shape[:axis] + (width,) + ts[0].shape[axis + 1:])


def _gather(ts, a):
    table, idx = ts
    if idx.dtype != "i32":
        raise IRError(f"gather indices must be i32, got {idx}")
    return TensorType(table.dtype, idx.shape + table.shape[1:])


def _one_hot(ts, a):
    return TensorType("f32", ts[0].shape + (a["depth"],))


def _per_row(ts, a):
    return TensorType("f32", ts[0].shape[:1])


def _scalar(ts, a):
    return TensorType("f32", ())


def _const(ts, a):
    import numpy as np
    return TensorType(a.get("dtype", "f32"), tuple(np.shape(a["value"])))


def _row_reduce(ts, a):
    return TensorType(ts[0].dtype, ts[0].shape[:-1] + (1,))


def _reshape(ts, a):
    """Reshape the feature dimensions; the batch dimension stays."""
    x, shape = ts[0], tuple(a["shape"])
    size = lambda dims: __import__("math").prod(dims)  # noqa: E731
    if size(x.shape[1:]) != size(shape):
        raise IRError(f"cannot reshape {x} to [B,{','.join(map(str, shape))}]: sizes differ")
    return TensorType(x.dtype, x.shape[:1] + shape)


def _embed_bag(ts, a):
    table, ids, weights = ts
    if ids.dtype != "i32" or len(ids.shape) != 2:
        raise IRError(f"embed_bag ids must be i32[B,L], got {ids}")
    if weights.shape != ids.shape:
        raise IRError(f"embed_bag weights {weights} must match ids {ids}")
    if a.get("mode") not in ("sum", "mean"):
        raise IRError(f"embed_bag mode must be 'sum' or 'mean', not {a.get('mode')!r}")
    return TensorType(table.dtype, ids.shape[:1] + table.shape[1:])


def _conv1d(ts, a):
    x, w = ts
    if len(x.shape) != 3 or len(w.shape) != 3 or w.shape[1] != x.shape[2]:
        raise IRError(f"conv1d takes x[B,T,D] and w[K,D,F], got {x} and {w}")
    return TensorType(x.dtype, x.shape[:2] + w.shape[2:])


def _masked_pool(ts, a):
    x, mask = ts
    if len(x.shape) != 3 or mask.shape != x.shape[:2]:
        raise IRError(f"masked pooling takes x[B,T,F] and mask[B,T], got {x} and {mask}")
    return TensorType(x.dtype, x.shape[:1] + x.shape[2:])


def _attention(ts, a):
    q, k, v, mask = ts
    if not (q.shape == k.shape == v.shape) or len(q.shape) != 3 or mask.shape != q.shape[:2]:
        raise IRError(f"attention takes q, k, v [B,T,D] and mask[B,T], got {q}, {k}, {v}, {mask}")
    if q.shape[2] % a.get("heads", 1):
        raise IRError(f"attention: width {q.shape[2]} is not divisible by {a.get('heads')} heads")
    return q


def _per_row_pair(ts, a):
    p, y = ts
    if p.shape != y.shape or len(p.shape) != 2:
        raise IRError(f"vector losses take p[B,K] and y[B,K] of one shape, got {p} and {y}")
    return TensorType("f32", p.shape[:1])


ELEMENTWISE_UNARY = ("relu", "gelu", "silu", "tanh", "sigmoid", "neg", "exp", "log", "dropout", "scale")
ELEMENTWISE_BINARY = ("add", "sub", "mul")

# opcode -> (number of args or None for any, result type rule)
OPS: dict[str, tuple[int | None, Callable]] = {
    **{op: (1, _same) for op in ELEMENTWISE_UNARY},
    **{op: (2, _broadcast) for op in ELEMENTWISE_BINARY},
    "softmax": (1, _same),
    "matmul": (2, _matmul),
    "concat": (None, _concat),
    "gather": (2, _gather),
    "one_hot": (1, _one_hot),
    "layernorm": (3, _same),
    "bce_logits": (2, _per_row),
    "softmax_ce": (2, _per_row),
    "squared_error": (2, _per_row),
    "abs_error": (2, _per_row),
    "huber": (2, _per_row),
    "mean": (1, _scalar),
    "row_sum": (1, _row_reduce),  # over the last axis, kept as size 1
    "row_mean": (1, _row_reduce),
    "reshape": (1, _reshape),  # {shape=[...]}: the dimensions after the batch
    "const": (0, _const),  # {value=<number or nested list>, dtype='f32'|'i32' (default f32)}
    # Columns that are not tabular (text, set, bag, sequence: runtime/types/).
    "embed_bag": (3, _embed_bag),  # (table[V,D], ids[B,L], weights[B,L]) {mode='sum'|'mean'} -> [B,D]
    "conv1d": (2, _conv1d),  # (x[B,T,D], w[K,D,F]) -> [B,T,F], 'same' padding
    "masked_max": (2, _masked_pool),  # (x[B,T,F], mask[B,T]) -> [B,F]; an empty row gives 0
    "masked_mean": (2, _masked_pool),
    "attention": (4, _attention),  # (q, k, v [B,T,D], mask[B,T]) {heads} -> [B,T,D]
    "multi_bce": (2, _per_row_pair),  # (logits[B,K], y[B,K] in {0,1}) -> [B]: sum of K sigmoid losses
    "vec_squared_error": (2, _per_row_pair),  # (p[B,K], y[B,K]) -> [B]: mean over K
    "vec_abs_error": (2, _per_row_pair),
}


class Builder:
    """Appends ops to a graph, naming results %0, %1, ... and typing them."""

    def __init__(self, name: str):
        self.graph = Graph(name)
        self._n = 0

    def input(self, name: str, type_: TensorType) -> str:
        self.graph.inputs[name] = type_
        return name

    def param(self, name: str, shape: Shape, init: dict) -> str:
        self.graph.params[name] = Param(name, TensorType("f32", tuple(shape)), init)
        return name

    def op(self, opcode: str, *args: str, **attrs) -> str:
        arity, rule = OPS[opcode]
        if arity is not None and len(args) != arity:
            raise IRError(f"{opcode} takes {arity} arguments, got {len(args)}")
        type_ = rule([self.graph.type_of(a) for a in args], attrs)
        result = f"{self._n}"
        self._n += 1
        self.graph.ops.append(Op(result, opcode, tuple(args), dict(attrs), type_))
        return result

    def output(self, name: str, value: str):
        self.graph.outputs[name] = value


def verify(g: Graph) -> None:
    """Every value defined once before use, every type equal to its rule's."""
    defined = set(g.inputs) | set(g.params)
    for op in g.ops:
        if op.opcode not in OPS:
            raise IRError(f"%{op.result}: unknown op `{op.opcode}`")
        for a in op.args:
            if a not in defined:
                raise IRError(f"%{op.result}: uses %{a} before it is defined")
        if op.result in defined:
            raise IRError(f"%{op.result} is defined twice")
        expected = OPS[op.opcode][1]([g.type_of(a) for a in op.args], op.attrs)
        if expected != op.type:
            raise IRError(f"%{op.result}: type {op.type} but {op.opcode} gives {expected}")
        defined.add(op.result)
    for name, v in g.outputs.items():
        if v not in defined:
            raise IRError(f"output {name} refers to undefined %{v}")
    grouped: dict[str, str] = {}
    op_results = {op.result for op in g.ops}
    for grp in g.groups:
        for m in grp.members:
            if m not in op_results and m not in g.params:
                raise IRError(f"group {grp.name} names %{m}, which is neither an op nor a param")
            if m in op_results and m in grouped:
                raise IRError(f"%{m} is in two groups, {grouped[m]} and {grp.name}")
            grouped[m] = grp.name


def _attrs(attrs: dict) -> str:
    return " {" + ", ".join(f"{k}={v!r}" for k, v in attrs.items()) + "}" if attrs else ""


def _init(init: dict) -> str:
    rest = ", ".join(f"{k}={v!r}" for k, v in init.items() if k != "kind")
    return f"{init['kind']}({rest})"


def print_graph(g: Graph) -> str:
    lines = [f"graph {g.name} {{"]
    lines += [f"  input %{n} : {t}" for n, t in g.inputs.items()]
    lines += [f"  param %{p.name} : {p.type} = {_init(p.init)}" for p in g.params.values()]
    for op in g.ops:
        args = ", ".join(f"%{a}" for a in op.args)
        lines.append(f"  %{op.result} = {op.opcode}({args}){_attrs(op.attrs)} : {op.type}")
    lines += [f"  output {n} = %{v}" for n, v in g.outputs.items()]
    for grp in g.groups:
        members = ", ".join(f"%{m}" for m in grp.members)
        lines.append(f"  group {grp.name} {grp.family}({members}){_attrs(grp.attrs)}")
    lines.append("}")
    return "\n".join(lines) + "\n"


def live_ops(g: Graph, wanted: list[str]) -> list[Op]:
    """The ops needed to compute the wanted outputs, in order."""
    need = {g.outputs[w] for w in wanted}
    keep = []
    for op in reversed(g.ops):
        if op.result in need:
            keep.append(op)
            need.update(op.args)
    return list(reversed(keep))


# ---- helpers for passes -----------------------------------------------------------
def clone(g: Graph) -> Graph:
    """A deep copy, so a pass can edit it and still be pure."""
    import copy
    return copy.deepcopy(g)


def consumers(g: Graph) -> dict[str, list[str]]:
    """value -> results of the ops that use it (in op order, once per op)."""
    uses: dict[str, list[str]] = {}
    for op in g.ops:
        for a in dict.fromkeys(op.args):
            uses.setdefault(a, []).append(op.result)
    return uses


def substitute(g: Graph, mapping: dict[str, str]) -> None:
    """Replace every use of a value by another (in place), following chains."""
    def resolve(v):
        while v in mapping:
            v = mapping[v]
        return v
    for op in g.ops:
        op.args = tuple(resolve(a) for a in op.args)
    g.outputs = {n: resolve(v) for n, v in g.outputs.items()}
