"""Check the program against its data: columns exist and hold what their type says.

Runs after `check` and before `defaults`; returns the facts about each column
that the defaults pass needs (distinct values, missing cells, row count).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa

from mlc.diagnostics import Diagnostic, MlcError, did_you_mean
from mlc.grammar import ast
from mlc.runtime import data as D
from mlc.runtime import types as T

from .check import Checked

# A column may hold this share of cells that do not parse for its type (they become
# missing, with a warning); more is an error: the type is probably wrong.
MAX_BAD_SHARE = 0.01
POSITIVE_WORDS = ("1", "true", "yes", "y", "t", "positive", "pos")
SPLIT_VALUES = ("train", "validation", "test")


def data_path(checked: Checked) -> Path:
    return (Path(checked.program.file).parent / checked.data.path).resolve()


def load_data(checked: Checked) -> tuple[pa.Table, list[dict]]:
    """The data, and the CSV lines left out for a wrong number of fields (at most 1%)."""
    try:
        return D.read_table_skipping(data_path(checked), MAX_BAD_SHARE)
    except D.DataError as e:
        raise MlcError(Diagnostic(e.message, checked.data.span, checked.program.file, e.hint),
                       checked.program.source) from None


def check_data(checked: Checked, table: pa.Table, skipped: list[dict] | None = None) -> dict[str, dict]:
    """skipped: lines load_data left out, so that bad cells are named by their true line."""
    prog = checked.program
    diags: list[Diagnostic] = []

    def error(message, span, hint=None):
        diags.append(Diagnostic(message, span, prog.file, hint))

    columns = table.column_names
    facts: dict[str, dict] = {}
    split = checked.data.split
    if isinstance(split, ast.SplitBy):
        if split.column not in columns:
            error(f"the data has no column `{split.column}` to split by", split.span,
                  did_you_mean(split.column, columns))
        else:
            values = D.distinct(D.as_strings(table.column(split.column)))
            empty = table.column(split.column).null_count
            if empty:
                error(f"split column `{split.column}` is empty in {empty} row{'s' if empty > 1 else ''}",
                      split.span, "give every row `train`, `validation` or `test`; a row without one "
                      "would be silently left out")
            bad = [v for v in values if v not in SPLIT_VALUES]
            if bad:
                shown = ", ".join(_quote(v) for v in bad[:3]) + (", ..." if len(bad) > 3 else "")
                error(f"split column `{split.column}` holds {shown}", split.span,
                      "its values must be `train`, `validation` or `test`")
            for need in SPLIT_VALUES:
                if need not in values and not bad:
                    error(f"split column `{split.column}` has no `{need}` rows", split.span,
                          "every split needs rows: validation picks the best epoch, test measures")

    for f in checked.features.values():
        if f.name not in columns:
            error(f"the data has no column `{f.name}`", f.span, did_you_mean(f.name, columns))
            continue
        col = table.column(f.name)
        fact = {"missing": col.null_count, "rows": table.num_rows}
        if col.null_count == table.num_rows:
            error(f"column `{f.name}` is empty in every row", f.span)
            continue
        if f.type == "number":
            try:
                D.as_numbers(col)
            except D.DataError as e:
                bad = D.unparsable_numbers(col)
                if bad is None:  # not a text problem (an infinite value)
                    error(f"column `{f.name}` is declared `number` but {e.message}", f.type_span, e.hint)
                    continue
                fact["bad"] = bad
        elif f.type in T.INPUTS or (f.role == "output" and f.type in T.OUTPUTS):
            try:
                fact.update(T.inspect(f.role, f.type, col, checked.options.get(f"{f.role}.{f.name}", {})))
            except D.DataError as e:
                error(f"column `{f.name}` is declared `{f.type}` but {e.message}", f.type_span, e.hint)
                continue
        elif f.type in ("binary", "category"):
            values = D.distinct(D.as_strings(col))
            fact["values"] = values
            if f.type == "binary" and len(values) > 2:
                shown = ", ".join(_quote(v) for v in values[:4]) + (", ..." if len(values) > 4 else "")
                numeric = pa.types.is_integer(col.type) or pa.types.is_floating(col.type)
                error(f"column `{f.name}` has {len(values)} distinct values ({shown}); "
                      f"`binary` needs exactly two", f.type_span,
                      "declare it as `category`" + (" or `number`" if numeric else ""))
                continue
            if f.role == "output" and len(values) < 2:
                error(f"output `{f.name}` holds a single value ({_quote(values[0])}): "
                      "there is nothing to learn",
                      f.span)
                continue
            if f.type == "binary" and f.role == "output":
                fact["positive"] = _positive(checked, f, values, error)
        if fact.get("bad") is not None and fact["bad"].any():
            if not _bad_cells(f, col, fact, table.num_rows, error, [r["line"] for r in skipped or []],
                              data_path(checked)):
                continue
        facts[f.name] = fact
    if diags:
        raise MlcError(diags, prog.source)
    return facts


def _bad_cells(f: ast.Feature, col, fact: dict, rows: int, error, skipped_lines: list, path: Path) -> bool:
    """Cells that do not parse for the column's type: up to 1% become missing (recorded in
    fact["bad_cells"] for the warning and report.json); more is an error. False on error."""
    where = np.flatnonzero(fact.pop("bad"))
    texts = D.as_strings(col.take(pa.array(where[:3], type=pa.int64())))
    lines = D.lines_of(where[:3], skipped_lines, path)
    examples = [{"row": int(i) + 1, "line": int(n), "value": v} for i, n, v in zip(where[:3], lines, texts)]
    shown = ", ".join(f"{_quote(e['value'])} (line {e['line']})" for e in examples)
    share = len(where) / max(rows, 1)
    if share > MAX_BAD_SHARE:
        error(f"column `{f.name}` is declared `{f.type}` but {len(where)} of {rows} cells ({share:.1%}) "
              f"do not read as one, such as {shown}", f.type_span, _BAD_HINTS.get(f.type))
        return False
    fact["bad_rows"] = where
    fact["bad_cells"] = {"count": int(len(where)), "share": share, "examples": examples,
                         "message": f"{len(where)} cell{'s' if len(where) > 1 else ''} of `{f.name}` "
                                    f"do not read as `{f.type}` and are treated as missing: {shown}"}
    return True


_BAD_HINTS = {
    "number": "declare it as `category`, or clean the column",
    "date": 'give the format, such as `{ format = "%d/%m/%Y" }`, or clean the column',
    "vector": "every cell needs the same count of numbers",
    "bag": "write items as `label:weight`, such as `red:2 blue:1`",
}


def _quote(value: str) -> str:
    """A data value in a message: short, one line, in backticks."""
    text = value if len(value) <= 30 else value[:27] + "..."
    text = "".join(ch if ch.isprintable() else " " for ch in text)
    return f"`{text}`" if text.strip() else f'"{text}"'


def _positive(checked: Checked, f: ast.Feature, values: list[str], error) -> tuple[str, str] | None:
    """The positive class of a binary output and why it was chosen."""
    chosen = checked.options[f"output.{f.name}"].get("positive")
    if chosen is not None:
        if chosen not in values:
            error(f"`positive = {ast.Str(chosen, None).to_dml()}` is not a value of `{f.name}`",
                  checked.option_spans[f"output.{f.name}.positive"],
                  "the column holds " + " and ".join(ast.Str(v, None).to_dml() for v in values))
        return chosen, "set in the program"
    for v in values:
        if v.lower() in POSITIVE_WORDS:
            return v, f"`{v}` reads as the positive value"
    return values[-1], "no value reads as positive; took the later one in sorted order"
