"""`ensemble = K`: K members of one model, trained together, averaged in one graph.

The members train as one vmapped group (runtime/tune_group.py: the same program, K
seeds on the trial axis). The model they make is one graph: K copies of the member's
ops on their own parameters (`member0.combiner.0.w`, ...), sharing the inputs, and
each `pred.*` the mean of the members' (probabilities for binary, category and set
outputs; standardized values for numbers and vectors). `lower` builds it whenever
`train.ensemble` is above 1, so the artifact, `predict`, `mlc compile` and every
graph pass see one ordinary graph and need no notion of members; predict runs the
K members in the one call.
"""
from __future__ import annotations

import numpy as np

from mlc.ir.graph import Builder, Graph, Op


def member_name(k: int, param: str) -> str:
    return f"member{k}.{param}"


def ensemble_graph(member: Graph, k: int) -> Graph:
    """K copies of `member`, averaged: outputs `pred.*`, `loss.*` and `loss` are the members' means."""
    b = Builder(member.name)
    g = b.graph
    g.inputs = dict(member.inputs)
    finals: dict[str, list[str]] = {name: [] for name in member.outputs}
    for m in range(k):
        rename = {p: member_name(m, p) for p in member.params}
        for p in member.params.values():
            b.param(rename[p.name], p.type.shape, dict(p.init))
        for op in member.ops:
            result = str(b._n)  # numbered as the Builder numbers its own ops
            b._n += 1
            rename[op.result] = result
            g.ops.append(Op(result, op.opcode, tuple(rename.get(a, a) for a in op.args), dict(op.attrs), op.type))
        for name, value in member.outputs.items():
            finals[name].append(rename.get(value, value))
    for name, values in finals.items():
        total = values[0]
        for v in values[1:]:
            total = b.op("add", total, v)
        b.output(name, b.op("scale", total, factor=1.0 / k) if k > 1 else total)
    return g


def member_params(stacked: dict, k: int) -> dict:
    """{name: [K, ...]} from the vmapped training -> the ensemble graph's parameters."""
    return {member_name(m, name): np.asarray(v[m]) for m in range(k) for name, v in stacked.items()}
