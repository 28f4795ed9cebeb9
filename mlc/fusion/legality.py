"""What MAY fuse: the kernel templates, and a readable reason for each refusal.

A kernel group is legal when it matches one template:

- matmul_epilogue: one matmul whose output tile is then run through elementwise
  ops of the same shape (bias add, activation, dropout, residual add). The
  matmul's operands come from memory: a matmul reads each operand element once
  per output tile, so fusing their producers (a prologue) would recompute them.
- embedding_bag: one embed_bag (gather the rows of each bag's ids, then their weighted
  sum or mean, one output row per bag; its backward scatter-adds into the table) with
  elementwise ops on its output rows after it.
- row-parallel kernels, which walk the rows of their values: elementwise chains
  (every op over the same rows), row-wise reductions (softmax, softmax_ce,
  layernorm, the per-row losses) with elementwise ops before and after them,
  gathers (gather, one_hot, concat along the last axis: assembling rows), and
  full reductions (mean) as the last step, accumulated block by block.

and when fusing keeps every value computed once: a producer joins its consumer's
kernel only if every consumer of it is in that kernel (values that are graph
outputs are still written out), and the kernels stay acyclic. These functions
return None when a fusion is legal and otherwise a one-line reason. Whether a
legal fusion is worth it is cost.py's question.
"""
from __future__ import annotations

from mlc.ir.graph import ELEMENTWISE_BINARY, ELEMENTWISE_UNARY, Op

ELEMENTWISE = set(ELEMENTWISE_UNARY) | set(ELEMENTWISE_BINARY)
ROWWISE = {"softmax", "softmax_ce", "layernorm", "bce_logits", "squared_error", "abs_error", "huber"}
GATHER = {"gather", "one_hot", "concat"}
REDUCE = {"mean"}
BAG = {"embed_bag"}


def kind(op: Op) -> str:
    """The op's role in a kernel: elementwise | matmul | rowwise | gather | reduce | bag | const."""
    if op.opcode in ELEMENTWISE:
        return "elementwise"
    if op.opcode == "matmul":
        return "matmul"
    if op.opcode in ROWWISE:
        return "rowwise"
    if op.opcode in GATHER:
        return "gather"
    if op.opcode in REDUCE:
        return "reduce"
    if op.opcode in BAG:
        return "bag"
    if op.opcode == "const":
        return "const"
    return "other"  # an op added later without a fusion rule: never fused


def family(ops: list[Op]) -> str:
    """The template a set of ops forms (named after its most constraining op)."""
    kinds = {kind(op) for op in ops}
    for k, name in (("bag", "embedding_bag"), ("matmul", "matmul_epilogue"), ("gather", "gather"), ("rowwise", "rowwise"),
                    ("reduce", "reduce"), ("other", "other")):
        if k in kinds:
            return name
    return "elementwise"


def rows(op: Op):
    """The row space a row-parallel op walks: its output's leading dim (for a
    reduction to a scalar, its input's, which the caller passes as op.type)."""
    return op.type.shape[:1]


def _label(op: Op) -> str:
    return f"%{op.result} ({op.opcode})"


def template_error(ops: list[Op], types: dict, focus: str | None = None) -> str | None:
    """None if these ops may form one kernel, else why not (ignoring dependencies).
    `focus`: the consumer being fused, named when the obstacle is another op of its kernel."""

    def who(op):
        if focus is None or op.result == focus:
            return f"{_label(op)} is"
        return f"%{focus} shares a kernel with {_label(op)}, which is"

    matmuls = [op for op in ops if kind(op) == "matmul"]
    others = [op for op in ops if kind(op) == "other"]
    if others and len(ops) > 1:
        return f"{_label(others[0])} has no fusion rule"
    if len(ops) > 1:
        deep = next((op for op in ops if len(op.type.shape) > 2), None)
        if deep is not None:
            return (f"{_label(deep)} gives {deep.type}, a sequence tensor; fused kernels walk "
                    f"[B, width] rows")
    bags = [op for op in ops if kind(op) == "bag"]
    if bags:
        extra = next((op for op in ops if op is not bags[0] and (kind(op) != "elementwise"
                                                                  or op.type.shape != bags[0].type.shape)), None)
        if extra is not None:
            return (f"{who(extra)} not an elementwise op on the rows of {_label(bags[0])}; an embedding-bag "
                    f"kernel holds the bag and elementwise ops on its output only")
        return None
    if len(matmuls) > 1:
        return f"{_label(matmuls[0])} and {_label(matmuls[1])} are both matmuls; each matmul is its own tiled kernel"
    if matmuls:
        mm = matmuls[0]
        for op in ops:
            if op is mm:
                continue
            if kind(op) != "elementwise":
                return (f"{who(op)} not elementwise; a matmul epilogue (after %{mm.result} matmul) "
                        f"holds only elementwise ops on the output tile")
            if op.type.shape != mm.type.shape:
                return (f"{_label(op)} gives {op.type} but the matmul tile of %{mm.result} is {mm.type}; "
                        f"an epilogue op must have the matmul's output shape")
        return None
    # row-parallel: every op walks the same rows
    space = {}
    for op in ops:
        if kind(op) == "reduce":
            r = types[op.args[0]].shape[:1]
        else:
            r = rows(op)
        space.setdefault(r, op)
        if op.opcode == "concat" and op.attrs["axis"] not in (len(op.type.shape) - 1, -1):
            return f"{_label(op)} joins along axis {op.attrs['axis']}, not the last; it moves rows, so it is its own kernel"
    if len(space) > 1:
        (r1, a), (r2, b) = list(space.items())[:2]
        return (f"{_label(a)} walks rows {_dims(r1)} but {_label(b)} walks rows {_dims(r2)}; "
                f"fusing would recompute one of them per row")
    return None


def _dims(r) -> str:
    return "[" + ",".join(str(d) for d in r) + "]"


def edge_error(p: Op, c: Op, arg_index: int, users: list[str], merged: set[str], outputs: set[str]) -> str | None:
    """Rules about one edge: c reads p (as its arg_index-th argument) inside one kernel."""
    outside = [u for u in users if u not in merged]
    if outside and p.result not in outputs:
        names = ", ".join(f"%{u}" for u in users)
        return f"%{p.result} has {len(users)} consumers ({names}); fusing would recompute it"
    if kind(c) == "matmul":
        return (f"%{c.result} is a matmul; it reads %{p.result} once per output tile, "
                f"so fusing would recompute %{p.result} (no prologue fusion)")
    if c.opcode in ("gather", "embed_bag") and arg_index == 0:
        return f"%{c.result} ({c.opcode}) reads rows of %{p.result} chosen by data; the table must be in memory"
    if kind(p) == "reduce":
        return (f"%{p.result} (mean) is a full reduction; %{c.result} needs its finished value, "
                f"which exists only after every block is done")
    return None


def group_error(members: set[str], ops: dict[str, Op], users: dict[str, list[str]], outputs: set[str],
                types: dict, focus: str | None = None, index: dict[str, int] | None = None) -> str | None:
    """None if these ops may form one kernel, else the first reason they may not.
    index: each op's position in `ops` (given, the members are ordered without walking every op)."""
    ordered = sorted(members, key=index.__getitem__) if index is not None else [r for r in ops if r in members]
    for r in ordered:  # in op order, for a stable first reason
        c = ops[r]
        for i, a in enumerate(c.args):
            if a in members:
                err = edge_error(ops[a], c, i, users.get(a, []), members, outputs)
                if err:
                    return err
    return template_error([ops[r] for r in ordered], types, focus)
