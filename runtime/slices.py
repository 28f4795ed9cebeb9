"""Slices: named subsets of rows (`slice young = age < 25`), evaluated on any table.

A condition compares one column with literals; a missing cell satisfies only
`is missing` (a comparison with a missing cell is false, `not` of it true). Evaluated
with pyarrow compute, one vectorized pass per condition.
"""
from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from mlc.grammar import ast

_COMPARE = {"==": pc.equal, "!=": pc.not_equal, "<": pc.less, "<=": pc.less_equal,
            ">": pc.greater, ">=": pc.greater_equal}


def is_numeric(col: pa.ChunkedArray | pa.Array) -> bool:
    t = col.type
    return pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_decimal(t) or pa.types.is_boolean(t)


def _literal(col, v) -> pa.Scalar:
    if is_numeric(col):
        return pa.scalar(float(v.value))
    return pa.scalar(str(v.value))


def is_nested(col: pa.ChunkedArray | pa.Array) -> bool:
    """A cell holding several values (a Parquet list, struct or map): only `is missing` and
    `is present` apply to it (passes/check_slices.py says so)."""
    return pa.types.is_nested(col.type)


def _column(table: pa.Table, name: str):
    col = table.column(name)
    if is_numeric(col):
        return pc.cast(col, pa.float64())
    if is_nested(col):
        return col
    if not (pa.types.is_string(col.type) or pa.types.is_large_string(col.type)):
        return pc.cast(col, pa.string())
    return col


def mask(cond: ast.Cond, table: pa.Table) -> np.ndarray:
    """A bool per row: does the row belong to the slice?"""
    if cond.op in ("and", "or"):
        parts = [mask(p, table) for p in cond.parts]
        out = parts[0]
        for p in parts[1:]:
            out = (out & p) if cond.op == "and" else (out | p)
        return out
    if cond.op == "not":
        return ~mask(cond.parts[0], table)
    col = _column(table, cond.column)
    if cond.op == "missing":
        return pc.is_null(col).to_numpy(zero_copy_only=False).astype(bool)
    if cond.op == "present":
        return pc.is_valid(col).to_numpy(zero_copy_only=False).astype(bool)
    if cond.op == "in":
        values = pa.array([_literal(col, v).as_py() for v in cond.values])
        hit = pc.is_in(col, value_set=values)
    else:
        hit = _COMPARE[cond.operator](col, _literal(col, cond.values[0]))
    return pc.fill_null(hit, False).to_numpy(zero_copy_only=False).astype(bool)


def parse_condition(text: str) -> ast.Cond:
    """A condition written by `Cond.to_dml` (as the resolved program stores it) -> its AST."""
    from mlc.grammar.parse import parse
    return parse(f'slice s = {text}', "<slice>").slices[0].cond


def row_weights(slices: list[dict], table: pa.Table) -> np.ndarray | None:
    """Each row's loss weight: the product of the weights of the slices it is in, scaled so
    the training rows average 1 (the loss keeps its size). None when every weight is 1."""
    weighted = [s for s in slices if s["weight"] != 1.0]
    if not weighted:
        return None
    w = np.ones(table.num_rows)
    for s in weighted:
        w[mask(parse_condition(s["condition"]), table)] *= s["weight"]
    return (w / w.mean()).astype(np.float32) if w.mean() > 0 else np.ones(table.num_rows, np.float32)
