"""Type-driven preprocessing, fitted on the training split only.

`fit` returns a JSON-serializable state (stored in the artifact); `encode_inputs`
and `encode_targets` apply it to any table: training, validation, test, or rows
sent to a deployed model. Unseen categories and empty cells are handled here.
"""
from __future__ import annotations

import functools
import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from mlc import spec
from mlc.runtime import data as D
from mlc.runtime import types as T
from mlc.runtime.types import cells as C


def _smooth_clip(x: np.ndarray) -> np.ndarray:
    # Keeps values near zero as they are and squashes far outliers towards +-3.
    return x / np.sqrt(1.0 + (x / 3.0) ** 2)


def _fit_number(values: np.ndarray, opts: dict) -> dict:
    present = values[~np.isnan(values)]
    if present.size == 0:
        present = np.zeros(1)
    fill = {"median": float(np.median(present)), "mean": float(np.mean(present)), "zero": 0.0}[
        opts["missing"]["name"]]
    filled = np.where(np.isnan(values), fill, values)
    norm = opts["normalize"]["name"]
    if norm == "robust":
        q1, med, q3 = np.quantile(filled, [0.25, 0.5, 0.75])
        scale = (q3 - q1) / 1.349 or float(np.std(filled)) or 1.0
        shift = float(med)
    elif norm == "zscore":
        shift, scale = float(np.mean(filled)), float(np.std(filled)) or 1.0
    elif norm == "minmax":
        shift, scale = float(np.min(filled)), float(np.ptp(filled)) or 1.0
    else:
        shift, scale = 0.0, 1.0
    edges: list[float] = []
    if opts["encoder"]["name"] == "ple":
        bins = int(opts["encoder"]["bins"])
        edges = np.unique(np.quantile(filled, np.linspace(0, 1, bins + 1))).tolist()
        if len(edges) < 3:  # two values or constant: the scaled value says it all
            edges = []
    return {"fill": fill, "shift": shift, "scale": float(scale), "clip": norm == "robust",
            "edges": edges, "indicator": bool(np.isnan(values).any()),
            "constant": bool(np.ptp(filled) == 0) if filled.size else True,
            "empty": bool(np.isnan(values).all())}


def _encode_number(values: np.ndarray, st: dict, out: np.ndarray) -> None:
    """Writes the number's columns (scaled value, PLE bins, missing indicator) into `out`."""
    missing = np.isnan(values)
    x = np.where(missing, st["fill"], values)
    scaled = (x - st["shift"]) / st["scale"]
    out[:, 0] = _smooth_clip(scaled) if st["clip"] else scaled
    e = np.asarray(st["edges"])
    if e.size:
        out[:, 1:e.size] = np.clip((x[:, None] - e[None, :-1]) / np.diff(e)[None, :], 0.0, 1.0)
    if st["indicator"]:
        out[:, -1] = missing


def number_width(st: dict) -> int:
    return 1 + max(0, len(st["edges"]) - 1) + int(st["indicator"])


def fit(resolved: spec.Resolved, train: pa.Table, facts: dict | None = None) -> dict:
    state: dict = {"inputs": {}, "outputs": {}}
    for f in resolved.inputs:
        col, opts = train.column(f["name"]), f["options"]
        if f["type"] == "number":
            state["inputs"][f["name"]] = _fit_number(D.as_numbers_lenient(col), opts)
        elif f["type"] in T.INPUTS:
            state["inputs"][f["name"]] = T.fit_input(f, col)
        elif f["type"] == "binary":
            state["inputs"][f["name"]] = {"values": D.distinct(D.as_strings(col))}
        else:
            # Counted by pyarrow: memory stays proportional to the data, whatever the longest cell
            # (a numpy '<U' array would pad every value to it). Most frequent first, ties sorted.
            values, counts = C.count_values(pc.drop_null(C.strings(col)))
            vocab = [v for v, c in zip(values, counts) if c >= opts["min_count"]]
            state["inputs"][f["name"]] = {"vocab": vocab}
    for f in resolved.outputs:
        col = train.column(f["name"])
        if f["type"] in T.OUTPUTS:
            state["outputs"][f["name"]] = T.fit_output(f, col)
        elif f["type"] == "binary":
            hits = np.array([t == f["options"]["positive"] for t in D.as_strings(col)])
            state["outputs"][f["name"]] = {"positive": f["options"]["positive"],
                                           "values": (facts or {}).get(f["name"], {}).get("values"),
                                           "prior": float(np.clip(hits.mean(), 0.01, 0.99))}
        elif f["type"] == "category":
            classes = (facts or {}).get(f["name"], {}).get("values") or D.distinct(D.as_strings(col))
            texts = D.as_strings(col)
            priors = [(sum(t == c for t in texts) + 1) / (len(texts) + len(classes)) for c in classes]
            state["outputs"][f["name"]] = {"classes": classes, "priors": priors}
        else:
            y = D.as_numbers_lenient(col)
            state["outputs"][f["name"]] = {"mean": float(np.nanmean(y)), "std": float(np.nanstd(y)) or 1.0}
    return state


def input_width(resolved: spec.Resolved, state: dict) -> int:
    """Width of the dense block of number, binary, date and vector inputs."""
    width = 0
    for f in resolved.inputs:
        st = state["inputs"][f["name"]]
        if f["type"] == "number":
            width += number_width(st)
        elif f["type"] == "binary":
            width += 1
        elif f["type"] in T.DENSE:
            width += T.dense_width(f, st)
    return width


SMALL_BATCH = 32  # rows up to which a Python dict beats Arrow's fixed cost per call
_VOCABS: dict[int, tuple[list, pa.Array, dict]] = {}


def _vocab_lookup(vocab: list) -> tuple[pa.Array, dict]:
    """The vocabulary as an arrow array and as {value: position}, built once per state
    (a loaded model predicts many times with the same vocabularies)."""
    hit = _VOCABS.get(id(vocab))
    if hit is None or hit[0] is not vocab:
        if len(_VOCABS) > 4096:
            _VOCABS.clear()
        hit = _VOCABS[id(vocab)] = (vocab, pa.array(vocab, pa.string()), {v: i for i, v in enumerate(vocab)})
    return hit[1], hit[2]


def _vocab_index(col: pa.ChunkedArray, vocab: list, unknown: dict | None, name: str) -> np.ndarray:
    """Position in `vocab` + 1 per cell, 0 for missing and <unknown>: one hash lookup in Arrow
    (a dict lookup for a few rows), never a Python loop over a large column. Counts the
    present cells outside the vocabulary into `unknown`."""
    texts = C.strings(col)
    values, index = _vocab_lookup(vocab)
    if len(texts) <= SMALL_BATCH:
        codes = [index.get(t, -1) for t in texts.to_pylist()]
        found, lost = np.array(codes, np.int64), codes.count(-1)
    else:
        found = pc.index_in(texts, value_set=values)
        lost = found.null_count
        found = found.fill_null(-1).to_numpy(zero_copy_only=False)
    if unknown is not None:
        unknown[name] = lost - texts.null_count
    return (found + 1).astype(np.int32)


def binary_codes(index: np.ndarray, values: list) -> np.ndarray:
    """A binary input's value: the first of its two values -1, the second +1; missing,
    unknown (or a one-valued input) 0. `index`: position in `values` + 1, 0 for none."""
    codes = np.array([0.0, -1.0, 1.0], np.float32) if len(values) == 2 else np.zeros(3, np.float32)
    return codes[np.minimum(index, 2)]


def _dense_width(f: dict, st: dict) -> int:
    if f["type"] == "number":
        return number_width(st)
    if f["type"] == "binary":
        return 1
    return T.dense_width(f, st) if f["type"] in T.DENSE else 0


# Rows from which the columns are encoded on a thread per core: Arrow's and numpy's kernels
# release the GIL, and the columns write to separate parts of one matrix.
PARALLEL_MIN_ROWS = 20_000


@functools.cache
def _pool() -> ThreadPoolExecutor:
    return ThreadPoolExecutor(max(1, min(4, os.cpu_count() or 1)), thread_name_prefix="mlc-encode")


def _encode_column(f: dict, st: dict, col: pa.ChunkedArray, block: np.ndarray, lenient: bool,
                   unknown: dict | None) -> dict[str, np.ndarray]:
    """One input: its dense columns written into `block`; returns its other arrays."""
    name = f["name"]
    if f["type"] == "number":
        try:
            values = D.as_numbers_lenient(col) if lenient else D.as_numbers(col)
        except D.DataError as e:  # rows sent to a deployed model: name the column
            raise D.DataError(f"column `{name}` is a number input but {e.message}", e.hint) from None
        _encode_number(values, st, block)
    elif f["type"] == "binary":
        # the first value is -1, the second +1; missing, unknown (or a one-valued input) 0
        block[:, 0] = binary_codes(_vocab_index(col, st["values"], unknown, name), st["values"])
    elif f["type"] in T.INPUTS:
        encoded = T.encode_input(f, st, col)
        if isinstance(encoded, dict):
            return encoded
        block[:] = encoded
    else:
        return {f"cat_{name}": _vocab_index(col, st["vocab"], unknown, name)}
    return {}


def encode_inputs(resolved: spec.Resolved, state: dict, table: pa.Table,
                  lenient: bool = False, unknown: dict | None = None) -> dict[str, np.ndarray]:
    """lenient: text in a number column is missing (training data, whose bad cells the checks
    counted and reported); otherwise it is an error naming the column (rows sent to a model).
    unknown: if given, filled with {binary or category input: present cells outside its values}.

    Every column is encoded with numpy or Arrow compute over the whole column, straight into
    one float32 matrix for the dense inputs: no Python loop over values. Number, binary and
    category columns of a large table are encoded side by side on threads."""
    n = table.num_rows
    widths = [_dense_width(f, state["inputs"][f["name"]]) for f in resolved.inputs]
    x_num = np.zeros((n, sum(widths)), np.float32)
    jobs = []
    at = 0
    for f, width in zip(resolved.inputs, widths):
        jobs.append((f, state["inputs"][f["name"]], table.column(f["name"]), x_num[:, at:at + width], lenient, unknown))
        at += width
    out: dict[str, np.ndarray] = {}
    if n >= PARALLEL_MIN_ROWS and all(f["type"] in ("number", "binary", "category") for f in resolved.inputs):
        # results taken in column order: the first bad column raises, as in the loop below
        for done in [_pool().submit(_encode_column, *job) for job in jobs]:
            out.update(done.result())
    else:
        for job in jobs:
            out.update(_encode_column(*job))
    out["x_num"] = x_num
    return out


def encode_targets(resolved: spec.Resolved, state: dict, table: pa.Table) -> dict[str, np.ndarray]:
    out = {}
    for f in resolved.outputs:
        st, col = state["outputs"][f["name"]], table.column(f["name"])
        if f["type"] in T.OUTPUTS:
            out[f"y_{f['name']}"] = T.encode_target(f, st, col)
        elif f["type"] == "binary":
            out[f"y_{f['name']}"] = np.array([t == st["positive"] for t in D.as_strings(col)], dtype=np.float32)
        elif f["type"] == "category":
            index = {v: i for i, v in enumerate(st["classes"])}
            out[f"y_{f['name']}"] = np.array([index.get(t, 0) for t in D.as_strings(col)], dtype=np.int32)
        else:
            y = D.as_numbers_lenient(col)
            out[f"y_{f['name']}"] = ((y - st["mean"]) / st["std"]).astype(np.float32)
    return out


def decode_outputs(resolved: spec.Resolved, state: dict, raw: dict[str, np.ndarray]) -> dict[str, list]:
    """Model outputs (probabilities, standardized numbers) -> user-facing columns."""
    cols: dict[str, list] = {}
    for f in resolved.outputs:
        st, r = state["outputs"][f["name"]], np.asarray(raw[f["name"]], dtype=np.float64)
        if f["type"] in T.OUTPUTS:
            cols.update(T.decode_output(f, st, r.reshape(len(r), -1)))
        elif f["type"] == "binary":
            others = [v for v in (st.get("values") or []) if v != st["positive"]]
            negative = others[0] if others else f"not {st['positive']}"
            labels = np.array([negative, st["positive"]], dtype=object)  # indexed in C, not a Python loop
            cols[f["name"]] = labels[(r >= 0.5).astype(np.intp)].tolist()
            cols[f"{f['name']}_probability"] = r.tolist()
        elif f["type"] == "category":
            cols[f["name"]] = np.array(st["classes"], dtype=object)[r.argmax(axis=1)].tolist()
            cols[f"{f['name']}_probability"] = r.max(axis=1).tolist()
        else:
            cols[f["name"]] = (r * st["std"] + st["mean"]).tolist()
    return cols
