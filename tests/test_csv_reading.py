"""Reading real CSV files (issue 14): quoted line breaks are values, not row ends; malformed
lines are left out with their true line numbers (up to 1%, else an error); `mlc init`
writes `split by COLUMN` for a column that already holds the split."""
from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
from helpers_frontend import mlc, write_files

from mlc.runtime import data as D

HEADER = "note,x,y\n"


def _rows(n: int, start: int = 0) -> str:
    return "".join(f"plain note {i},{i % 7},{'yes' if i % 3 else 'no'}\n" for i in range(start, start + n))


def test_a_quoted_line_break_is_part_of_the_value(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text('a,b,y\n"x\ny",1,yes\n"one ""quoted"" line\r\nand another",2,no\nplain,3,yes\n')
    table = D.read_table(path)
    assert table.num_rows == 3
    assert table.column("a").to_pylist() == ["x\ny", 'one "quoted" line\r\nand another', "plain"]
    assert table.column("b").to_pylist() == [1, 2, 3]


def test_check_and_run_read_text_with_line_breaks(tmp_path):
    """A text column whose cells span lines: check passes, and a bad cell later in the file
    is named by the line it is really on."""
    body = "".join(f'"first line {i}\nsecond line {i}",{i % 7},{"yes" if i % 3 else "no"}\n' for i in range(300))
    body += 'last,abc,yes\n'  # record 301 starts on line 2 + 2 * 300
    write_files(tmp_path, {"d.csv": HEADER + body,
                           "p.dml": 'data "d.csv" split 80/10/10 seed 1\ninput note : text\ninput x : number\n'
                                    "output y : binary\ntrain { epochs = 1 }\n"})
    r = mlc(tmp_path, "check", "p.dml")
    assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr
    assert '1 cell of `x` do not read as `number` and are treated as missing: `abc` (line 602)' in r.stderr


def test_malformed_lines_are_left_out_with_their_lines(tmp_path):
    """Rows with 2 and 1 fields among 400 good ones (some spanning lines): left out with a
    warning naming the lines where they start, recorded in report.json; a run goes on."""
    good = "".join(f'"note {i}\nspans",{i % 7},{"yes" if i % 3 else "no"}\n' if i % 50 == 0 else
                   f"note {i},{i % 7},{'yes' if i % 3 else 'no'}\n" for i in range(400))
    lines = good.splitlines(keepends=True)
    # after the header (line 1): record i starts on line 2 + i + (records before it spanning two lines)
    text = HEADER + "".join(lines[:100]) + "broken,1\n" + "".join(lines[100:250]) + "alone\n" + "".join(lines[250:])
    write_files(tmp_path, {"d.csv": text,
                           "p.dml": 'data "d.csv" split 80/10/10 seed 1\ninput note : text\ninput x : number\n'
                                    "output y : binary\ntrain { epochs = 1 }\n"})
    first_bad = 1 + 100 + 1   # the header, 100 lines of records (98, two of them on two lines), the bad one
    second_bad = first_bad + 150 + 1
    r = mlc(tmp_path, "check", "p.dml")
    assert r.returncode == 0, r.stderr
    assert (f"left out 2 lines of `d.csv` with the wrong number of fields (the header has 3): "
            f"line {first_bad} (2 fields), line {second_bad} (1 fields)") in r.stderr
    assert text.splitlines()[first_bad - 1] == "broken,1" and text.splitlines()[second_bad - 1] == "alone"
    r = mlc(tmp_path, "run", "p.dml", "--out", "out")
    assert r.returncode == 0, r.stderr
    quality = json.loads((tmp_path / "out" / "report.json").read_text())["data_quality"]
    assert quality["(lines left out)"]["count"] == 2


def test_too_many_malformed_lines_is_an_error_naming_the_first(tmp_path):
    text = HEADER + _rows(100) + "a,1\n" + _rows(50, 100) + "b\n" + "c,1,2,3\n"
    write_files(tmp_path, {"d.csv": text, "p.dml": 'data "d.csv"\ninput note : text\ninput x : number\n'
                                                   "output y : binary\n"})
    r = mlc(tmp_path, "check", "p.dml")
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert r.first == "p.dml:1:6: error: cannot read `d.csv`: line 102 has 2 fields, the header has 3"


def _split_table(tmp_path: Path, folds: list[str]) -> Path:
    n = len(folds)
    rows = [f"{i % 5},{(i * 7) % 11},{'a' if i % 2 else 'b'},{fold},{'yes' if i % 3 else 'no'}"
            for i, fold in enumerate(folds)]
    path = tmp_path / "lending.csv"
    path.write_text("amount,term,grade,fold,Class\n" + "\n".join(rows) + "\n")
    assert n == len(rows)
    return path


def test_init_splits_by_a_column_holding_the_split(tmp_path):
    folds = ["train"] * 80 + ["validation"] * 10 + ["test"] * 10
    _split_table(tmp_path, folds)
    r = mlc(tmp_path, "init", "lending.csv", "--target", "Class", "--out", "p.dml")
    assert r.returncode == 0, r.stderr
    program = (tmp_path / "p.dml").read_text()
    assert 'data "lending.csv" split by fold' in program
    assert "# `fold` holds only train/validation/test" in program and "leak the split" in program
    assert "input  fold" not in program and "input fold" not in program
    r = mlc(tmp_path, "explain", "p.dml")
    assert r.returncode == 0, r.stderr
    assert "split by fold" in r.stdout


def test_init_keeps_a_column_that_only_looks_like_a_split(tmp_path):
    """Other values beside train/validation/test, or no `train`: an ordinary column."""
    _split_table(tmp_path, ["train"] * 50 + ["holdout"] * 25 + ["test"] * 25)
    r = mlc(tmp_path, "init", "lending.csv", "--target", "Class")
    assert r.returncode == 0, r.stderr
    assert "split by" not in r.stdout and "input  fold" in r.stdout


def test_init_leaves_out_malformed_lines_and_says_which(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text(HEADER + _rows(150) + "broken\n" + _rows(100, 150) + '"a\nb",1,yes\n')
    r = mlc(tmp_path, "init", "d.csv", "--target", "y")
    assert r.returncode == 0, r.stderr
    assert "# 1 malformed line (wrong number of fields) left out: 152; fix them in the file to use them" in r.stdout
    assert pa.types.is_string(D.read_table_skipping(path, 0.01)[0].column("note").type)
