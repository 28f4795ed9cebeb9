"""A request of a few plain rows, encoded without Arrow or numpy per column.

A service predicts one row at a time, and for one row the fixed cost of building Arrow
arrays, or of numpy calls on one-element arrays, is most of the time. When every input is
a number, binary or category and every cell is a plain Python value (int, float, str or
None), `RowEncoder` computes each cell with Python floats from what it precomputed once
per model, and makes one numpy array at the end. Python floats are IEEE doubles, as the
float64 arithmetic of runtime/preprocess.py, so the arrays are exactly those
`encode_inputs` gives (tests/test_predict_service.py compares them). Anything else
(another input type, text in a number input, an infinite value, a bool) returns None:
the general path reads it and gives its documented conversion or error.
"""
from __future__ import annotations

import math
from bisect import bisect_right

import numpy as np

from mlc import spec
from mlc.runtime import preprocess as P

MAX_ROWS = P.SMALL_BATCH
_LABEL = {str, type(None)}


def _number_rule(st: dict):
    """fn(cell) -> the number's columns, as runtime/preprocess.py's _encode_number computes them."""
    fill, shift, scale, clip, indicator = st["fill"], st["shift"], st["scale"], st["clip"], st["indicator"]
    edges = [float(e) for e in st["edges"]]
    bins = [(edges[i], edges[i + 1] - edges[i]) for i in range(len(edges) - 1)]  # PLE: one column each
    uppers, ones, zeros = edges[1:], [1.0] * len(bins), [0.0] * len(bins)

    def encode(v):
        missing = v is None or v != v
        x = fill if missing else float(v)
        s = (x - shift) / scale
        if clip:
            t = s / 3.0
            s = s / math.sqrt(1.0 + t * t)
        cells = [s]
        if bins:
            # clip((x - low) / width, 0, 1) is exactly 1 for the k bins whose upper edge x reaches
            # (rounding is monotonic) and exactly 0 above the one bin x falls in
            k = bisect_right(uppers, x)
            cells += ones[:k]
            if k < len(bins):
                low, width = bins[k]
                cells.append(min(max((x - low) / width, 0.0), 1.0))
                cells += zeros[k + 1:]
        if indicator:
            cells.append(1.0 if missing else 0.0)
        return cells
    return encode


class RowEncoder:
    """The model's input arrays for a few plain rows; built once per loaded model."""

    def __init__(self, resolved: spec.Resolved, state: dict):
        self.plain = all(f["type"] in ("number", "binary", "category") for f in resolved.inputs)
        # (name, kind, rule): for a number rule(cell) -> its cells of x_num; for binary and
        # category inputs {value: code}, a value outside it being unknown (code 0)
        self.inputs = []
        self.category_names = [f"cat_{f['name']}" for f in resolved.inputs if f["type"] == "category"]
        self.width = 0
        for f in resolved.inputs if self.plain else ():
            st = state["inputs"][f["name"]]
            self.width += P._dense_width(f, st)
            if f["type"] == "number":
                self.inputs.append((f["name"], "number", _number_rule(st)))
            else:
                vocab = st["values"] if f["type"] == "binary" else st["vocab"]
                index = {v: i + 1 for i, v in enumerate(vocab)}  # 0: missing or unknown
                if f["type"] == "binary":
                    codes = P.binary_codes(np.arange(3), vocab).tolist()
                    index = {v: codes[min(i, 2)] for v, i in index.items()}
                self.inputs.append((f["name"], f["type"], index))

    def encode(self, cols: dict[str, list], unknown: dict) -> dict | None:
        """{input: list of cells} -> the input arrays, or None for the general path; counts
        present cells outside a vocabulary into `unknown`."""
        n = len(next(iter(cols.values()))) if cols else 0
        if not self.plain or not 0 < n <= MAX_ROWS:
            return None
        if n == 1:
            return self._encode_one(cols, unknown)
        rows: list[list] = [[] for _ in range(n)]
        categories: list[list] = []
        counts: dict[str, int] = {}
        for name, kind, rule in self.inputs:
            cells = cols[name]
            if type(cells) is not list and type(cells) is not tuple:
                return None
            if kind == "number":
                for v in cells:
                    if not _plain_number(v):
                        return None  # a bool, text, an inexact int, an infinity: the general path says so
                for row, v in zip(rows, cells):
                    row += rule(v)
                continue
            if not set(map(type, cells)) <= _LABEL:
                return None
            found = [rule.get(v, 0) if v is not None else 0 for v in cells]
            counts[name] = sum(1 for v in cells if v is not None and v not in rule)
            if kind == "binary":
                for row, code in zip(rows, found):
                    row.append(code)
            else:
                categories.append(found)
        unknown.update(counts)
        return self._arrays(rows, categories, n)

    def _encode_one(self, cols: dict[str, list], unknown: dict) -> dict | None:
        """encode() for one row (a service's usual request), without its loops over rows."""
        row: list = []
        categories: list[list] = []
        counts: dict[str, int] = {}
        for name, kind, rule in self.inputs:
            cells = cols[name]
            if type(cells) is not list and type(cells) is not tuple:
                return None
            v = cells[0]
            if kind == "number":
                if not _plain_number(v):
                    return None
                row += rule(v)
                continue
            if v is None:
                code = counts[name] = 0
            elif type(v) is str:
                code = rule.get(v)
                counts[name] = code is None
                code = code or 0
            else:
                return None
            if kind == "binary":
                row.append(code)
            else:
                categories.append([code])
        unknown.update({name: int(lost) for name, lost in counts.items()})
        return self._arrays([row], categories, 1)

    def _arrays(self, rows: list[list], categories: list[list], n: int) -> dict:
        codes = np.array(categories, np.int32).reshape(len(categories), n)  # one array, a row each
        out = dict(zip(self.category_names, codes))
        out["x_num"] = np.array(rows, np.float32).reshape(n, self.width)
        return out


def _plain_number(v) -> bool:
    """A cell the number rule reads as the general path does: a float, an exact int or None."""
    t = type(v)
    if t is float:
        return not math.isinf(v)
    return v is None or (t is int and abs(v) <= 2 ** 53)
