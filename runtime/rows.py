"""Rows sent to `predict`: checked cell by cell against the model's input types, so a
mistake is a ValueError that names the column and the row, never a silent wrong answer.

Accepted: a dict of columns (each a list, tuple, numpy array, pyarrow array or pandas
Series, all of one length), a list of row dicts (each naming every input), a
`pyarrow.Table` or a `pandas.DataFrame`. Each Python cell is read as a CSV cell would be:

  missing     None, float NaN, pandas NA/NaT
  number      int or float (NaN is missing); text is read as in a data file ("1,234" is
              1234, "1,5" is an error); a bool is an error (True is not 1)
  binary,     text; an int, float or bool is read as its text (1 -> "1", 2.0 -> "2",
  category    True -> "true"), and is an error when the model's values hold no value of
              that kind (1 for values such as "1st": it could only ever be <unknown>);
              a value the model never saw is <unknown> and counted (`.metadata`)
  text        text (an int, float or bool as its text)
  sequence,   text, or a list of members, joined with the column's separator (a member
  set         holding the separator is an error)
  bag         text, or a dict {label: weight}
  vector      text, or a list (or 1-D numpy array) of numbers
  date        text, datetime.date, datetime.datetime, numpy datetime64, or an int read as
              its text (20210105 under a "%Y%m%d" format)

Anything else (a list where one value is expected, a dict, an object) is an error.
A pyarrow Table or a data file is checked by column type: booleans in a number input
and nested values (lists, structs) where one value is expected are errors.
"""
from __future__ import annotations

import datetime as dt
import decimal
import math
import numbers
from collections.abc import Mapping

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from mlc.diagnostics import UserError


class RowsError(UserError, ValueError):
    """Rows that cannot be read as the model's inputs: a ValueError in Python, a clean
    `error:` line from the command line."""


def _missing(v) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v)) or \
        (isinstance(v, np.floating) and np.isnan(v)) or type(v).__name__ in ("NAType", "NaTType")


def _shown(v) -> str:
    text = repr(v)
    return text if len(text) <= 60 else text[:57] + "..."


def _what(v) -> str:
    kind = type(v).__name__
    return f"{_shown(v)} ({'an' if kind[:1] in 'aeiou' else 'a'} {kind})"


def _fail(name: str, ftype: str, row: int, v, right: str):
    raise RowsError(f"column `{name}` is a {ftype} input, but row {row + 1} holds {_what(v)}; {right}")


def _number_text(t: str) -> bool:
    try:
        float(t.replace(",", ""))
        return True
    except ValueError:
        return False


def _scalar_texts(v) -> list[str] | None:
    """The texts a CSV reader could have given a Python scalar, canonical first; None for
    anything that is not an int, float or bool."""
    if isinstance(v, (bool, np.bool_)):
        return ["true" if v else "false"]
    if isinstance(v, numbers.Integral):
        return [str(int(v))]
    if isinstance(v, numbers.Real):
        f = float(v)
        if math.isfinite(f) and f == round(f) and abs(f) < 2 ** 53:
            return [str(int(f)), repr(f)]
        return [repr(f)]
    return None


def _labels(name: str, ftype: str, values: list, vocab: list[str]) -> pa.Array:
    """binary and category cells as text."""
    known = set(vocab)
    has_number = any(_number_text(t) for t in vocab)
    has_bool = any(t in ("true", "false") for t in vocab)
    out = []
    for i, v in enumerate(values):
        if _missing(v):
            out.append(None)
        elif isinstance(v, str):
            out.append(v)
        elif (texts := _scalar_texts(v)) is not None:
            t = next((t for t in texts if t in known), texts[0])
            if t not in known and vocab and not (has_bool if isinstance(v, (bool, np.bool_)) else has_number):
                _fail(name, ftype, i, v, f"the model's values are text such as {_examples(vocab)}, so it would "
                      "always be <unknown>; give the value as text")
            out.append(t)
        else:
            _fail(name, ftype, i, v, "a cell is one value: text (or a number or bool, read as its text)")
    return pa.array(out, pa.string())


def _examples(vocab: list[str]) -> str:
    return ", ".join(repr(v) for v in vocab[:3]) + (", ..." if len(vocab) > 3 else "")


def _numbers(name: str, values: list) -> pa.Array:
    out, text = [], False
    for i, v in enumerate(values):
        if _missing(v):
            out.append(None)
        elif isinstance(v, (bool, np.bool_)):
            _fail(name, "number", i, v, "give a number (a bool is not read as 1 or 0)")
        elif isinstance(v, (numbers.Real, decimal.Decimal)):
            try:
                out.append(float(v))
            except OverflowError:
                _fail(name, "number", i, v, "give a number within float range")
        elif isinstance(v, str):
            out.append(v)
            text = True
        else:
            _fail(name, "number", i, v, "give a number (int or float), None for a missing value")
    if text:  # read as a data file's text cells: the same comma rules and errors
        return pa.array([x if x is None or isinstance(x, str) else repr(x) for x in out], pa.string())
    return pa.array(out, pa.float64())


def _joined(name: str, ftype: str, values: list, sep: str | None) -> pa.Array:
    """text, sequence, set, bag and vector cells as text."""
    out = []
    for i, v in enumerate(values):
        if _missing(v):
            out.append(None)
        elif isinstance(v, str):
            out.append(v)
        elif (texts := _scalar_texts(v)) is not None:
            out.append(texts[0])
        elif ftype in ("set", "sequence") and isinstance(v, (list, tuple, np.ndarray)):
            parts = list(v.tolist() if isinstance(v, np.ndarray) else v)
            for p in parts:
                if not isinstance(p, str) or (sep == " " and any(c.isspace() for c in p)) or \
                        (sep != " " and sep in p):
                    _fail(name, ftype, i, v, f"each member is text without the separator {sep!r}")
            out.append(sep.join(parts) if sep != " " else " ".join(parts))
        elif ftype == "vector" and isinstance(v, (list, tuple, np.ndarray)):
            parts = list(v.tolist() if isinstance(v, np.ndarray) else v)
            if any(isinstance(p, bool) or not isinstance(p, numbers.Real) for p in parts):
                _fail(name, ftype, i, v, "a vector is a list of numbers, or its text such as \"0.1 0.5 -2\"")
            out.append((sep if sep == " " else sep + " ").join(repr(float(p)) for p in parts))
        elif ftype == "bag" and isinstance(v, Mapping):
            items = []
            for label, w in v.items():
                if not isinstance(label, str) or ":" in label or (sep != " " and sep in label) or \
                        (sep == " " and any(c.isspace() for c in label)) or isinstance(w, bool) or \
                        not isinstance(w, numbers.Real):
                    _fail(name, ftype, i, v, f"a bag is a dict {{label: weight}} of text labels (without ':' "
                          f"or {sep!r}) and numbers")
                items.append(f"{label}:{float(w)!r}")
            out.append(sep.join(items))
        else:
            right = {"text": "give text", "vector": "give a list of numbers or their text",
                     "bag": "give a dict {label: weight} or text such as \"a:2 b:1\""}.get(
                ftype, "give a list of members or their text")
            _fail(name, ftype, i, v, right)
    return pa.array(out, pa.string())


def _dates(name: str, values: list, fmt: str) -> pa.Array:
    out, objects, texts = [], 0, 0
    for i, v in enumerate(values):
        if isinstance(v, np.datetime64):
            v = None if np.isnat(v) else v.astype("datetime64[us]").item()
        if _missing(v):
            out.append(None)
        elif isinstance(v, str):
            out.append(v)
            texts += 1
        elif isinstance(v, (dt.date, dt.datetime)):
            if not isinstance(v, dt.datetime):
                v = dt.datetime(v.year, v.month, v.day)
            if v.tzinfo is not None:  # as UTC, as text with an offset is read
                v = v.astimezone(dt.timezone.utc).replace(tzinfo=None)
            out.append(v)
            objects += 1
        elif isinstance(v, numbers.Integral) and not isinstance(v, (bool, np.bool_)):
            out.append(str(int(v)))
            texts += 1
        else:
            _fail(name, "date", i, v, "give text, a datetime.date or datetime.datetime")
    if objects and texts:  # one column: the objects as the model's format writes them
        out = [v if not isinstance(v, dt.datetime) else v.isoformat(sep=" ") if fmt == "ISO 8601"
               else v.strftime(fmt) for v in out]
    if objects and not texts:
        return pa.array(out, pa.timestamp("us"))
    return pa.array(out, pa.string())


_PLAIN_NUMBERS = {float, int, type(None)}
_PLAIN_TEXT = {str, type(None)}


def column(f: dict, st: dict, values: list | np.ndarray) -> pa.Array:
    """One input column of Python values -> the arrow array the preprocessing reads."""
    name, t = f["name"], f["type"]
    if isinstance(values, (pa.Array, pa.ChunkedArray)):  # text (see _as_list)
        return values.cast(pa.string())
    if isinstance(values, np.ndarray):  # a numeric 1-D column: no cell by cell reading
        if t == "number":
            return pa.array(np.asarray(values, np.float64), pa.float64())  # no copy when already float64
        values = values.tolist()
    kinds = set(map(type, values))  # one pass in C: the common cases below need no cell by cell reading
    if t == "number":
        if kinds <= _PLAIN_NUMBERS:  # NaN and None are missing
            return pa.array(values, pa.float64())
        return _numbers(name, values)
    if kinds <= _PLAIN_TEXT:  # text passes through every reader unchanged
        return pa.array(values, pa.string())
    if t == "binary":
        return _labels(name, t, values, st.get("values") or [])
    if t == "category":
        return _labels(name, t, values, st.get("vocab") or [])
    if t == "date":
        return _dates(name, values, st.get("format", "ISO 8601"))
    return _joined(name, t, values, st.get("separator") or " ")


def _as_list(name: str, v) -> list:
    if type(v) is list:  # the common case, first: a service's request of a few rows
        return v
    if isinstance(v, (str, bytes)):
        raise RowsError(f"column `{name}` is the single value {_shown(v)}, not a list of values: give one value "
                        f"per row, such as {{{name!r}: [{_shown(v)}]}}, or a list of row dicts")
    if isinstance(v, np.ndarray):
        if v.ndim == 0:
            v = v.item()
        elif v.ndim > 1:
            return list(v)
        else:
            return v if v.dtype.kind in "iuf" else v.tolist()
    if isinstance(v, (pa.Array, pa.ChunkedArray)):  # text stays in Arrow: it passes every reader unchanged
        return v if pa.types.is_string(v.type) or pa.types.is_large_string(v.type) else v.to_pylist()
    if isinstance(v, Mapping) or not hasattr(v, "__len__") or not hasattr(v, "__iter__"):
        raise RowsError(f"column `{name}` is the single value {_what(v)}, not a list of values: give one value "
                        f"per row, such as {{{name!r}: [{_shown(v)}]}}, or a list of row dicts")
    return list(v)


def _frame_column(series):
    if isinstance(series.dtype, np.dtype) and series.dtype.kind in "iuf":
        return series.to_numpy()
    if str(series.dtype) in ("str", "string"):  # pandas' text dtypes: NA is missing
        return pa.array(series)
    return series.tolist()


def python_columns(rows, names: list[str]) -> dict[str, list] | None:
    """{input: list of cells} from a dict of columns, a list of row dicts or a DataFrame;
    None for a pyarrow Table (checked by column type instead)."""
    if isinstance(rows, pa.Table):
        return None
    if type(rows).__name__ == "DataFrame" and hasattr(rows, "columns"):  # pandas, without importing it
        # numeric columns as their numpy arrays and text columns as Arrow strings (pandas keeps
        # them in Arrow already): no copy to Python objects; other columns as lists of cells
        rows = {str(c): _frame_column(rows[c]) for c in rows.columns}
    if isinstance(rows, Mapping):
        missing = [c for c in names if c not in rows]
        if missing:
            raise RowsError("rows lack input column(s): " + ", ".join(missing))
        cols = {c: _as_list(c, rows[c]) for c in names}
        lengths = {c: len(v) for c, v in cols.items()}
        if len(set(lengths.values())) > 1:
            raise RowsError("columns must hold one value per row, but their lengths differ: " +
                            ", ".join(f"`{c}` {n}" for c, n in lengths.items()))
        return cols
    if isinstance(rows, (list, tuple)):
        for i, row in enumerate(rows):
            if not isinstance(row, Mapping):
                raise RowsError(f"row {i + 1} is {_what(row)}, not a dict of column values; give a list of row "
                                "dicts or a dict of columns")
            missing = [c for c in names if c not in row]
            if missing:
                raise RowsError(f"row {i + 1} lacks input column(s) {', '.join(missing)}; give each "
                                "(None for a missing value)")
        return {c: [row[c] for row in rows] for c in names}
    raise TypeError("rows must be a dict of columns, a list of row dicts, a pyarrow.Table or a pandas.DataFrame, "
                    f"not {type(rows).__name__}")


def check_table(table: pa.Table, inputs: list[dict], state: dict | None = None) -> pa.Table:
    """Column types a table (or a data file) may not hold for an input are errors; list
    columns of set, sequence and vector inputs (Parquet has them) are joined with the
    column's separator."""
    present = set(table.column_names)
    missing = [f["name"] for f in inputs if f["name"] not in present]
    if missing:
        raise RowsError("rows lack input column(s): " + ", ".join(missing))
    for f in inputs:
        name, typ = f["name"], table.schema.field(f["name"]).type
        if f["type"] in ("set", "sequence", "vector") and (pa.types.is_list(typ) or pa.types.is_large_list(typ)):
            child = typ.value_type
            ok = pa.types.is_string(child) or pa.types.is_large_string(child) if f["type"] != "vector" else \
                (pa.types.is_integer(child) or pa.types.is_floating(child))
            if ok and state is not None:
                sep = state["inputs"][name].get("separator") or " "
                col = table.column(name).cast(pa.list_(pa.string()))
                table = table.set_column(table.column_names.index(name), name,
                                         pc.binary_join(col, sep if sep == " " else sep + " "
                                                        if f["type"] == "vector" else sep))
                continue
        if pa.types.is_nested(typ):
            raise RowsError(f"column `{name}` is a {f['type']} input, but holds {typ} values; a cell is "
                            "one value" + (" or its text" if f["type"] in ("set", "sequence", "vector", "bag") else ""))
        if f["type"] == "number" and pa.types.is_boolean(typ):
            raise RowsError(f"column `{name}` is a number input, but holds booleans; give numbers "
                            "(true is not read as 1)")
    return table


def to_table(rows, inputs: list[dict], state: dict, cols: dict | None = None) -> pa.Table:
    """cols: python_columns(rows, ...) when the caller has it already."""
    names = [f["name"] for f in inputs]
    cols = python_columns(rows, names) if cols is None else cols
    if cols is None:
        table = rows
    else:
        n = len(next(iter(cols.values()))) if cols else 0
        arrays = {f["name"]: column(f, state["inputs"][f["name"]], cols[f["name"]]) for f in inputs}
        table = pa.table(arrays) if arrays else pa.table({"_": pa.nulls(n)})
    return check_table(table, inputs, state)


# ---- how many tokens the model reads as <unknown> -----------------------------------------
def unknown_tokens(inputs: list[dict], state: dict, encoded: dict) -> dict:
    """{input: {"unknown": n, "total": n}} of the tokens or labels the model reads, for text,
    sequence, set and bag inputs (binary and category cells are counted while encoding)."""
    tokens = {}
    for f in inputs:
        name, t, st = f["name"], f["type"], state["inputs"][f["name"]]
        if t in ("text", "sequence", "set", "bag"):
            ids = encoded.get(f"bag_{name}", encoded.get(f"tok_{name}"))
            weights = encoded.get(f"bagw_{name}", encoded.get(f"mask_{name}"))
            if ids is None or weights is None:
                continue
            if t == "text" and st.get("buckets"):  # the unigrams, not the hashed bigrams after them
                ids, weights = ids[:, :st["max_len"]], weights[:, :st["max_len"]]
            read = weights != 0
            tokens[name] = {"unknown": int((read & (ids == 0)).sum()), "total": int(read.sum())}
    return tokens
