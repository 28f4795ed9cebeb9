"""`mlc init`: a starter program with a type inferred for every column."""
from __future__ import annotations

from pathlib import Path

import pyarrow as pa

from mlc.diagnostics import Diagnostic, MlcError, did_you_mean
from mlc.runtime import data as D

def infer_type(col: pa.ChunkedArray, rows: int) -> tuple[str | None, str]:
    """(type, reason); type None means the column is left out."""
    if pa.types.is_timestamp(col.type) or pa.types.is_date(col.type):
        return "date", "dates"
    values = D.distinct(D.as_strings(col))
    numeric = pa.types.is_integer(col.type) or pa.types.is_floating(col.type)
    if not numeric and len(values) > 2:
        guess = _looks_like(col, values)
        if guess:
            return guess
    if len(values) <= 1:
        return None, "a single value: nothing to learn from"
    if len(values) == 2:
        return "binary", "two values"
    if numeric:
        return "number", f"numbers, {len(values)} distinct"
    if len(values) > max(50, 0.5 * rows):
        return None, f"text with {len(values)} distinct values in {rows} rows: looks like an id or free text"
    return "category", f"text, {len(values)} distinct values"


def _looks_like(col: pa.ChunkedArray, values: list[str]) -> tuple[str, str] | None:
    """date, set or text for a text column that reads as one, else None."""
    from mlc.runtime.types import cells, dates
    fmt, share = dates.infer_format(col)
    if share >= 0.95:
        return "date", f"{share:.0%} of the cells read as dates ({fmt})"
    strings = cells.strings(col)
    present = max(1, len(strings) - strings.null_count)
    sep = cells.infer_separator(strings, ("|", ";"))
    if sep is not None:
        flat, _, counts = cells.members(strings, sep)
        labels = len(cells.count_values(flat)[0])
        multi = float((counts > 1).sum()) / present
        if multi >= 0.1 and labels <= max(50, 0.2 * len(flat)):
            return "set", f"{multi:.0%} of the cells hold several of {labels} labels separated by `{sep}`"
    from mlc.runtime.types import text
    words = float(text.word_tokens(strings)[2].sum()) / present
    if words >= 4 and len(values) > 0.5 * present:
        return "text", f"free text: {words:.0f} words per cell, {len(values)} distinct cells"
    return None


SPLIT_VALUES = {"train", "validation", "test"}


def _is_split_column(col: pa.ChunkedArray) -> bool:
    """Text holding only train/validation/test (the names `split by` reads), train among them
    and every cell filled: the rows' split, already decided."""
    if not (pa.types.is_string(col.type) or pa.types.is_large_string(col.type) or
            pa.types.is_dictionary(col.type)) or col.null_count:
        return False
    values = set(D.distinct(D.as_strings(col)))
    return "train" in values and len(values) >= 2 and values <= SPLIT_VALUES


def starter_program(path: Path, targets: list[str], program_path: Path | None = None) -> str:
    from mlc.passes.check_data import MAX_BAD_SHARE
    try:  # malformed lines are left out as `mlc check` and `mlc run` leave them out (up to 1%)
        table, skipped = D.read_table_skipping(path, MAX_BAD_SHARE)
    except D.DataError as e:
        raise MlcError(Diagnostic(e.message, hint=e.hint)) from None
    for t in targets:
        if t not in table.column_names:
            raise MlcError(Diagnostic(f"`{path.name}` has no column `{t}`",
                                      hint=did_you_mean(t, table.column_names)))
    base = program_path.parent if program_path else Path.cwd()
    try:
        rel = path.resolve().relative_to(base.resolve())
    except ValueError:
        rel = path.resolve()
    split = next((name for name in table.column_names if name not in targets and _is_split_column(table.column(name))),
                 None)
    lines = [f"# Starter program for {path.name}, written by `mlc init`.",
             "# Check the inferred types, then: mlc explain / mlc run"]
    if skipped:
        shown = ", ".join(str(r["line"]) for r in skipped[:5]) + (", ..." if len(skipped) > 5 else "")
        lines.append(f"# {len(skipped)} malformed line{'s' if len(skipped) > 1 else ''} (wrong number of fields) "
                     f"left out: {shown}; fix them in the file to use them")
    if split:
        lines += [f"# `{split}` holds only train/validation/test: it says which split each row belongs to,",
                  "# so it splits the rows; as an input it would leak the split into the model",
                  f'data "{rel.as_posix()}" split by {split}', ""]
    else:
        lines += [f'data "{rel.as_posix()}"', ""]
    rows = []
    for name in table.column_names:
        if name == split:
            continue
        role = "output" if name in targets else "input"
        if not name.isidentifier() or not name.isascii():
            rows.append((f"# {role} {name}", "", "not a valid name in .dml: rename the column to use it"))
            continue
        type_, why = infer_type(table.column(name), table.num_rows)
        if type_ is None:
            if role == "output":
                raise MlcError(Diagnostic(f"cannot predict `{name}`: {why}"))
            rows.append((f"# input  {name}", "", f"left out: {why}"))
            continue
        rows.append((f"{role.ljust(6)} {name}", f": {type_}", why))
    width = max(len(a) for a, _, _ in rows)
    twidth = max(len(b) for _, b, _ in rows)
    inputs = [r for r in rows if not r[0].startswith("output")]
    outputs = [r for r in rows if r[0].startswith("output")]
    for a, b, why in inputs + outputs:
        lines.append(f"{a.ljust(width)} {b.ljust(twidth)}  # {why}".rstrip())
    return "\n".join(lines) + "\n"
