"""Type-driven preprocessing, fitted on the training split only.

`fit` returns a JSON-serializable state (stored in the artifact); `encode_inputs`
and `encode_targets` apply it to any table: training, validation, test, or rows
sent to a deployed model. Unseen categories and empty cells are handled here.
"""
from __future__ import annotations

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


def _encode_number(values: np.ndarray, st: dict) -> np.ndarray:
    missing = np.isnan(values)
    x = np.where(missing, st["fill"], values)
    cols = []
    scaled = (x - st["shift"]) / st["scale"]
    cols.append(_smooth_clip(scaled) if st["clip"] else scaled)
    e = np.asarray(st["edges"])
    if e.size:
        width = np.diff(e)
        cols.extend(np.clip((x[:, None] - e[None, :-1]) / width[None, :], 0.0, 1.0).T)
    if st["indicator"]:
        cols.append(missing.astype(np.float64))
    return np.stack(cols, axis=1)


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
            width += 1 + max(0, len(st["edges"]) - 1) + int(st["indicator"])
        elif f["type"] == "binary":
            width += 1
        elif f["type"] in T.DENSE:
            width += T.dense_width(f, st)
    return width


def _vocab_index(texts: list, vocab: list) -> np.ndarray:
    # One hash lookup in Arrow instead of a Python dict lookup per value; 0 is <unknown>.
    found = pc.index_in(pa.array(texts, pa.string()), value_set=pa.array(vocab, pa.string()))
    return (found.fill_null(-1).to_numpy(zero_copy_only=False) + 1).astype(np.int32)


def encode_inputs(resolved: spec.Resolved, state: dict, table: pa.Table,
                  lenient: bool = False) -> dict[str, np.ndarray]:
    """lenient: text in a number column is missing (training data, whose bad cells the checks
    counted and reported); otherwise it is an error naming the column (rows sent to a model)."""
    n = table.num_rows
    dense = [np.zeros((n, 0))]
    out: dict[str, np.ndarray] = {}
    for f in resolved.inputs:
        st, col = state["inputs"][f["name"]], table.column(f["name"])
        if f["type"] == "number":
            try:
                values = D.as_numbers_lenient(col) if lenient else D.as_numbers(col)
            except D.DataError as e:  # rows sent to a deployed model: name the column
                raise D.DataError(f"column `{f['name']}` is a number input but {e.message}", e.hint) from None
            dense.append(_encode_number(values, st))
        elif f["type"] == "binary":
            texts = D.as_strings(col)
            vals = st["values"]
            code = {v: (-1.0 if i == 0 else 1.0) for i, v in enumerate(vals)} if len(vals) == 2 else {}
            dense.append(np.array([[code.get(t, 0.0)] for t in texts]).reshape(n, 1))
        elif f["type"] in T.INPUTS:
            encoded = T.encode_input(f, st, col)
            if isinstance(encoded, dict):
                out.update(encoded)
            else:
                dense.append(encoded)
        else:
            out[f"cat_{f['name']}"] = _vocab_index(D.as_strings(col), st["vocab"])
    out["x_num"] = np.concatenate(dense, axis=1).astype(np.float32)
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
            cols[f["name"]] = [st["positive"] if p >= 0.5 else negative for p in r]
            cols[f"{f['name']}_probability"] = r.tolist()
        elif f["type"] == "category":
            cols[f["name"]] = [st["classes"][i] for i in r.argmax(axis=1)]
            cols[f"{f['name']}_probability"] = r.max(axis=1).tolist()
        else:
            cols[f["name"]] = (r * st["std"] + st["mean"]).tolist()
    return cols
