"""Reading data files and turning columns into typed numpy arrays.

CSV and Parquet go through pyarrow. Failures become diagnostics that point at
the `data` statement (file problems) or at the feature line (column problems).
"""
from __future__ import annotations

import codecs
import csv
import os
import re
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from mlc.diagnostics import UserError

# "None" is left out on purpose: it is a real category value in some data sets.
NULL_VALUES = ["", "NA", "N/A", "NaN", "nan", "null", "NULL", "?"]


class DataError(UserError):
    """A problem with a data file or column; the caller attaches the location."""

    def __init__(self, message: str, hint: str | None = None):
        super().__init__(message)
        self.message, self.hint = message, hint


def read_table(path: Path) -> pa.Table:
    """The file as a table; a CSV line with the wrong number of fields is an error."""
    return read_table_skipping(path, 0.0)[0]


def read_table_skipping(path: Path, max_share: float) -> tuple[pa.Table, list[dict]]:
    """(table, skipped lines): CSV lines with the wrong number of fields are left out when
    they are at most `max_share` of the lines (each as {"line", "text", "fields",
    "expected"}); more is an error naming the first."""
    try:
        exists = path.exists()
    except OSError as e:  # a name too long for the file system, a path through a file
        raise DataError(f"cannot open `{_printable(path.name, 60)}`: {e.strerror or e}",
                        "check the path in the `data` statement") from None
    if not exists:
        raise DataError(f"data file `{path}` does not exist",
                        "paths are relative to the .dml file")
    if not os.access(path, os.R_OK) and not path.is_dir():
        raise DataError(f"cannot read `{path.name}`: permission denied",
                        "check the file's permissions (the user running mlc must be able to read it)")
    if path.is_dir():
        raise DataError(f"`{path}` is a folder, not a data file")
    suffix = path.suffix.lower()
    if suffix not in (".csv", ".parquet", ".pq"):
        raise DataError(f"cannot read `{path.name}`: unknown format", "use a .csv or .parquet file")
    bad_rows: list = []
    try:
        if suffix == ".csv":
            _check_text(path)
            with path.open("rb") as f:
                head = f.read(1 << 16)
            if not head.strip() and path.stat().st_size <= len(head):
                raise DataError(f"`{path.name}` is empty",
                                "a CSV file starts with a header line naming the columns")
            # One reader thread: the invalid-row handler is a Python callback, and pyarrow's
            # worker threads calling it could abort the process at exit after an error.
            # Quoted line breaks are valid CSV (RFC 4180) and common in text columns; pyarrow
            # reads them only when told, at no cost here since one thread reads anyway
            # (benchmarks/RESULTS.md, "Reading CSV with line breaks in values").
            table = pacsv.read_csv(path, read_options=pacsv.ReadOptions(use_threads=False),
                                   parse_options=pacsv.ParseOptions(
                newlines_in_values=True,
                invalid_row_handler=lambda row: bad_rows.append(row) or "skip"),
                convert_options=pacsv.ConvertOptions(null_values=NULL_VALUES, strings_can_be_null=True))
        else:
            table = pq.read_table(path)
    except DataError:
        raise
    except (pa.ArrowException, OSError, UnicodeDecodeError, ValueError) as e:
        detail = _printable(str(e).splitlines()[0] if str(e) else type(e).__name__)
        if "utf8" in detail.lower() or "utf-8" in detail.lower():
            raise DataError(f"cannot read `{path.name}`: it is not UTF-8 text",
                            "save the file as UTF-8 CSV") from None
        if suffix == ".csv" and "empty csv" in detail.lower():
            raise DataError(f"`{path.name}` is empty",
                            "a CSV file starts with a header line naming the columns") from None
        raise DataError(f"cannot read `{path.name}`: {detail}",
                        "check that it is a well-formed CSV (one header line, the same number of "
                        "fields on every line)" if suffix == ".csv" else
                        "check that it is a Parquet file") from None
    skipped: list[dict] = []
    if bad_rows and len(bad_rows) <= max_share * (table.num_rows + len(bad_rows)):
        lines = _bad_lines(path, bad_rows)
        skipped = [{"line": line, "text": _printable(r.text, 60), "fields": r.actual_columns,
                    "expected": r.expected_columns} for line, r in zip(lines, bad_rows)]
    elif bad_rows:
        line, row = _bad_lines(path, bad_rows)[0], bad_rows[0]
        where = f"line {line}" if line else f"the row `{_printable(row.text)}`"
        fields = f"{row.actual_columns} field{'s' if row.actual_columns != 1 else ''}"
        raise DataError(f"cannot read `{path.name}`: {where} has {fields}, "
                        f"the header has {row.expected_columns}",
                        "every line needs one value per column; quote values that contain commas")
    seen: set[str] = set()
    for name in table.column_names:
        if name in seen:
            raise DataError(f"`{path.name}` has two columns named `{name}`", "rename one of them")
        seen.add(name)
    if table.num_rows == 0:
        raise DataError(f"`{path.name}` has no rows")
    return table, skipped


def _check_text(path: Path, chunk: int = 1 << 20) -> None:
    """Raise DataError unless the file is UTF-8 text (pyarrow would take other bytes silently)."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    line, done, first = 1, False, True
    with open(path, "rb") as f:
        while not done:
            block = f.read(chunk)
            done = not block
            if first and block[:2] in (b"\xff\xfe", b"\xfe\xff"):
                raise DataError(f"cannot read `{path.name}`: it is UTF-16 text, not UTF-8",
                                "save the file as UTF-8 CSV")
            if b"\0" in block:
                at = line + block[:block.index(b"\0")].count(b"\n")
                raise DataError(f"cannot read `{path.name}`: it is a binary file, not CSV text (line {at})",
                                "export the data as a UTF-8 CSV file")
            try:
                decoder.decode(block, final=done)
            except UnicodeDecodeError as e:
                at = line + block[:max(0, e.start)].count(b"\n")
                raise DataError(f"cannot read `{path.name}`: it is not UTF-8 text (line {at})",
                                "save the file as UTF-8 CSV") from None
            line += block.count(b"\n")
            first = False


def lines_of(rows: np.ndarray, skipped_lines: list[int], path: Path | None = None) -> np.ndarray:
    """The line of the file where each table row (0-based) starts. For a CSV file, counted
    by reading it as CSV up to the last row asked for (a quoted value may span lines, blank
    and malformed lines are not rows); otherwise one header line and one line a row,
    counting the lines that were skipped before it."""
    rows = np.asarray(rows, np.int64)
    if path is not None and Path(path).suffix.lower() == ".csv" and len(rows):
        starts = _record_lines(Path(path), int(rows.max()))
        if starts is not None:
            return starts[rows]
    out = rows + 2
    for line in sorted(x for x in skipped_lines if x is not None):
        out = out + (out >= line)
    return out


def _record_lines(path: Path, last_row: int) -> np.ndarray | None:
    """The first line of table rows 0..last_row, reading the file as pyarrow does: the header,
    then records, leaving out blank lines and records with the wrong number of fields."""
    csv.field_size_limit(1 << 30)
    starts: list[int] = []
    try:
        with open(path, encoding="utf-8-sig", newline="") as f:
            reader = csv.reader(f)
            header = next(reader, None)
            if header is None:
                return None
            line = reader.line_num + 1  # where the next record starts
            for record in reader:
                if len(record) == len(header):
                    starts.append(line)
                    if len(starts) > last_row:
                        break
                line = reader.line_num + 1
    except (OSError, UnicodeDecodeError, csv.Error):
        return None
    return np.asarray(starts, np.int64) if len(starts) > last_row else None


def _bad_lines(path: Path, rows: list) -> list[int | None]:
    """The line of the file where each row pyarrow could not read starts, in order (pyarrow
    does not know line numbers): the malformed records found reading the file as CSV when
    they are as many, else each row's text looked up as one line; None where not found."""
    records = _malformed_record_lines(path)
    if records is not None and len(records) == len(rows):
        return records
    wanted: dict[str, list[int]] = {}
    for i, r in enumerate(rows):
        wanted.setdefault(r.text, []).append(i)
    out: list[int | None] = [None] * len(rows)
    try:
        with open(path, encoding="utf-8", newline="") as f:
            for n, text in enumerate(f, 1):
                waiting = wanted.get(text.rstrip("\r\n"))
                if waiting:
                    out[waiting.pop(0)] = n
    except (OSError, UnicodeDecodeError):
        pass
    return out


def _malformed_record_lines(path: Path) -> list[int] | None:
    """The first line of each non-blank record whose number of fields is not the header's."""
    csv.field_size_limit(1 << 30)
    out: list[int] = []
    try:
        with open(path, encoding="utf-8-sig", newline="") as f:
            reader = csv.reader(f)
            header = next(reader, None)
            line = reader.line_num + 1
            for record in reader:
                if record and header is not None and len(record) != len(header):
                    out.append(line)
                line = reader.line_num + 1
    except (OSError, UnicodeDecodeError, csv.Error):
        return None
    return out


def _printable(text: str, limit: int = 120) -> str:
    text = "".join(ch if ch.isprintable() else "?" for ch in text)
    return text if len(text) <= limit else text[:limit - 3] + "..."


def integral_floats(values: np.ndarray, empty: bool = True) -> bool:
    """Whether every present float is a whole number written exactly (2.0 -> "2");
    `empty`: the answer when no value is present."""
    finite = values[~np.isnan(values)]
    if not finite.size:
        return empty
    return bool(np.all(finite == np.round(finite)) and np.all(np.abs(finite) < 2**53))


def as_strings(col: pa.ChunkedArray) -> list[str | None]:
    """Canonical text of each value: 1.0 -> "1", True -> "true", null -> None."""
    if pa.types.is_floating(col.type):
        values = col.to_numpy(zero_copy_only=False)
        if integral_floats(values, empty=False):
            return [None if np.isnan(v) else str(int(v)) for v in values]
    if pa.types.is_boolean(col.type):
        return [None if v is None else ("true" if v else "false") for v in col.to_pylist()]
    if pa.types.is_dictionary(col.type):
        col = col.cast(pa.string())
    return [None if v is None else str(v) for v in col.to_pylist()]


_GROUPED = re.compile(r"^\s*[+-]?\d{1,3}(,\d{3})+(\.\d*)?\s*$")


class DecimalCommaError(DataError):
    """A comma that is not a thousands separator (`38,5`): never guessed either way."""


def _check_commas(texts: list[str | None]) -> None:
    """A comma in a number is a thousands separator only when every cell with one fits
    the grouping pattern `1,234,567`; otherwise `38,5` would silently read as 385."""
    for i, t in enumerate(texts):
        if t is not None and "," in t and not _GROUPED.match(t):
            raise DecimalCommaError(
                f"holds `{_printable(t, 40)}` (row {i + 1}), where the comma is not a thousands separator",
                "if commas are decimal points (38,5), replace them with `.`; thousands are written 1,234,567")


def as_numbers(col: pa.ChunkedArray) -> np.ndarray:
    """float64 with NaN for missing; raises DataError naming the first text value
    or the first infinite one."""
    if pa.types.is_boolean(col.type):
        col = col.cast(pa.int8())
    if col.type == pa.float64():  # the common case: no cast, no copy beyond joining chunks
        out = col.to_numpy()
    elif pa.types.is_integer(col.type) or pa.types.is_floating(col.type) or pa.types.is_decimal(col.type):
        out = col.cast(pa.float64()).to_numpy(zero_copy_only=False).astype(np.float64)
    else:
        texts = as_strings(col)
        _check_commas(texts)
        out = np.empty(len(texts), dtype=np.float64)
        for i, t in enumerate(texts):
            if t is None:
                out[i] = np.nan
                continue
            try:
                out[i] = float(t.strip().replace(",", "")) if t.strip() else np.nan
            except ValueError:
                shown = _printable(t, 40)
                raise DataError(f"holds text such as \"{shown}\" (row {i + 1})",
                                "declare it as `category`, or clean the column") from None
    inf = np.flatnonzero(np.isinf(out))
    if inf.size:
        raise DataError(f"holds an infinite value (row {inf[0] + 1})",
                        "replace it with a finite number or leave the cell empty")
    return out


def unparsable_numbers(col: pa.ChunkedArray) -> np.ndarray | None:
    """A mask of the cells of a text column that are not numbers (None when the column
    is numeric, so its problem is something else)."""
    if not (pa.types.is_string(col.type) or pa.types.is_large_string(col.type) or pa.types.is_dictionary(col.type)):
        return None
    try:
        _check_commas(as_strings(col))
    except DecimalCommaError:
        return None  # not a few bad cells: the whole column's commas are in question
    bad = np.zeros(len(col), bool)
    for i, t in enumerate(as_strings(col)):
        if t is not None and t.strip():
            try:
                float(t.strip().replace(",", ""))
            except ValueError:
                bad[i] = True
    return bad


def as_numbers_lenient(col: pa.ChunkedArray) -> np.ndarray:
    """as_numbers, with cells that are not numbers as NaN (missing): for training data
    whose bad cells the checks have already counted and reported."""
    try:
        return as_numbers(col)
    except DataError:
        bad = unparsable_numbers(col)
        if bad is None:
            raise
        texts = as_strings(col)
        return as_numbers(pa.chunked_array([pa.array([None if b else t for t, b in zip(texts, bad)], pa.string())]))


def distinct(values: list[str | None]) -> list[str]:
    return sorted({v for v in values if v is not None})


def split_indices(n: int, split: dict, table: pa.Table | None = None) -> dict[str, np.ndarray]:
    """Row indices of train/validation/test.

    Ratio split: shuffle row indices with numpy's default_rng(seed), then take
    the first n*parts[0]//100 rows for train, the next n*parts[1]//100 for validation,
    the rest for test (benchmarks/hgb_baseline.py reproduces this rule).
    """
    if split["kind"] == "ratio":
        perm = np.random.default_rng(split["seed"]).permutation(n)
        a = n * split["parts"][0] // 100
        b = a + n * split["parts"][1] // 100
        return {"train": np.sort(perm[:a]), "validation": np.sort(perm[a:b]), "test": np.sort(perm[b:])}
    values = np.array([v if v is not None else "" for v in as_strings(table.column(split["column"]))])
    return {name: np.flatnonzero(values == name) for name in ("train", "validation", "test")}


def take(table: pa.Table, rows: np.ndarray) -> pa.Table:
    return table.take(pa.array(rows, type=pa.int64()))


def drop_missing(table: pa.Table, columns: list[str]) -> tuple[pa.Table, int]:
    """Rows whose output value is missing cannot be learned from or scored."""
    mask = None
    for c in columns:
        valid = pc.is_valid(table.column(c))
        mask = valid if mask is None else pc.and_(mask, valid)
    if mask is None:
        return table, 0
    kept = table.filter(mask)
    return kept, table.num_rows - kept.num_rows
