"""Dense layers as one step of the numpy back end's plan (mlc/backends/numpy_backend.py).

For a few rows every numpy call costs more than its arithmetic, so the plan runs each
`matmul` by a known matrix, with the bias `add` and the `relu` that follow it (when only
they use its result), as one step: the bias and the relu are applied in place, as the
separate ops would compute them. When the matmul reads a concatenation of one-hot columns
(a category input), each index reads its row of the matrix instead, which is what the
product of a one-hot row computes: one `take` for the row instead of a one_hot per
category, a concatenation and a wider product. The sums are the same terms in another
order (float32 rounding; tests/test_numpy_backend.py compares with XLA and the interpreter).
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from mlc.ir.graph import Graph, Op


class DenseLayer:
    """concat([dense..., one_hot(index)...]) @ w (+ bias) (relu), from the arrays and indices."""

    def __init__(self, w: np.ndarray, parts: list[tuple[str, int]], bias: np.ndarray | None, relu: bool):
        # parts: ("dense", width) or ("one_hot", depth), in the concatenation's order; one
        # ("dense", rows of w) part when the matmul reads no concatenation
        dense_rows, tables, bases, offset, base = [], [], [], 0, 0
        for kind, width in parts:
            if kind == "dense":
                dense_rows.extend(range(offset, offset + width))
            else:  # its rows of w, then a zero row for an index outside [0, depth)
                tables += [w[offset:offset + width], np.zeros((1, w.shape[1]), w.dtype)]
                bases.append(base)
                base += width + 1
            offset += width
        self.dense = sum(kind == "dense" for kind, _ in parts)
        self.w_dense = w if len(dense_rows) == len(w) else np.ascontiguousarray(w[dense_rows]) if dense_rows else None
        self.table = np.concatenate(tables) if tables else None
        self.depths = np.array([width for kind, width in parts if kind == "one_hot"], np.uint32)
        self.bases = np.array(bases, np.uint32)
        self.bias, self.relu = bias, relu
        self.product = w.shape  # k x n of its one matrix product (the back end bounds BLAS threads by it)

    def __call__(self, *arrays):
        dense, idx = arrays[:self.dense], arrays[self.dense:]
        out = None
        if idx:
            # (rows, indices); a negative int32 is large as uint32, so clipped to the zero row
            codes = np.concatenate(idx).reshape(len(idx), -1).T if len(idx) > 1 else idx[0].reshape(-1, 1)
            rows = self.table.take(np.minimum(codes.view(np.uint32), self.depths) + self.bases, axis=0)
            out = rows.sum(axis=-2) if len(idx) > 1 else rows[:, 0, :]
        if self.w_dense is not None:
            x = dense[0] if len(dense) == 1 else np.concatenate(dense, axis=-1)
            if out is None:
                out = x @ self.w_dense
            else:
                out += x @ self.w_dense
        if self.bias is not None:
            out += self.bias  # `out` is this step's own array: in place is safe
        if self.relu:
            np.maximum(out, 0, out=out)
        return out


class Fused(NamedTuple):
    result: str  # the value of the last op it replaces
    rule: DenseLayer
    args: tuple[str, ...]


def fuse_dense_layers(ops: list[Op], values: dict[str, np.ndarray], graph: Graph, outputs: set[str]) -> list:
    """The ops with each dense layer (a matmul by a known matrix, the bias add and relu after it,
    the one_hot and concat ops before it that only it reads) replaced by one Fused step."""
    uses: dict[str, int] = dict.fromkeys(outputs, 1)
    for op in ops:
        for a in op.args:
            uses[a] = uses.get(a, 0) + 1
    made = {op.result: op for op in ops}
    consumer = {op.args[0]: op for op in ops if op.args}

    def only_use(value: str, opcode: str) -> Op | None:  # the op that alone reads `value`, if of that kind
        op = consumer.get(value)
        return op if op is not None and op.opcode == opcode and uses.get(value) == 1 else None

    fused, dropped = {}, set()
    for op in ops:
        if op.opcode != "matmul" or op.args[1] not in values or len(op.type.shape) < 2:
            continue
        w = values[op.args[1]]
        if w.ndim != 2 or w.dtype != np.float32:
            continue
        parts, args, inner = [("dense", w.shape[0])], (op.args[0],), []
        cat = made.get(op.args[0])
        if cat is not None and cat.opcode == "concat" and uses[cat.result] == 1 and len(op.type.shape) == 2 \
                and cat.attrs.get("axis") in (1, -1) and len(set(cat.args)) == len(cat.args):
            hots = [made.get(a) for a in cat.args]
            hots = [h if h is not None and h.opcode == "one_hot" and uses[h.result] == 1
                    and graph.type_of(h.args[0]).dtype == "i32" else None for h in hots]
            if any(hots):
                parts = [("one_hot", h.attrs["depth"]) if h else ("dense", graph.type_of(a).shape[-1])
                         for a, h in zip(cat.args, hots)]
                args = tuple([a for a, h in zip(cat.args, hots) if not h] + [h.args[0] for h in hots if h])
                inner = [cat.result] + [h.result for h in hots if h]
        last, bias, relu = op, None, False
        add = only_use(op.result, "add")
        if add is not None and add.args[0] == op.result and add.args[1] in values \
                and values[add.args[1]].shape == (w.shape[1],) and values[add.args[1]].dtype == np.float32:
            last, bias = add, values[add.args[1]]
            after = only_use(add.result, "relu")
            if after is not None:
                last, relu = after, True
        fused[last.result] = Fused(last.result, DenseLayer(w, parts, bias, relu), args)
        replaced = [op] + ([add] if bias is not None else []) + ([last] if relu else [])
        dropped.update(inner + [o.result for o in replaced])
    return [fused.get(op.result, op) for op in ops if op.result in fused or op.result not in dropped]
