"""Column types beyond the tabular three: one module each, one interface here.

    inspect(role, type, col, given)  what the checks and defaults need to know (an
                                     inferred separator or format, bad cells, sizes)
    fit_input / encode_input         preprocessing state from the training split, and
                                     arrays for the model: a dense block or named inputs
    fit_output / encode_target / decode_output   set and vector outputs

`number`, `binary` and `category` stay in runtime/preprocess.py.
"""
from __future__ import annotations

import numpy as np
import pyarrow as pa

from mlc.runtime import data as D

from . import cells as C
from . import dates, labels, text, vectors

INPUTS = ("text", "sequence", "set", "bag", "date", "vector")
OUTPUTS = ("set", "vector")
DENSE = ("date", "vector")  # encoded into the dense block with the numbers


def _separator(col: pa.Array, given: dict, default_space: bool = False) -> tuple[str | None, bool]:
    """(separator, whether it was inferred)."""
    if given.get("separator") is not None:
        return given["separator"], False
    sep = C.infer_separator(col)
    return (sep if sep is not None else (" " if default_space else None)), True


def inspect(role: str, type_: str, col: pa.ChunkedArray, given: dict) -> dict:
    """Facts about a column of a new type. `bad`: a bool mask of cells that do not parse
    (they become missing). Raises D.DataError for a column that cannot be this type."""
    strings = C.strings(col)
    fact: dict = {"bad": np.zeros(len(strings), bool)}
    if type_ == "text":
        _, _, counts = text.word_tokens(strings)
        fact.update(tokens_per_row=float(counts.mean()) if counts.size else 0.0,
                    distinct_words=len(C.count_values(text.word_tokens(strings)[0])[0]))
        return fact
    if type_ == "date":
        fmt = given.get("format")
        inferred = fmt is None
        if inferred:
            fmt, share = dates.infer_format(col)
        seconds = dates.parse(col, fmt)
        present = np.asarray(strings.is_valid().to_numpy(zero_copy_only=False)) if not (
            pa.types.is_timestamp(col.type) or pa.types.is_date(col.type)) else ~np.isnan(seconds)
        if not np.isfinite(seconds).any():
            example = next((v for v in strings.to_pylist() if v is not None), "")
            raise D.DataError(f"holds no cell that reads as a date (such as `{D._printable(example, 40)}`)",
                              'give its format, such as `{ format = "%d/%m/%Y %H:%M" }`' if inferred else
                              f'`{fmt}` does not match the cells; see strftime formats')
        fact.update(format=fmt, format_inferred=inferred, bad=present & ~np.isfinite(seconds))
        return fact
    sep, inferred = _separator(strings, given, default_space=type_ in ("sequence", "vector", "bag"))
    if sep is None:
        raise D.DataError("holds a single label in every cell: no `|`, `;`, `,` or space separates labels",
                          "declare it as `category`, or name the separator: `{ separator = \"/\" }`")
    flat, row, counts = C.members(strings, sep)
    if not inferred and type_ == "set" and counts.max(initial=0) <= 1:
        raise D.DataError(f"has no cell that `{sep}` splits into two labels",
                          "check the separator; a column with one label per cell is a `category`")
    fact.update(separator=sep, separator_inferred=inferred)
    if type_ in ("set", "sequence"):
        values, freq = C.count_values(flat)
        fact.update(labels=len(values), members_per_row=float(counts.mean()) if counts.size else 0.0,
                    max_members=int(counts.max(initial=0)), singletons=int((freq < 3).sum()))
    elif type_ == "bag":
        flat, _, _, bad = labels.bag_items(strings, sep)
        fact.update(labels=len(C.count_values(flat)[0]), bad=bad)
    elif type_ == "vector":
        values, bad = vectors.parse(strings, sep)
        fact.update(size=values.shape[1], bad=bad)
    return fact


def fit_input(f: dict, col: pa.ChunkedArray) -> dict:
    t, opts, strings = f["type"], f["options"], C.strings(col)
    if t in ("text", "sequence"):
        return text.fit(strings, opts, t)
    if t in ("set", "bag"):
        return labels.fit_input(strings, opts, t)
    if t == "date":
        return dates.fit(dates.parse(col, opts["format"]), opts["format"])
    return vectors.fit_input(vectors.parse(strings, opts["separator"])[0], opts)


def dense_width(f: dict, state: dict) -> int:
    return dates.width(state) if f["type"] == "date" else vectors.width(state) if f["type"] == "vector" else 0


def encode_input(f: dict, state: dict, col: pa.ChunkedArray) -> np.ndarray | dict[str, np.ndarray]:
    """A dense [rows, width] block (date, vector) or named arrays (the others)."""
    t = f["type"]
    if t == "date":
        return dates.encode(dates.parse(col, state["format"]), state)
    if t == "vector":
        return vectors.encode_input(vectors.parse(col, state["separator"], state["size"])[0], state)
    if t in ("text", "sequence"):
        return text.encode(C.strings(col), state, f["name"])
    return labels.encode_input(C.strings(col), state, f["name"])


def fit_output(f: dict, col: pa.ChunkedArray) -> dict:
    if f["type"] == "set":
        return labels.fit_output(C.strings(col), f["options"])
    return vectors.fit_output(vectors.parse(col, f["options"]["separator"])[0], f["options"])


def encode_target(f: dict, state: dict, col: pa.ChunkedArray) -> np.ndarray:
    if f["type"] == "set":
        return labels.encode_target(C.strings(col), state)
    return vectors.encode_target(vectors.parse(col, state["separator"], state["size"])[0], state)


def target_width(f: dict, state: dict) -> int:
    return len(state["labels"]) if f["type"] == "set" else state["size"]


def decode_output(f: dict, state: dict, raw: np.ndarray) -> dict[str, list]:
    if f["type"] == "set":
        return labels.decode(raw, state, f["name"])
    values = vectors.decode(raw, state)
    return {f["name"]: values.tolist()}
