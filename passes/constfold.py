"""Constant folding: evaluate ops whose arguments are all constants.

Why: expert blocks and rewrites produce arithmetic on literals (a scale of a constant,
exp of a constant row); computing it once at compile time, with the reference
interpreter so the value is exactly what the op would give at run time, leaves a
`const` op and fewer kernels. `dropout` is never folded (random in training), and
results larger than MAX_ELEMENTS stay computed, so the IR text stays readable.
"""
from __future__ import annotations

import numpy as np

from mlc.ir.graph import Graph, Op, clone
from mlc.ir.interp import eval_op

MAX_ELEMENTS = 1024
NEVER = {"const", "dropout"}


def run(graph: Graph) -> Graph:
    g = clone(graph)
    values: dict[str, np.ndarray] = {}
    ops, changed = [], False
    for op in g.ops:
        if op.opcode == "const":
            values[op.result] = eval_op(op, [])
        elif op.opcode not in NEVER and op.args and all(a in values for a in op.args) \
                and all(isinstance(d, int) for d in op.type.shape) \
                and int(np.prod(op.type.shape, dtype=np.int64)) <= MAX_ELEMENTS:
            value = eval_op(op, [values[a] for a in op.args])
            attrs = {"value": value.tolist()}
            if op.type.dtype == "i32":
                attrs["dtype"] = "i32"
            op = Op(op.result, "const", (), attrs, op.type)
            values[op.result] = value
            changed = True
        ops.append(op)
    g.ops = ops
    if changed:
        g.groups = []  # stale: fusion runs again after this pass
    return g
