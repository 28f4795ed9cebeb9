"""A request of a few plain rows, encoded without Arrow.

A service predicts one row at a time, and for one row the fixed cost of building Arrow
arrays and calling compute kernels per column is most of the time. When every input is a
number, binary or category and every cell is a plain Python value (int, float, str or
None), the encoding is a handful of dict lookups and the number encoder of
runtime/preprocess.py on tiny arrays; the arrays are the same as `encode_inputs` gives
(tests/test_predict_service.py compares them). Anything else (another input type, text in
a number input, an infinite value, a bool) returns None: the general path reads it and
gives its documented conversion or error.
"""
from __future__ import annotations

import math

import numpy as np

from mlc import spec
from mlc.runtime import preprocess as P

MAX_ROWS = P.SMALL_BATCH
_NUMBER = {float, int, type(None)}
_LABEL = {str, type(None)}


def encode(resolved: spec.Resolved, state: dict, cols: dict[str, list], unknown: dict) -> dict | None:
    """The model's input arrays for `cols` ({input: list of cells}), or None for the general path."""
    n = len(next(iter(cols.values()))) if cols else 0
    if not 0 < n <= MAX_ROWS or any(f["type"] not in ("number", "binary", "category") for f in resolved.inputs):
        return None
    widths = [P._dense_width(f, state["inputs"][f["name"]]) for f in resolved.inputs]
    x_num = np.zeros((n, sum(widths)), np.float32)
    out: dict[str, np.ndarray] = {}
    counts: dict[str, int] = {}
    at = 0
    for f, width in zip(resolved.inputs, widths):
        name, st, cells = f["name"], state["inputs"][f["name"]], cols[f["name"]]
        block = x_num[:, at:at + width]
        at += width
        if isinstance(cells, np.ndarray) or not set(map(type, cells)) <= (_NUMBER if f["type"] == "number" else _LABEL):
            return None
        if f["type"] == "number":
            if any(type(v) is int and abs(v) > 2 ** 53 for v in cells):
                return None  # not exactly a float: the general path says so
            values = [math.nan if v is None else float(v) for v in cells]
            if any(math.isinf(v) for v in values):
                return None  # the general path names the row
            P._encode_number(np.array(values, np.float64), st, block)
            continue
        vocab = st["values"] if f["type"] == "binary" else st["vocab"]
        index = P._vocab_lookup(vocab)[1]
        found = [index.get(v, -1) if v is not None else -1 for v in cells]
        counts[name] = sum(1 for v, i in zip(cells, found) if i < 0 and v is not None)
        codes = np.array(found, np.int64) + 1
        if f["type"] == "binary":
            block[:, 0] = P.binary_codes(codes, vocab)
        else:
            out[f"cat_{name}"] = codes.astype(np.int32)
    unknown.update(counts)
    out["x_num"] = x_num
    return out
