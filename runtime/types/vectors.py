"""`vector` columns: a fixed number of numbers per cell (`0.1 0.5 -2`).

The length is the most common one in the training data; a cell of another length,
or with a member that is not a number, is bad (missing). As an input each component
is z-scored (missing: the mean, with an indicator); as an output each component is
standardized and regressed.
"""
from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from . import cells as C

NUMBER = r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$"


def parse(col: pa.ChunkedArray | pa.Array, sep: str, size: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(values[rows, size] with NaN rows for missing or bad cells, bad[rows]). size None:
    the most common length."""
    text = pc.replace_substring_regex(C.strings(col), r"^\s*[\[(]|[\])]\s*$", "")  # [1, 2] and (1, 2)
    flat, row, counts = C.members(text, sep)
    ok_member = pc.match_substring_regex(flat, NUMBER).to_numpy(zero_copy_only=False)
    values = pc.cast(pc.if_else(pa.array(ok_member), flat, None), pa.float64())
    values = pc.fill_null(values, np.nan).to_numpy(zero_copy_only=False) if len(flat) else np.zeros(0)
    present = np.asarray(pc.is_valid(text).to_numpy(zero_copy_only=False)) & (counts > 0)
    if size is None:
        lengths = counts[present]
        size = int(np.bincount(lengths).argmax()) if lengths.size else 1
    bad_member = np.zeros(len(counts), bool)
    bad_member[row[~ok_member | ~np.isfinite(values)]] = True
    bad = present & ((counts != size) | bad_member)
    good = present & ~bad
    out = np.full((len(counts), size), np.nan)
    take = good[row]
    starts = np.searchsorted(row, np.arange(len(counts)))
    pos = np.arange(len(row)) - starts[row]
    out[row[take], pos[take]] = values[take]
    return out, bad


def fit_input(values: np.ndarray, opts: dict) -> dict:
    present = values[~np.isnan(values).any(axis=1)]
    mean = present.mean(0) if len(present) else np.zeros(values.shape[1])
    std = present.std(0) if len(present) else np.ones(values.shape[1])
    if opts["normalize"]["name"] == "none":
        mean, std = np.zeros_like(mean), np.ones_like(std)
    return {"separator": opts["separator"], "size": values.shape[1], "mean": mean.tolist(),
            "std": np.where(std > 0, std, 1.0).tolist(), "indicator": bool(np.isnan(values).any())}


def width(state: dict) -> int:
    return state["size"] + int(state["indicator"])


def encode_input(values: np.ndarray, state: dict) -> np.ndarray:
    missing = np.isnan(values).any(axis=1)
    x = (values - np.asarray(state["mean"])) / np.asarray(state["std"])
    x[missing] = 0.0
    return np.concatenate([x, missing[:, None].astype(np.float64)], 1) if state["indicator"] else x


def fit_output(values: np.ndarray, opts: dict) -> dict:
    present = values[~np.isnan(values).any(axis=1)]
    std = present.std(0)
    return {"separator": opts["separator"], "size": values.shape[1], "mean": present.mean(0).tolist(),
            "std": np.where(std > 0, std, 1.0).tolist()}


def encode_target(values: np.ndarray, state: dict) -> np.ndarray:
    return ((values - np.asarray(state["mean"])) / np.asarray(state["std"])).astype(np.float32)


def decode(raw: np.ndarray, state: dict) -> np.ndarray:
    return raw * np.asarray(state["std"]) + np.asarray(state["mean"])


def format_cells(values: np.ndarray, sep: str) -> list[str]:
    joiner = sep if sep == " " else sep + " " if sep == "," else sep
    return [joiner.join(f"{v:.6g}" for v in row) for row in values]
