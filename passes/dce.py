"""Dead code elimination: drop what no output needs.

Why: lowering and the other passes leave ops whose results reach no output (and
inputs or params nothing reads). Removing unused graph inputs and params means an
unused input costs nothing: it is neither fed, moved to the device, nor trained.
Kernel groups lose members that are gone (and vanish when empty).
"""
from __future__ import annotations

from mlc.ir.graph import Graph, clone


def run(graph: Graph) -> Graph:
    g = clone(graph)
    need = set(g.outputs.values())
    keep = []
    for op in reversed(g.ops):
        if op.result in need:
            keep.append(op)
            need.update(op.args)
    g.ops = list(reversed(keep))
    g.inputs = {n: t for n, t in g.inputs.items() if n in need}
    g.params = {n: p for n, p in g.params.items() if n in need}
    live = {op.result for op in g.ops} | set(g.params)
    groups = []
    for grp in g.groups:
        grp.members = tuple(m for m in grp.members if m in live)
        if grp.members:
            groups.append(grp)
    g.groups = groups
    return g
