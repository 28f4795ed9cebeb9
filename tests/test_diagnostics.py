"""Every user mistake the front end knows about, run through the real CLI.

Each test writes a program (and its data) into a fresh folder, runs
`python -m mlc.cli check prog.dml` there, and asserts the exact first line
`FILE:LINE:COL: error: message`, the hint, exit status 1 and no traceback.
"""
from __future__ import annotations

import pytest

from mlc.diagnostics import MAX_NAME

from helpers_frontend import CSV, Result, mlc, write_files

HEAD = 'data "d.csv" split 60/20/20 seed 1\n'
OK_FEATURES = "input age : number\noutput survived : binary\n"


def check(tmp_path, program: str, files: dict | None = None, *, name: str = "prog.dml",
          command: str = "check", extra: tuple = ()) -> Result:
    write_files(tmp_path, {"d.csv": CSV, **(files or {}), name: program})
    r = mlc(tmp_path, command, name, *extra)
    assert "Traceback" not in r.stderr, r.stderr
    assert r.returncode == 1, (r.returncode, r.stdout, r.stderr)
    return r


def test_valid_program_passes(tmp_path):
    write_files(tmp_path, {"d.csv": CSV, "prog.dml": HEAD + OK_FEATURES})
    r = mlc(tmp_path, "check", "prog.dml")
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("prog.dml: ok: 1 inputs, 1 outputs, 20 rows")


# ---- syntax ------------------------------------------------------------------
def test_missing_colon(tmp_path):
    r = check(tmp_path, HEAD + "input age number\noutput survived : binary\n")
    assert r.first == "prog.dml:2:11: error: unexpected `number`"
    assert r.hint == "expected `:`"
    # the source line and a caret under the culprit
    assert r.lines[1:3] == ["   2 | input age number", "                 ^^^^^^"]


def test_unclosed_brace(tmp_path):
    r = check(tmp_path, HEAD + "input age : number {\n  normalize = zscore\noutput survived : binary\n")
    assert r.first == "prog.dml:2:20: error: `{` is not closed"
    assert r.hint == "add `}` after the last option of this block"


def test_unclosed_brace_at_end_of_file(tmp_path):
    r = check(tmp_path, HEAD + OK_FEATURES + "train {\n  epochs = 3\n")
    assert r.first == "prog.dml:4:7: error: `{` is not closed"
    assert r.hint == "add `}` after the last option of this block"


def test_stray_character(tmp_path):
    r = check(tmp_path, HEAD + "input age : number @\noutput survived : binary\n")
    assert r.first == "prog.dml:2:20: error: unexpected character `@`"
    assert r.hint == "expected `block`, `combiner`, `data`, `input`, `output`, `slice`, `train`, `tune`, `{` or end of file"


def test_single_quoted_string(tmp_path):
    r = check(tmp_path, "data 'd.csv'\n" + OK_FEATURES)
    assert r.first == "prog.dml:1:6: error: unexpected character `'`"
    assert r.hint == 'strings use double quotes: "like this"'


def test_unterminated_string(tmp_path):
    r = check(tmp_path, 'data "d.csv\n' + OK_FEATURES)
    assert r.first == 'prog.dml:1:6: error: unexpected character `"`'
    assert r.hint == 'a string must end with `"` on the same line'


def test_unexpected_end_of_file(tmp_path):
    r = check(tmp_path, HEAD + "input age :\n\n# nothing more\n")
    assert r.first == "prog.dml:2:12: error: unexpected end of file"
    assert r.hint == "expected a name"


def test_keyword_glued_to_a_name(tmp_path):
    r = check(tmp_path, HEAD + "inputage : number\noutput survived : binary\n")
    assert r.first == "prog.dml:2:1: error: unexpected `inputage`"
    assert r.hint == "put a space after `input`: `input age`"


def test_misspelled_keyword(tmp_path):
    r = check(tmp_path, HEAD + "input age : number\nouptut survived : binary\n")
    assert r.first == "prog.dml:3:1: error: unexpected `ouptut`"
    assert r.hint == "did you mean `output`?"


def test_feature_line_without_keyword(tmp_path):
    r = check(tmp_path, HEAD + "input age : number\nsurvived : binary\n")
    assert r.first == "prog.dml:3:1: error: unexpected `survived`"
    assert r.hint == "a feature line starts with `input` or `output`: `input survived : ...`"


def test_dash_in_name(tmp_path):
    r = check(tmp_path, HEAD + "input my-age : number\noutput survived : binary\n")
    assert r.first == "prog.dml:2:9: error: unexpected character `-`"
    assert r.hint == "names may hold letters, digits and `_`, not `-`"


def test_control_character_is_named(tmp_path):
    r = check(tmp_path, HEAD + "input age : number\x01\noutput survived : binary\n")
    assert r.first == "prog.dml:2:19: error: unexpected character U+0001"


def test_unknown_escape_in_string(tmp_path):
    r = check(tmp_path, 'data "C:\\data\\d.csv"\n' + OK_FEATURES)
    assert r.first == "prog.dml:1:9: error: unknown escape `\\d` in a string"
    assert r.hint == 'write `\\\\` for a backslash and `\\"` for a quote; paths can use `/`'


def test_line_numbers_count_only_newlines(tmp_path):
    # A form feed is blank space to the parser, not a line break.
    r = check(tmp_path, HEAD + "input age : number\x0c output survived binary\n")
    assert r.first == "prog.dml:2:37: error: unexpected `binary`"
    assert r.lines[1] == "   2 | input age : number  output survived binary"


# ---- the language ------------------------------------------------------------
def test_unknown_input_type(tmp_path):
    r = check(tmp_path, HEAD + "input age : numbr\noutput survived : binary\n")
    assert r.first == "prog.dml:2:13: error: unknown input type `numbr`"
    assert r.hint == "did you mean `number`?"


def test_unknown_output_type(tmp_path):
    r = check(tmp_path, HEAD + "input age : number\noutput survived : regression\n")
    assert r.first == "prog.dml:3:19: error: unknown output type `regression`"
    assert r.hint == "expected one of: `binary`, `category`, `number`, `set`, `vector`"


def test_unknown_option(tmp_path):
    r = check(tmp_path, HEAD + "input age : number { normalise = zscore }\noutput survived : binary\n")
    assert r.first == "prog.dml:2:22: error: unknown option `normalise` for number inputs"
    assert r.hint == "did you mean `normalize`?"


def test_unknown_option_value(tmp_path):
    r = check(tmp_path, HEAD + "input age : number { normalize = zscor }\noutput survived : binary\n")
    assert r.first == "prog.dml:2:34: error: unknown value `zscor` for `normalize`"
    assert r.hint == "did you mean `zscore`?"


def test_quoted_choice(tmp_path):
    r = check(tmp_path, HEAD + 'input age : number { normalize = "zscore" }\noutput survived : binary\n')
    assert r.first == ("prog.dml:2:34: error: `normalize` expects one of "
                       "`robust`, `zscore`, `minmax`, `none`")
    assert r.hint == "write it without quotes: `normalize = zscore`"


def test_option_on_binary_input(tmp_path):
    r = check(tmp_path, HEAD + "input sex : binary { normalize = zscore }\noutput survived : binary\n")
    assert r.first == "prog.dml:2:22: error: binary inputs take no options"


def test_option_set_twice(tmp_path):
    r = check(tmp_path, HEAD + OK_FEATURES + "train { epochs = 3, epochs = 4 }\n")
    assert r.first == "prog.dml:4:21: error: option `epochs` is set twice"


def test_dropout_is_not_a_string(tmp_path):
    r = check(tmp_path, HEAD + OK_FEATURES + 'combiner concat { dropout = "x" }\n')
    assert r.first == "prog.dml:4:29: error: `dropout` expects a number"


def test_dropout_too_large(tmp_path):
    r = check(tmp_path, HEAD + OK_FEATURES + "combiner concat { dropout = 0.99 }\n")
    assert r.first == "prog.dml:4:29: error: `dropout` must be at most 0.95"


def test_layers_is_a_list(tmp_path):
    r = check(tmp_path, HEAD + OK_FEATURES + "combiner concat { layers = 3 }\n")
    assert r.first == "prog.dml:4:28: error: `layers` expects a list of whole numbers, such as [256, 128]"


def test_epochs_is_whole(tmp_path):
    r = check(tmp_path, HEAD + OK_FEATURES + "train { epochs = 2.5 }\n")
    assert r.first == "prog.dml:4:18: error: `epochs` expects a whole number, not 2.5"


def test_epochs_at_least_one(tmp_path):
    r = check(tmp_path, HEAD + OK_FEATURES + "train { epochs = 0 }\n")
    assert r.first == "prog.dml:4:18: error: `epochs` must be at least 1"


def test_number_too_large(tmp_path):
    r = check(tmp_path, HEAD + "input age : number\noutput survived : binary { weight = 1e999 }\n")
    assert r.first == "prog.dml:3:37: error: `weight` is too large"


def test_whole_number_too_large(tmp_path):
    r = check(tmp_path, HEAD + OK_FEATURES + "train { batch_size = 99999999999999999999 }\n")
    assert r.first == "prog.dml:4:22: error: `batch_size` is too large"
    assert r.hint == "at most 2147483647"


def test_unknown_call_argument(tmp_path):
    r = check(tmp_path, HEAD + OK_FEATURES + "train { optimizer = adamw(weightdecay = 0.01) }\n")
    assert r.first == "prog.dml:4:27: error: `adamw` has no argument `weightdecay`"
    assert r.hint == "did you mean `weight_decay`?"


def test_call_argument_out_of_range(tmp_path):
    r = check(tmp_path, HEAD + OK_FEATURES + "train { optimizer = adamw(lr = 0) }\n")
    assert r.first == "prog.dml:4:32: error: `lr` must be above 0"


def test_call_argument_given_twice(tmp_path):
    r = check(tmp_path, HEAD + OK_FEATURES + "train { optimizer = sgd(lr = 0.1, lr = 0.2) }\n")
    assert r.first == "prog.dml:4:35: error: argument `lr` is given twice"


def test_duplicate_input(tmp_path):
    r = check(tmp_path, HEAD + "input age : number\ninput age : number\noutput survived : binary\n")
    assert r.first == "prog.dml:3:7: error: duplicate input `age`"
    assert "prog.dml:2:7: note: first declared here" in r.lines
    assert r.hint == "remove one of the lines"


def test_input_and_output_same_column(tmp_path):
    r = check(tmp_path, HEAD + "input age : number\noutput age : number\noutput survived : binary\n")
    assert r.first == "prog.dml:3:8: error: `age` is both an input and an output"
    assert "prog.dml:2:7: note: `age` is declared as an input here" in r.lines
    assert r.hint == "a column cannot be learned from and predicted at once; remove one of the lines"


def test_no_data_statement(tmp_path):
    r = check(tmp_path, OK_FEATURES)
    assert r.first == "prog.dml:1:1: error: the program has no `data` statement"
    assert r.hint == 'start the program with the file to learn from, such as `data "churn.csv"`'


def test_two_data_statements(tmp_path):
    r = check(tmp_path, HEAD + 'data "d.csv"\n' + OK_FEATURES)
    assert r.first == "prog.dml:2:6: error: only one `data` statement is allowed"


def test_no_inputs_or_outputs(tmp_path):
    r = check(tmp_path, HEAD)
    assert r.errors == ["prog.dml:1:1: error: the program declares no `input`",
                        "prog.dml:1:1: error: the program declares no `output`"]
    assert r.hints == ["add a line such as `input age : number`",
                       "add the column to predict, such as `output churn : binary`"]


def test_split_parts_not_100(tmp_path):
    r = check(tmp_path, 'data "d.csv" split 80/10/5\n' + OK_FEATURES)
    assert r.first == "prog.dml:1:14: error: split parts add up to 95, not 100"
    assert r.hint == "write percentages, such as `split 80/10/10`"


def test_split_two_parts(tmp_path):
    r = check(tmp_path, 'data "d.csv" split 80/20\n' + OK_FEATURES)
    assert r.first == "prog.dml:1:14: error: a split has three parts (train/validation/test), not 2"
    assert r.hint == "write it like `split 80/10/10`"


def test_split_zero_part(tmp_path):
    r = check(tmp_path, 'data "d.csv" split 90/10/0\n' + OK_FEATURES)
    assert r.first == "prog.dml:1:14: error: every part of a split must be above 0"
    assert r.hint == "validation picks the best epoch and test measures the model; both need rows"


def test_duplicate_train_section(tmp_path):
    r = check(tmp_path, HEAD + OK_FEATURES + "train { epochs = 3 }\ntrain { epochs = 4 }\n")
    assert r.first == "prog.dml:5:1: error: duplicate `train` section"
    assert r.hint == "merge the two into one"


def test_unknown_combiner(tmp_path):
    r = check(tmp_path, HEAD + OK_FEATURES + "combiner concatenate { dropout = 0.1 }\n")
    assert r.first == "prog.dml:4:10: error: unknown combiner `concatenate`"
    assert r.hint == "did you mean `concat`?"


def test_early_stop_on_unknown_output(tmp_path):
    r = check(tmp_path, HEAD + OK_FEATURES + "train { early_stop = 5 on val.nope.accuracy }\n")
    assert r.first == "prog.dml:4:31: error: `nope` is not an output"
    assert r.hint == "expected one of: `survived`"


def test_early_stop_on_wrong_metric(tmp_path):
    r = check(tmp_path, HEAD + OK_FEATURES + "train { early_stop = 5 on val.survived.r2 }\n")
    assert r.first == "prog.dml:4:40: error: `r2` is not a metric of binary output `survived`"
    assert r.hint == "expected one of: `accuracy`, `f1`, `loss`, `roc_auc`"


def test_early_stop_on_bad_path(tmp_path):
    r = check(tmp_path, HEAD + OK_FEATURES + "train { early_stop = 5 on survived.accuracy }\n")
    assert r.first == "prog.dml:4:27: error: cannot stop on `survived.accuracy`"
    assert r.hint == "write `val.loss` or `val.OUTPUT.METRIC`, such as `val.churn.roc_auc`"


def test_on_after_other_option(tmp_path):
    r = check(tmp_path, HEAD + OK_FEATURES + "train { epochs = 5 on val.loss }\n")
    assert r.first == "prog.dml:4:23: error: `on` only follows `early_stop`"
    assert r.hint == "remove `on val.loss`"


def test_all_mistakes_reported_at_once(tmp_path):
    r = check(tmp_path, HEAD + "input age : numbr\noutput survived : binary { weight = -1 }\n"
              "train { epochs = 0 }\n")
    assert r.errors == ["prog.dml:2:13: error: unknown input type `numbr`",
                        "prog.dml:3:37: error: `weight` must be at least 0.0",
                        "prog.dml:4:18: error: `epochs` must be at least 1"]


# ---- the program against its data --------------------------------------------
def test_split_by_column_with_bad_values(tmp_path):
    r = check(tmp_path, 'data "d.csv" split by grade\n' + OK_FEATURES)
    assert r.first == "prog.dml:1:23: error: split column `grade` holds `a`, `b`, `c`, ..."
    assert r.hint == "its values must be `train`, `validation` or `test`"


def test_split_by_missing_column(tmp_path):
    r = check(tmp_path, 'data "d.csv" split by parts\n' + OK_FEATURES)
    assert r.first == "prog.dml:1:23: error: the data has no column `parts` to split by"
    assert r.hint == "did you mean `part`?"


def test_split_by_column_without_test_rows(tmp_path):
    csv = "age,survived,part\n" + "".join(f"{i},{'yes' if i % 2 else 'no'},"
                                          f"{'train' if i % 3 else 'validation'}\n" for i in range(12))
    r = check(tmp_path, 'data "e.csv" split by part\n' + OK_FEATURES, {"e.csv": csv})
    assert r.first == "prog.dml:1:23: error: split column `part` has no `test` rows"


def test_split_by_column_with_empty_cells(tmp_path):
    parts = ["train", "validation", "test", ""]
    csv = "age,survived,part\n" + "".join(f"{i},{'yes' if i % 2 else 'no'},{parts[i % 4]}\n" for i in range(12))
    r = check(tmp_path, 'data "e.csv" split by part\n' + OK_FEATURES, {"e.csv": csv})
    assert r.first == "prog.dml:1:23: error: split column `part` is empty in 3 rows"
    assert r.hint.startswith("give every row `train`, `validation` or `test`")


def test_column_missing_from_data(tmp_path):
    r = check(tmp_path, HEAD + "input agee : number\noutput survived : binary\n")
    assert r.first == "prog.dml:2:7: error: the data has no column `agee`"
    assert r.hint == "did you mean `age`?"


def test_binary_output_with_five_values(tmp_path):
    r = check(tmp_path, HEAD + "input age : number\noutput grade : binary\n")
    assert r.first == ("prog.dml:3:16: error: column `grade` has 5 distinct values "
                       "(`a`, `b`, `c`, `d`, ...); `binary` needs exactly two")
    assert r.hint == "declare it as `category`"


def test_binary_number_column_suggests_number(tmp_path):
    r = check(tmp_path, HEAD + "input age : binary\noutput survived : binary\n")
    assert r.first.startswith("prog.dml:2:13: error: column `age` has 5 distinct values")
    assert r.hint == "declare it as `category` or `number`"


def test_number_column_with_text(tmp_path):
    r = check(tmp_path, HEAD + "input note : number\noutput survived : binary\n")
    assert r.first == ('prog.dml:2:14: error: column `note` is declared `number` but 4 of 20 cells (20.0%) '
                       'do not read as one, such as `oops` (line 4), `oops` (line 9), `oops` (line 14)')
    assert r.hint == "declare it as `category`, or clean the column"


def test_number_column_with_infinity(tmp_path):
    csv = "x,survived\n" + "".join(f"{v},{s}\n" for v, s in
                                   [(1, "yes"), (2, "no"), ("inf", "yes"), (4, "no"), (5, "yes")] * 4)
    r = check(tmp_path, 'data "e.csv"\ninput x : number\noutput survived : binary\n', {"e.csv": csv})
    assert r.first == ("prog.dml:2:11: error: column `x` is declared `number` "
                       "but holds an infinite value (row 3)")
    assert r.hint == "replace it with a finite number or leave the cell empty"


def test_column_empty_in_every_row(tmp_path):
    r = check(tmp_path, HEAD + "input empty : number\noutput survived : binary\n")
    assert r.first == "prog.dml:2:7: error: column `empty` is empty in every row"


def test_output_with_a_single_value(tmp_path):
    r = check(tmp_path, HEAD + "input age : number\noutput flat : category\n")
    assert r.first == ("prog.dml:3:8: error: output `flat` holds a single value (`same`): "
                       "there is nothing to learn")


def test_positive_not_among_values(tmp_path):
    r = check(tmp_path, HEAD + 'input age : number\noutput survived : binary { positive = "maybe" }\n')
    assert r.first == 'prog.dml:3:28: error: `positive = "maybe"` is not a value of `survived`'
    assert r.hint == 'the column holds "no" and "yes"'


def test_split_leaves_a_part_empty(tmp_path):
    csv = "age,survived\n1,yes\n2,no\n3,yes\n"
    r = check(tmp_path, 'data "e.csv" split 80/10/10\n' + OK_FEATURES, {"e.csv": csv})
    assert r.first == "prog.dml:1:6: error: the validation split is empty (3 rows in all)"
    assert r.hint == "use more rows or a larger share"


# ---- data files --------------------------------------------------------------
def test_missing_data_file(tmp_path):
    r = check(tmp_path, 'data "nope.csv"\n' + OK_FEATURES)
    path = str((tmp_path / "nope.csv").resolve())
    if len(path) <= MAX_NAME:
        assert r.first == f"prog.dml:1:6: error: data file `{path}` does not exist"
    # a long path keeps its start and its end, where the file name is
    assert r.first.startswith(f"prog.dml:1:6: error: data file `{path[:20]}")
    assert r.first.endswith("/nope.csv` does not exist")
    assert r.hint == "paths are relative to the .dml file"


def test_data_path_relative_to_program(tmp_path):
    (tmp_path / "sub").mkdir()
    write_files(tmp_path, {"sub/d.csv": CSV, "sub/prog.dml": HEAD + OK_FEATURES})
    r = mlc(tmp_path, "check", "sub/prog.dml")
    assert r.returncode == 0, r.stderr


def test_latin1_data_file(tmp_path):
    data = "age,survived\n".encode() + "été,yes\n30,no\n".encode("latin-1")
    r = check(tmp_path, 'data "e.csv"\n' + OK_FEATURES, {"e.csv": data})
    assert r.first == "prog.dml:1:6: error: cannot read `e.csv`: it is not UTF-8 text (line 2)"
    assert r.hint == "save the file as UTF-8 CSV"


def test_latin1_header(tmp_path):
    r = check(tmp_path, 'data "e.csv"\n' + OK_FEATURES, {"e.csv": "âge,survived\n1,yes\n".encode("latin-1")})
    assert r.first == "prog.dml:1:6: error: cannot read `e.csv`: it is not UTF-8 text (line 1)"


def test_binary_garbage_named_csv(tmp_path):
    garbage = bytes(range(256)) * 8
    r = check(tmp_path, 'data "e.csv"\n' + OK_FEATURES, {"e.csv": garbage})
    assert r.first == "prog.dml:1:6: error: cannot read `e.csv`: it is a binary file, not CSV text (line 1)"
    assert r.hint == "export the data as a UTF-8 CSV file"


def test_utf16_data_file(tmp_path):
    r = check(tmp_path, 'data "e.csv"\n' + OK_FEATURES, {"e.csv": "age,survived\n1,yes\n".encode("utf-16")})
    assert r.first == "prog.dml:1:6: error: cannot read `e.csv`: it is UTF-16 text, not UTF-8"
    assert r.hint == "save the file as UTF-8 CSV"


def test_empty_csv(tmp_path):
    r = check(tmp_path, 'data "e.csv"\n' + OK_FEATURES, {"e.csv": ""})
    assert r.first == "prog.dml:1:6: error: `e.csv` is empty"
    assert r.hint == "a CSV file starts with a header line naming the columns"


def test_csv_with_header_only(tmp_path):
    r = check(tmp_path, 'data "e.csv"\n' + OK_FEATURES, {"e.csv": "age,survived\n"})
    assert r.first == "prog.dml:1:6: error: `e.csv` has no rows"


def test_ragged_csv(tmp_path):
    csv = "age,survived\n1,yes\n2,no\n3,yes,extra\n4,no\n"
    r = check(tmp_path, 'data "e.csv"\n' + OK_FEATURES, {"e.csv": csv})
    assert r.first == "prog.dml:1:6: error: cannot read `e.csv`: line 4 has 3 fields, the header has 2"
    assert r.hint == "every line needs one value per column; quote values that contain commas"


def test_duplicate_column_names(tmp_path):
    r = check(tmp_path, 'data "e.csv"\n' + OK_FEATURES, {"e.csv": "age,age,survived\n1,2,yes\n3,4,no\n"})
    assert r.first == "prog.dml:1:6: error: `e.csv` has two columns named `age`"
    assert r.hint == "rename one of them"


def test_unknown_data_extension(tmp_path):
    r = check(tmp_path, 'data "d.txt"\n' + OK_FEATURES, {"d.txt": CSV})
    assert r.first == "prog.dml:1:6: error: cannot tell the format of `d.txt`"
    assert r.hint == "data files end in .csv or .parquet"


def test_corrupt_parquet(tmp_path):
    r = check(tmp_path, 'data "e.parquet"\n' + OK_FEATURES, {"e.parquet": b"PAR1 not really"})
    assert r.first.startswith("prog.dml:1:6: error: cannot read `e.parquet`: ")
    assert r.hint == "check that it is a Parquet file"


# ---- the program file ----------------------------------------------------------
def test_program_file_missing(tmp_path):
    r = mlc(tmp_path, "check", "nope.dml")
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert r.first == "nope.dml: error: no such program file"


def test_program_not_utf8(tmp_path):
    write_files(tmp_path, {"prog.dml": "# caf\xe9\n".encode("latin-1")})
    r = mlc(tmp_path, "check", "prog.dml")
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert r.first == "prog.dml: error: the program is not UTF-8 text"


# ---- every command shows the same diagnostic -----------------------------------
BAD = HEAD + "input age : numbr\noutput survived : binary\n"
BAD_LINES = ["prog.dml:2:13: error: unknown input type `numbr`",
             "   2 | input age : numbr",
             "                   ^^^^^",
             "  hint: did you mean `number`?"]


def test_check_prints_the_diagnostic(tmp_path):
    r = check(tmp_path, BAD)
    assert r.lines == BAD_LINES
    assert r.stdout == ""


def test_explain_prints_the_same_diagnostic(tmp_path):
    r = check(tmp_path, BAD, command="explain")
    assert r.lines == BAD_LINES
    assert r.stdout == ""


def test_run_prints_the_same_diagnostic(tmp_path):
    r = check(tmp_path, BAD, command="run", extra=("--out", str(tmp_path / "out")))
    assert "\n".join(BAD_LINES) in r.stderr
    assert not (tmp_path / "out" / "model.mlc").exists()


def test_run_prints_only_the_diagnostic(tmp_path):
    r = check(tmp_path, BAD, command="run", extra=("--out", str(tmp_path / "out")))
    assert r.lines == BAD_LINES


def test_long_diagnostic_is_not_wrapped(tmp_path):
    write_files(tmp_path, {"d.csv": CSV, "prog.dml": HEAD + "input age : number\noutput grade : binary\n"})
    r = mlc(tmp_path, "check", "prog.dml", width=None)
    assert r.first == ("prog.dml:3:16: error: column `grade` has 5 distinct values "
                       "(`a`, `b`, `c`, `d`, ...); `binary` needs exactly two")
