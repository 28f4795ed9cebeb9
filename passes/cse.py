"""Common subexpression elimination: compute each distinct value once.

Why: lowering repeats work (the same activation of the same value, the same
constant); two ops with the same opcode, the same arguments, the same attributes
and the same type compute the same value, so later uses read the first one.
`dropout` is never merged: two dropouts of one value draw different masks.
Run after canonicalization, which orders commutative operands, so add(a, b) and
add(b, a) meet here.
"""
from __future__ import annotations

from mlc.ir.graph import Graph, clone, substitute

IMPURE = {"dropout"}  # random in train mode: equal-looking ops differ


def key(op) -> tuple:
    return (op.opcode, op.args, repr(sorted(op.attrs.items())), op.type)


def run(graph: Graph) -> Graph:
    g = clone(graph)
    seen: dict[tuple, str] = {}
    alias: dict[str, str] = {}
    ops = []
    for op in g.ops:
        op.args = tuple(alias.get(a, a) for a in op.args)
        if op.opcode not in IMPURE:
            k = key(op)
            if k in seen:
                alias[op.result] = seen[k]
                continue
            seen[k] = op.result
        ops.append(op)
    g.ops = ops
    substitute(g, alias)
    if alias:
        g.groups = []  # stale: fusion runs again after this pass
    return g
