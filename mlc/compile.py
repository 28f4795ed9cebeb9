"""The front half of the pipeline, shared by every command: parse, check,
load and check the data, resolve defaults."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa

from mlc import spec
from mlc.diagnostics import Diagnostic, MlcError, render_all
from mlc.grammar.parse import parse
from mlc.passes.check import Checked, check
from mlc.passes.check_data import check_data, load_data
from mlc.passes.defaults import resolve, split_of
from mlc.runtime import data as D


@dataclass
class Frontend:
    checked: Checked
    table: pa.Table  # rows with every output present
    splits: dict  # name -> row indices into table
    resolved: spec.Resolved
    dropped_rows: int
    facts: dict  # column -> what check_data learned (distinct values, missing cells)
    warnings: list = field(default_factory=list)  # Diagnostics of severity "warning"
    skipped_lines: list = field(default_factory=list)  # CSV lines left out: wrong number of fields
    state: dict | None = None  # preprocessing fitted on the training split
    uninformative: dict = field(default_factory=dict)  # input -> why its encoding carries no information

    def print_warnings(self, echo) -> None:
        if self.warnings:  # capped per file like errors (mlc.diagnostics.MAX_PER_FILE)
            echo(render_all(self.warnings, self.checked.program.source))

    @property
    def data_quality(self) -> dict:
        """Per column: cells that did not parse for its type and were treated as missing."""
        out = {name: {k: v for k, v in fact["bad_cells"].items() if k != "message"}
               for name, fact in self.facts.items() if "bad_cells" in fact}
        for name, why in self.uninformative.items():
            out.setdefault(name, {})["no_information"] = why
        if self.skipped_lines:
            out["(lines left out)"] = {"count": len(self.skipped_lines), "examples": self.skipped_lines[:3]}
        return out


def read_program(path: str | Path) -> tuple[str, str]:
    p = Path(path)
    try:
        return p.read_text(encoding="utf-8"), str(p)
    except FileNotFoundError:
        raise MlcError(Diagnostic("no such program file", file=str(p))) from None
    except IsADirectoryError:
        raise MlcError(Diagnostic("this is a folder, not a .dml program", file=str(p))) from None
    except UnicodeDecodeError:
        raise MlcError(Diagnostic("the program is not UTF-8 text", file=str(p))) from None
    except PermissionError:
        raise MlcError(Diagnostic("cannot read the program: permission denied", file=str(p),
                                  hint="check the file's permissions")) from None
    except OSError as e:  # a name too long for the file system, ...
        raise MlcError(Diagnostic(f"cannot open the program: {e.strerror or e}",
                                  file=str(p)[:200])) from None


def frontend(path: str | Path) -> Frontend:
    source, file = read_program(path)
    checked = check(parse(source, file))
    table, skipped = load_data(checked)
    facts = check_data(checked, table, skipped)
    outputs = [f.name for f in checked.program.outputs]
    warnings = [Diagnostic(fact["bad_cells"]["message"], checked.features[name].type_span, file,
                           severity="warning") for name, fact in facts.items() if "bad_cells" in fact]
    if skipped:
        shown = ", ".join(f"line {r['line']} ({r['fields']} fields)" for r in skipped[:3])
        warnings.insert(0, Diagnostic(
            f"left out {len(skipped)} line{'s' if len(skipped) > 1 else ''} of `{checked.data.path}` with the "
            f"wrong number of fields (the header has {skipped[0]['expected']}): {shown}", checked.data.span, file,
            hint="quote values that contain commas", severity="warning"))
    table = _blank_bad_outputs(table, outputs, facts)
    table, dropped = D.drop_missing(table, outputs)
    split, _ = split_of(checked.data)
    splits = D.split_indices(table.num_rows, split, table)
    for name, rows in splits.items():
        if len(rows) == 0:
            raise MlcError(Diagnostic(f"the {name} split is empty ({table.num_rows} rows in all)",
                                      checked.data.span, file, "use more rows or a larger share"), source)
    resolved = resolve(checked, facts, len(splits["train"]))
    if checked.program.slices:
        from mlc.passes.check_slices import check_slices
        resolved.slices = check_slices(checked, table, splits["validation"])
        resolved.reasons.update({f"slice.{s['name']}": "set in the program" for s in resolved.slices})
    # Fit the preprocessing on the training split and lower the model once now (cheap: no
    # training), so that `mlc check` reports what only they reveal: shape errors in blocks
    # at their lines, inputs that carry no information, a model too large for memory.
    from mlc.ir.lower import lower
    from mlc.passes.check_model import check_memory, information_warnings, no_information
    from mlc.runtime import preprocess as P
    state = P.fit(resolved, D.take(table, splits["train"]), facts)
    uninformative = no_information(checked, resolved, state, len(splits["train"]))
    warnings += information_warnings(checked, uninformative)
    check_memory(checked, resolved, lower(resolved, state))
    return Frontend(checked, table, splits, resolved, dropped, facts, warnings, skipped, state, uninformative)


def _blank_bad_outputs(table: pa.Table, outputs: list[str], facts: dict) -> pa.Table:
    """An output cell that does not parse for its type cannot be learned from: make it
    missing, so its row is dropped (and counted) with the rows whose output is empty."""
    import numpy as np
    import pyarrow.compute as pc
    for name in outputs:
        rows = facts.get(name, {}).get("bad_rows")
        if rows is None or not len(rows):
            continue
        mask = np.zeros(table.num_rows, bool)
        mask[rows] = True
        col = table.column(name)
        blanked = pc.if_else(pa.array(mask), pa.scalar(None, col.type), col)
        table = table.set_column(table.column_names.index(name), name, blanked)
    return table
