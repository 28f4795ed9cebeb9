"""Cells that hold several values: separators, members, padded id matrices.

Everything here is vectorized with pyarrow compute and numpy: a cell is never
visited by a Python loop, so encoding stays fast on large tables.
"""
from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from mlc import spec
from mlc.runtime import data as D


def strings(col: pa.ChunkedArray | pa.Array) -> pa.Array:
    """The column as one utf8 array (numbers and booleans as their canonical text)."""
    if isinstance(col, pa.ChunkedArray):
        col = (col.chunk(0) if col.num_chunks == 1 else col.combine_chunks()) if col.num_chunks else \
            pa.array([], pa.string())
    if col.type == pa.string():
        return col
    if pa.types.is_large_string(col.type):
        return col.cast(pa.string())
    if pa.types.is_dictionary(col.type) or pa.types.is_integer(col.type) or pa.types.is_boolean(col.type):
        return col.cast(pa.string())  # 7 -> "7", True -> "true", as D.as_strings writes them
    if pa.types.is_floating(col.type):
        values = col.to_numpy(zero_copy_only=False)
        if D.integral_floats(values):  # 2.0 -> "2", as D.as_strings writes it; NaN is missing
            return pa.array(values, pa.float64(), mask=np.isnan(values)).cast(pa.int64()).cast(pa.string())
    return pa.array(D.as_strings(pa.chunked_array([col])), pa.string())


def infer_separator(col: pa.Array, candidates=spec.SEPARATORS) -> str | None:
    """The first of `|`, `;`, `,` found in at least 1% of the cells, else a space if any cell
    holds one, else None (no cell holds two values)."""
    present = pc.drop_null(col)
    n = max(1, len(present))
    for sep in candidates:
        hits = pc.sum(pc.cast(pc.match_substring(present, sep), pa.int64())).as_py() or 0
        if sep == " ":
            hits = pc.sum(pc.cast(pc.match_substring(pc.utf8_trim_whitespace(present), sep),
                                  pa.int64())).as_py() or 0
            if hits:
                return sep
        elif hits >= max(1, 0.01 * n):
            return sep
    return None


def members(col: pa.Array, sep: str) -> tuple[pa.Array, np.ndarray, np.ndarray]:
    """(flat members, row of each member, member count per row): cells split on `sep`,
    each member trimmed, empty members dropped; a missing cell has no members."""
    parts = pc.split_pattern(pc.fill_null(col, ""), pattern=sep) if sep != " " else \
        pc.utf8_split_whitespace(pc.fill_null(col, ""))
    flat = pc.utf8_trim_whitespace(pc.list_flatten(parts))
    row = pc.list_parent_indices(parts).to_numpy().astype(np.int64)
    keep = pc.greater(pc.utf8_length(flat), 0)
    flat = pc.filter(flat, keep)
    row = row[keep.to_numpy(zero_copy_only=False)]
    counts = np.bincount(row, minlength=len(col))
    return flat, row, counts


def count_values(flat: pa.Array) -> tuple[list[str], np.ndarray]:
    """Distinct values, most frequent first (ties in sorted order), and their counts."""
    if len(flat) == 0:
        return [], np.zeros(0, np.int64)
    vc = pc.value_counts(flat)
    values = [str(v) for v in vc.field(0).to_pylist()]
    counts = vc.field(1).to_numpy()
    # Python's sort, not a numpy '<U' array: that would pad every value to the longest one.
    order = sorted(range(len(values)), key=lambda i: (-counts[i], values[i]))
    return [values[i] for i in order], counts[order]


def lookup(flat: pa.Array, vocab: list[str], offset: int = 1) -> np.ndarray:
    """Index of each value in vocab plus offset; values not in it give offset - 1 (<unknown>)."""
    if len(flat) == 0:
        return np.zeros(0, np.int32)
    idx = pc.index_in(flat, value_set=pa.array(vocab, pa.string()))
    return (pc.fill_null(idx, -1).to_numpy(zero_copy_only=False) + offset).astype(np.int32)


def padded(ids: np.ndarray, row: np.ndarray, n_rows: int, length: int,
           weights: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(ids[n_rows, length], weights[n_rows, length]) from flat ids and their rows (sorted by
    row): each row's first `length` members; padding has id 0 and weight 0."""
    out = np.zeros((n_rows, length), np.int32)
    w = np.zeros((n_rows, length), np.float32)
    if len(ids):
        starts = np.searchsorted(row, np.arange(n_rows))
        pos = np.arange(len(ids)) - starts[row]
        keep = pos < length
        out[row[keep], pos[keep]] = ids[keep]
        w[row[keep], pos[keep]] = 1.0 if weights is None else weights[keep]
    return out, w


def length_for(counts: np.ndarray, quantile: float, cap: int) -> int:
    """A padded length that holds `quantile` of the rows whole, at most `cap`, at least 1."""
    if counts.size == 0:
        return 1
    return int(max(1, min(cap, np.ceil(np.quantile(counts, quantile)))))
