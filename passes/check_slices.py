"""Check `slice NAME = CONDITION { weight = W }` against the language and the data:
unknown columns (with a did-you-mean), literals of the wrong kind for their column,
a slice empty on the validation split, duplicate names, and the options."""
from __future__ import annotations

import pyarrow as pa

from mlc import spec
from mlc.diagnostics import Diagnostic, MlcError, did_you_mean
from mlc.grammar import ast
from mlc.runtime import slices as S

from .check import Checked


def check_slices(checked: Checked, table: pa.Table, validation_rows) -> list[dict]:
    """The slices as resolved dicts {"name", "condition", "weight"}; raises MlcError."""
    prog = checked.program
    diags: list[Diagnostic] = []

    def error(message, span, hint=None, notes=()):
        diags.append(Diagnostic(message, span, prog.file, hint, notes=list(notes)))

    out, seen = [], {}
    for s in prog.slices:
        if s.name in seen:
            error(f"duplicate slice `{s.name}`", s.span, "give each slice its own name",
                  [(seen[s.name].span, "first defined here")])
            continue
        seen[s.name] = s
        weight, ok = 1.0, True
        for opt in s.options:
            if opt.key not in spec.SLICE_OPTIONS:
                error(f"unknown option `{opt.key}` for slices", opt.span, did_you_mean(opt.key, spec.SLICE_OPTIONS))
                ok = False
            elif not isinstance(opt.value, ast.Num) or opt.value.value < 0:
                error("`weight` expects a number at least 0", opt.value.span)
                ok = False
            else:
                weight = float(opt.value.value)
        for c in s.cond.columns():
            if c.column not in table.column_names:
                error(f"the data has no column `{c.column}`", c.span, did_you_mean(c.column, table.column_names))
                ok = False
                continue
            if S.is_nested(table.column(c.column)) and c.op not in ("missing", "present"):
                error(f"`{c.column}` holds several values per cell ({table.column(c.column).type}): a slice "
                      "compares one value", c.span,
                      f"use `{c.column} is missing` or `is present`, or slice on another column")
                ok = False
                continue
            numeric = S.is_numeric(table.column(c.column))
            for v in c.values:
                if numeric and isinstance(v, ast.Str):
                    error(f"`{c.column}` holds numbers but is compared with the text {v.to_dml()}", v.span,
                          "write a number without quotes")
                    ok = False
                elif not numeric and isinstance(v, ast.Num):
                    error(f"`{c.column}` holds text but is compared with the number {v.to_dml()}", v.span,
                          f'write the value in quotes, such as "{ast.format_number(v.value)}"')
                    ok = False
            if not numeric and c.op == "compare" and c.operator not in ("==", "!="):
                error(f"`{c.column}` holds text: `{c.operator}` does not order it", c.span,
                      "compare text with `==`, `!=` or `in [...]`")
                ok = False
        if not ok:
            continue
        rows = int(S.mask(s.cond, table.take(pa.array(validation_rows, pa.int64()))).sum())
        if rows == 0:
            error(f"slice `{s.name}` holds no row of the validation split", s.span,
                  "its metrics would be empty; check the condition")
            continue
        out.append({"name": s.name, "condition": s.cond.to_dml(), "weight": weight})
    if diags:
        raise MlcError(diags, prog.source)
    return out
