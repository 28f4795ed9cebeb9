"""Shape and dtype inference: re-derive every op's type from its rule in OPS.

Why: passes and hand-written IR can leave a stale or wrong type behind; this pass
recomputes each type in order, fills in any that is missing (None), and fails
loudly, naming the op, when a written type disagrees with its rule or a value is
used before it is defined. Every later pass may then trust `op.type`.
"""
from __future__ import annotations

from mlc.ir.graph import OPS, Graph, IRError, clone


def run(graph: Graph) -> Graph:
    g = clone(graph)
    types = {**g.inputs, **{n: p.type for n, p in g.params.items()}}
    for op in g.ops:
        if op.opcode not in OPS:
            raise IRError(f"%{op.result}: unknown op `{op.opcode}`")
        arity, rule = OPS[op.opcode]
        if arity is not None and len(op.args) != arity:
            raise IRError(f"%{op.result} = {op.opcode}: takes {arity} arguments, got {len(op.args)}")
        for a in op.args:
            if a not in types:
                raise IRError(f"%{op.result} = {op.opcode}: uses %{a} before it is defined")
        if op.result in types:
            raise IRError(f"%{op.result} is defined twice")
        try:
            inferred = rule([types[a] for a in op.args], op.attrs)
        except IRError as e:
            raise IRError(f"%{op.result} = {op.opcode}: {e}") from None
        if op.type is not None and op.type != inferred:
            raise IRError(f"%{op.result} = {op.opcode}: declared {op.type} but its inputs give {inferred}")
        op.type = inferred
        types[op.result] = inferred
    for name, v in g.outputs.items():
        if v not in types:
            raise IRError(f"output {name} refers to undefined %{v}")
    return g
