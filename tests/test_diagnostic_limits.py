"""Diagnostics stay readable whatever the input's size (issue 10, item 19): at most
MAX_PER_FILE per file with a count of the rest, long names cut in messages, long source
lines shown as a window around the caret."""
from __future__ import annotations

from helpers_frontend import CSV, mlc, write_files

from mlc.diagnostics import (MAX_NAME, MAX_PER_FILE, Diagnostic, MlcError, Span, UserError, render_all)

HEAD = 'data "d.csv" split 60/20/20 seed 1\n'


def test_thousands_of_duplicates_and_unknown_options_print_the_first_50_and_a_count(tmp_path):
    program = (HEAD + "input age : number\n" + "input age : number\n" * 3000 + "output survived : binary\n"
               + "train { " + " ".join(f"zz{i} = 1" for i in range(3000)) + " }\n")
    write_files(tmp_path, {"d.csv": CSV, "prog.dml": program})
    r = mlc(tmp_path, "check", "prog.dml")
    assert r.returncode == 1 and "Traceback" not in r.stderr
    lines = r.stderr.splitlines()
    assert sum(": error: " in line for line in lines) == MAX_PER_FILE
    assert lines[-1] == f"prog.dml: note: {6000 - MAX_PER_FILE} more errors not shown (the first 50 of the file are above)"
    assert len(lines) < 10 * MAX_PER_FILE


def test_warnings_are_capped_too(tmp_path):
    """80 constant inputs: 80 no-information warnings, of which `mlc check` prints 50 and a count."""
    n, names = 40, [f"c{i}" for i in range(80)]
    csv = ",".join(names + ["x", "y"]) + "\n" + "".join(
        ",".join(["1"] * len(names) + [str(i), "yes" if i % 2 else "no"]) + "\n" for i in range(n))
    program = HEAD + "".join(f"input {c} : number\n" for c in names) + "input x : number\noutput y : binary\n"
    write_files(tmp_path, {"d.csv": csv, "prog.dml": program})
    r = mlc(tmp_path, "check", "prog.dml")
    assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr
    lines = r.stderr.splitlines()
    assert sum(": warning: " in line for line in lines) == MAX_PER_FILE
    assert f"prog.dml: note: {80 - MAX_PER_FILE} more warnings not shown (the first 50 of the file are above)" in lines


def test_a_100k_character_name_is_never_echoed_in_full(tmp_path):
    name = "a" * 100_000
    write_files(tmp_path, {"d.csv": CSV, "prog.dml": HEAD + f"input {name} : number\ninput {name} : number\n"
                                                     "output survived : binary\n"})
    r = mlc(tmp_path, "check", "prog.dml")
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert len(r.stderr) < 2000
    head = (MAX_NAME - 2) // 2
    assert r.first == (f"prog.dml:3:7: error: duplicate input `{'a' * head}...(100000 characters)..."
                       f"{'a' * (MAX_NAME - 3 - head)}`")
    assert max(len(line) for line in r.stderr.splitlines()) < 200


def test_the_count_of_the_rest_is_per_file_and_per_severity():
    diags = ([Diagnostic(f"e{i}", Span(1, 1), "a.dml") for i in range(60)]
             + [Diagnostic(f"w{i}", Span(1, 1), "a.dml", severity="warning") for i in range(5)]
             + [Diagnostic("other", Span(1, 1), "b.dml")])
    out = render_all(diags, "x = 1\n").splitlines()
    assert "b.dml:1:1: error: other" in out  # b.dml has its own 50
    assert out[-1] == "a.dml: note: 10 more errors and 5 more warnings not shown (the first 50 of the file are above)"
    assert str(MlcError(diags, "x = 1\n")).splitlines()[-1] == out[-1]


def test_a_long_line_is_shown_as_a_window_with_the_caret_under_the_culprit():
    line = "train { " + " ".join(f"k{i} = {i}" for i in range(2000)) + " bad@ = 1 " + "z = 1 " * 500 + "}"
    col = line.index("bad@") + 1
    out = Diagnostic("oops", Span(1, col, 1, col + 4), "p.dml").render(line + "\n").splitlines()
    text, caret = out[1], out[2]
    assert text.startswith("   1 | ...") and text.endswith("...")
    assert len(text) < 140 and len(caret) < 140
    at = caret.index("^")
    assert text[at:at + 4] == "bad@" and caret[at:] == "^^^^"


def test_the_window_keeps_wide_characters_aligned():
    line = "x" * 5000 + "\u4e2d\u6587" * 10 + "!" + "y" * 5000
    col = line.index("!") + 1
    text, caret = Diagnostic("oops", Span(1, col), "p.dml").render(line).splitlines()[1:]
    cells = lambda s: sum(2 if "\u4e00" <= ch <= "\u9fff" else 1 for ch in s)  # noqa: E731
    at = caret.index("^")
    prefix = text[: len(text) - len(text.lstrip())]  # nothing wide before the gutter
    shown = text[len(prefix):]
    pos, i = len(prefix), 0
    while pos < at:  # walk the shown text by display cells up to the caret
        pos += cells(shown[i])
        i += 1
    assert shown[i] == "!"


def test_lines_a_person_writes_are_shown_whole():
    line = "train { " + ", ".join(f"k{i} = {i}" for i in range(300)) + " }"  # 3,000 columns
    text = Diagnostic("oops", Span(1, len(line) - 1), "p.dml").render(line).splitlines()[1]
    assert text == "   1 | " + line


def test_short_lines_and_messages_are_unchanged():
    d = Diagnostic("unknown option `epoch`", Span(2, 9, 2, 14), "p.dml", "did you mean `epochs`?")
    assert d.render("data \"d.csv\"\ntrain { epoch = 3 }\n").splitlines() == [
        "p.dml:2:9: error: unknown option `epoch`",
        "   2 | train { epoch = 3 }",
        "               ^^^^^",
        "  hint: did you mean `epochs`?",
    ]


def test_user_errors_cut_long_names_too():
    e = UserError("the data has no column `" + "c" * 50_000 + "`\nsee the header")
    assert len(str(e)) < 280 and "(50000 characters)" in str(e) and str(e).endswith("\nsee the header")
