"""`set` and `bag` columns: several labels per cell (`Action|Comedy`), or labels with
weights (`a:2 b:1`).

As inputs both become an embedding bag: the ids of a row's labels, padded, with a
weight each (1 for a set member, the written weight for a bag item). As an output, a
set is one 0/1 target per label of the training vocabulary (multi-label).
"""
from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from . import cells as C


def bag_items(col: pa.Array, sep: str) -> tuple[pa.Array, np.ndarray, np.ndarray, np.ndarray]:
    """(labels, weights, row of each, bad rows): items `label:weight` (a bare label weighs 1).
    A row with an item whose weight is not a finite number is bad (all its items dropped)."""
    flat, row, _ = C.members(col, sep)
    if len(flat) == 0:
        return flat, np.zeros(0, np.float32), row, np.zeros(len(col), bool)
    parts = pc.extract_regex(flat, r"^(?P<label>.*?)(?::(?P<weight>[^:]*))?$")
    label, text = pc.struct_field(parts, "label"), pc.struct_field(parts, "weight")
    has_weight = pc.match_substring(flat, ":")
    text = pc.if_else(has_weight, text, "1")
    number = pc.cast(pc.if_else(pc.match_substring_regex(text, r"^\s*[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?\s*$"),
                                text, None), pa.float64(), safe=False)
    weight = pc.fill_null(number, np.nan).to_numpy(zero_copy_only=False)
    bad_item = ~np.isfinite(weight)
    bad = np.zeros(len(col), bool)
    bad[row[bad_item]] = True
    keep = ~bad[row]
    label = pc.utf8_trim_whitespace(label)
    return pc.filter(label, pa.array(keep)), weight[keep].astype(np.float32), row[keep], bad


def fit_input(col: pa.Array, opts: dict, kind: str) -> dict:
    if kind == "bag":
        flat, weight, row, _ = bag_items(col, opts["separator"])
        counts = np.bincount(row, minlength=len(col))
    else:
        flat, row, counts = C.members(col, opts["separator"])
    values, freq = C.count_values(flat)
    vocab = [v for v, c in zip(values, freq) if c >= opts["min_count"]]
    return {"separator": opts["separator"], "vocab": vocab, "kind": kind,
            "max_len": C.length_for(counts, 0.99, 256), "mode": opts["encoder"]["name"]}


def encode_input(col: pa.Array, state: dict, name: str) -> dict[str, np.ndarray]:
    if state["kind"] == "bag":
        flat, weight, row, _ = bag_items(col, state["separator"])
    else:
        flat, row, _ = C.members(col, state["separator"])
        weight = None
    ids, w = C.padded(C.lookup(flat, state["vocab"]), row, len(col), state["max_len"], weight)
    return {f"bag_{name}": ids, f"bagw_{name}": w}


def unknown_rate(col: pa.Array, state: dict) -> float:
    """Share of members outside the vocabulary (they share the <unknown> vector)."""
    flat = bag_items(col, state["separator"])[0] if state["kind"] == "bag" else C.members(col, state["separator"])[0]
    return float((C.lookup(flat, state["vocab"]) == 0).mean()) if len(flat) else 0.0


# ---- a set as the output: one sigmoid per label -------------------------------------
def fit_output(col: pa.Array, opts: dict) -> dict:
    flat, row, counts = C.members(col, opts["separator"])
    labels, freq = C.count_values(flat)
    n = max(1, len(col))
    return {"separator": opts["separator"], "labels": labels,
            "priors": [float(np.clip(c / n, 1e-3, 1 - 1e-3)) for c in freq],
            "threshold": float(opts["threshold"])}


def encode_target(col: pa.Array, state: dict) -> np.ndarray:
    """[rows, labels] of 0/1; labels never seen in training are left out."""
    flat, row, _ = C.members(col, state["separator"])
    idx = C.lookup(flat, state["labels"], offset=0)
    y = np.zeros((len(col), len(state["labels"])), np.float32)
    known = idx >= 0
    y[row[known], idx[known]] = 1.0
    return y


def decode(probs: np.ndarray, state: dict, name: str) -> dict[str, list]:
    """The predicted set as one joined cell, and every label's probability."""
    labels = np.asarray(state["labels"], dtype=object)
    chosen = probs >= state["threshold"]
    sep = state["separator"] if state["separator"] != " " else " "
    return {name: [sep.join(labels[row]) for row in chosen],
            f"{name}_probabilities": [dict(zip(state["labels"], map(float, p))) for p in probs]}
