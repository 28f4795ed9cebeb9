"""Canonicalization and algebraic simplification, as a table of named rewrites.

Why: lowering writes what is easy to generate (a `scale` by 1.0 for a loss weight of
one, an `add` of a zero constant, chains of scales); removing them makes smaller
graphs and larger fusion groups, and a canonical operand order (commutative
operands: computed values first, then inputs, params, constants) lets CSE find
`add(a, b)` and `add(b, a)` equal. Each rule keeps the value bit-for-bit or up to
float rounding (scale folding multiplies factors). A rule that would change a
value's shape (an identity that broadcasts) does not fire. Rules never touch
values that could differ in NaN or infinity handling (no x*0 -> 0, no x-x -> 0).
"""
from __future__ import annotations

import numpy as np

from mlc.ir.graph import Graph, Op, clone, substitute

COMMUTATIVE = {"add", "mul"}


class _Ctx:
    def __init__(self, g: Graph):
        self.types = {**g.inputs, **{n: p.type for n, p in g.params.items()}}
        self.rank = {**{n: (1, i) for i, n in enumerate(g.inputs)},
                     **{n: (2, i) for i, n in enumerate(g.params)}}
        self.producer: dict[str, Op] = {}

    def define(self, op: Op, index: int):
        self.producer[op.result] = op
        self.types[op.result] = op.type
        self.rank[op.result] = (3 if op.opcode == "const" else 0, index)

    def const(self, v):
        """The value of a const op as a numpy array, else None."""
        p = self.producer.get(v)
        return np.asarray(p.attrs["value"]) if p is not None and p.opcode == "const" else None

    def is_(self, v, opcode):
        p = self.producer.get(v)
        return p if p is not None and p.opcode == opcode else None


def _all(c, value) -> bool:
    return c is not None and c.size > 0 and bool(np.all(c == value))


# Each rule: (op, ctx) -> None (no change) | str (the op's value equals this value)
#                        | Op (a replacement op with the same result name).
def commute(op, ctx):
    if op.opcode in COMMUTATIVE and ctx.rank[op.args[1]] < ctx.rank[op.args[0]]:
        return Op(op.result, op.opcode, op.args[::-1], op.attrs, op.type)


def identity(op, ctx):
    """x + 0, x - 0, x * 1 -> x (only when the result has x's type)."""
    if op.opcode not in ("add", "sub", "mul"):
        return None
    x, c = op.args[0], ctx.const(op.args[1])
    neutral = 1 if op.opcode == "mul" else 0
    if _all(c, neutral) and ctx.types[x] == op.type:
        return x


def zero_minus(op, ctx):
    """0 - x -> neg(x)."""
    if op.opcode == "sub" and _all(ctx.const(op.args[0]), 0) and ctx.types[op.args[1]] == op.type:
        return Op(op.result, "neg", (op.args[1],), {}, op.type)


def mul_scalar(op, ctx):
    """x * c for a scalar constant c -> scale(x) {factor=c}."""
    if op.opcode != "mul":
        return None
    c = ctx.const(op.args[1])
    if c is not None and c.shape == () and op.type.dtype == "f32" and ctx.types[op.args[0]] == op.type:
        return Op(op.result, "scale", (op.args[0],), {"factor": float(c)}, op.type)


def scale_one(op, ctx):
    if op.opcode == "scale" and op.attrs["factor"] == 1.0:
        return op.args[0]


def scale_minus_one(op, ctx):
    if op.opcode == "scale" and op.attrs["factor"] == -1.0:
        return Op(op.result, "neg", op.args, {}, op.type)


def scale_scale(op, ctx):
    """scale(scale(x, a), b) -> scale(x, a*b); also through a neg."""
    if op.opcode != "scale":
        return None
    inner = ctx.is_(op.args[0], "scale")
    if inner:
        return Op(op.result, "scale", inner.args, {"factor": inner.attrs["factor"] * op.attrs["factor"]}, op.type)
    inner = ctx.is_(op.args[0], "neg")
    if inner:
        return Op(op.result, "scale", inner.args, {"factor": -op.attrs["factor"]}, op.type)


def neg_neg(op, ctx):
    """neg(neg(x)) -> x; neg(scale(x, a)) -> scale(x, -a)."""
    if op.opcode != "neg":
        return None
    if ctx.is_(op.args[0], "neg"):
        return ctx.producer[op.args[0]].args[0]
    inner = ctx.is_(op.args[0], "scale")
    if inner:
        return Op(op.result, "scale", inner.args, {"factor": -inner.attrs["factor"]}, op.type)


def add_neg(op, ctx):
    """x + neg(y) -> x - y; neg(x) + y -> y - x; x - neg(y) -> x + y."""
    if op.opcode not in ("add", "sub"):
        return None
    x, y = op.args
    if ctx.is_(y, "neg"):
        return Op(op.result, "sub" if op.opcode == "add" else "add", (x, ctx.producer[y].args[0]), {}, op.type)
    if op.opcode == "add" and ctx.is_(x, "neg"):
        return Op(op.result, "sub", (y, ctx.producer[x].args[0]), {}, op.type)


def dropout_zero(op, ctx):
    if op.opcode == "dropout" and op.attrs["rate"] == 0.0:
        return op.args[0]


RULES = [commute, identity, zero_minus, mul_scalar, scale_one, scale_minus_one, scale_scale,
         neg_neg, add_neg, dropout_zero]


def run(graph: Graph) -> Graph:
    g = clone(graph)
    ctx = _Ctx(g)
    alias: dict[str, str] = {}
    ops = []
    for op in g.ops:
        op.args = tuple(alias.get(a, a) for a in op.args)
        for _ in range(100):  # every rule makes progress; the bound is a guard
            for rule in RULES:
                out = rule(op, ctx)
                if out is not None:
                    break
            else:
                break
            if isinstance(out, str):
                alias[op.result] = alias.get(out, out)
                break
            op = out
        if op.result not in alias:
            ctx.define(op, len(ops))
            ops.append(op)
    changed = alias or ops != graph.ops
    g.ops = ops
    substitute(g, alias)
    if changed:
        g.groups = []  # stale: fusion runs again after this pass
    return g
