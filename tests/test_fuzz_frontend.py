"""Property tests of the front end (parser, checks, defaults), in process.

(a) Generated well-formed programs, with random names, types, options from the
    spec tables, statement order, whitespace and comments, parse and check; the
    layout does not change the program; printing and reparsing is stable; and
    `mlc explain`'s text resolves to the same program again.
(b) Mutated programs (characters or tokens deleted, inserted, replaced) either
    pass or raise MlcError whose diagnostics all point inside the file with a
    message: never any other exception.
"""
from __future__ import annotations

import os
import re
from functools import lru_cache
from pathlib import Path

import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from helpers_frontend import program_to_dml, shape
from mlc import spec
from mlc.diagnostics import MlcError
from mlc.explain import explain, resolved_equal
from mlc.grammar import ast
from mlc.grammar.parse import parse
from mlc.passes.check import check
from mlc.passes.check_data import check_data
from mlc.passes.defaults import resolve
from mlc.runtime import data as D

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = sorted((ROOT / "examples").glob("*.dml"))

# MLC_FUZZ_EXAMPLES=5000 for a deeper hunt; the default keeps the file near 15 s.
FAST = settings(max_examples=int(os.environ.get("MLC_FUZZ_EXAMPLES", "200")), deadline=None,
                suppress_health_check=[HealthCheck.too_slow])

KEYWORDS = ("data", "input", "output", "combiner", "train", "split", "by", "seed", "on", "auto", "val")

# ---- generating well-formed programs ------------------------------------------
names = st.one_of(st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,10}", fullmatch=True), st.sampled_from(KEYWORDS))
unit_floats = st.floats(0.01, 0.9, allow_nan=False)


def number_text(x) -> str:
    return ast.format_number(x)


@st.composite
def choice_value(draw, form: spec.Choice) -> list[str]:
    name = draw(st.sampled_from(sorted(form.calls)))
    kinds = form.calls[name]
    keys = draw(st.lists(st.sampled_from(sorted(kinds)), unique=True)) if kinds else []
    if not keys and not draw(st.booleans()):
        return [name]
    toks = [name, "("]
    for i, k in enumerate(keys):
        toks += ([","] if i else []) + [k, "="]
        if kinds[k] == "int_list":
            toks += ["[", *",".join(str(w) for w in draw(st.lists(st.integers(1, 7), min_size=1, max_size=3))), "]"]
            continue
        value = draw(st.integers(1, 64)) if kinds[k] == "int" else draw(unit_floats)
        if k in ("heads", "size") and "heads" in kinds:  # a transformer's size is a multiple of its heads
            value = draw(st.sampled_from([1, 2, 4])) if k == "heads" else 4 * draw(st.integers(1, 16))
        toks.append(number_text(value))
    if keys and draw(st.booleans()):
        toks.append(",")  # a trailing comma is allowed
    return toks + [")"]


@st.composite
def scalar_value(draw, form: spec.Scalar, key: str, values: list[str]) -> list[str]:
    if form.auto and draw(st.booleans()):
        return ["auto"]
    if form.kind == "string":
        return [ast.Str(draw(st.sampled_from(values)), None).to_dml()]
    low = form.minimum if form.minimum is not None else 0
    if form.kind == "int":
        high = int(form.maximum) if form.maximum is not None else int(low) + 300
        return [str(draw(st.integers(int(low), high)))]
    if form.kind == "int_list":
        items = draw(st.lists(st.integers(1, 512), min_size=1, max_size=4))
        toks = ["["]
        for i, x in enumerate(items):
            toks += ([","] if i else []) + [str(x)]
        return toks + ["]"]
    high = form.maximum if form.maximum is not None else low + 100
    return [number_text(draw(st.floats(low, high, allow_nan=False)))]


@st.composite
def options_block(draw, table: dict, values: list[str], outputs: dict[str, str] | None = None,
                  required: bool = False) -> list[str]:
    keys = draw(st.lists(st.sampled_from(sorted(table)), unique=True)) if table else []
    if not keys:
        return ["{", "}"] if required or (table and draw(st.booleans())) else []
    toks = ["{"]
    for i, key in enumerate(keys):
        form = table[key].form
        if i and draw(st.booleans()):
            toks.append(",")
        toks += [key, "="]
        toks += draw(choice_value(form) if isinstance(form, spec.Choice)
                     else scalar_value(form, key, values))
        if key == "early_stop" and outputs is not None and draw(st.booleans()):
            paths = ["val.loss"] + [f"val.{o}.{m}" for o, t in outputs.items() for m in spec.METRICS[t]]
            toks += ["on", *re.split(r"(\.)", draw(st.sampled_from(paths)))]
    if draw(st.booleans()):
        toks.append(",")
    return toks + ["}"]


@st.composite
def programs(draw):
    """(statements as token lists, the feature columns and their types)."""
    cols = draw(st.lists(names, min_size=3, max_size=7, unique=True))
    n_in = draw(st.integers(1, len(cols) - 2))
    n_out = draw(st.integers(1, min(2, len(cols) - n_in - 1)))
    inputs, outputs, split_col = cols[:n_in], cols[n_in:n_in + n_out], cols[-1]
    types = {c: draw(st.sampled_from(spec.INPUT_TYPES)) for c in inputs}
    types.update({c: draw(st.sampled_from(spec.OUTPUT_TYPES)) for c in outputs})

    stmts = []
    path = draw(st.sampled_from(["data.csv", "sub/data.CSV", "d.parquet", 'odd \\"name\\".csv']))
    data = ["data", f'"{path}"']
    how = draw(st.sampled_from(["none", "ratio", "seed", "by"]))
    if how in ("ratio", "seed"):
        a = draw(st.integers(1, 98))
        b = draw(st.integers(1, 99 - a))
        data += ["split", str(a), "/", str(b), "/", str(100 - a - b)]
        if how == "seed":
            data += ["seed", str(draw(st.integers(0, 2**31)))]
    elif how == "by":
        data += ["split", "by", split_col]
    stmts.append(data)
    for c in inputs + outputs:
        role = "input" if c in inputs else "output"
        table = spec.FEATURE_OPTIONS[(role, types[c])]
        strings = {"date": ["%Y-%m-%d"], "set": ["|"], "bag": ["|"], "sequence": ["|"], "vector": ["|"]}
        stmts.append([role, c, ":", types[c], *draw(options_block(table, strings.get(types[c], ["no", "yes"])))])
    if draw(st.booleans()):
        stmts.append(["combiner", "concat", *draw(options_block(spec.COMBINER_OPTIONS, []))])
    if draw(st.booleans()):
        stmts.append(["train", *draw(options_block(spec.TRAIN_OPTIONS, [], {o: types[o] for o in outputs},
                                                   required=True))])
    order = draw(st.permutations(range(len(stmts))))
    return [stmts[i] for i in order], types, (split_col if how == "by" else None)


SEPARATORS = st.sampled_from([" ", " ", " ", "  ", "\t", "\n", "\n\n", "\r\n", " # a comment\n",
                              "\n  # x {\n"])
WORDY = re.compile(r"^[A-Za-z0-9_.+\-\"]")


def layout(tokens: list[str], seps: list[str]) -> str:
    """Join tokens with the given separators; words that would run together get a space."""
    out = []
    for i, tok in enumerate(tokens):
        if i:
            sep = seps[i % len(seps)] if seps else " "
            if not sep and WORDY.match(tok) and WORDY.match(out[-1][-1:]):
                sep = " "
            out.append(sep)
        out.append(tok)
    return "".join(out)


CELLS = {  # a generated cell of each type beyond the tabular three, for row i
    "text": lambda i: f"the {('red', 'blue', 'green')[i % 3]} fox number {i % 5}",
    "sequence": lambda i: f"x|y{i % 3}|z",
    "set": lambda i: f"a{i % 3}|b",
    "bag": lambda i: f"a:{i % 4}|b:1",
    "date": lambda i: f"2021-{1 + i % 12:02d}-{1 + i % 28:02d}",
    "vector": lambda i: f"{i % 5}|{i % 7}|1",
}


def table_for(types: dict[str, str], split_col: str | None, rows: int = 40) -> pa.Table:
    cols = {}
    for c, t in types.items():
        if t == "number":
            cols[c] = pa.array([float(i * 7 % 13) + 0.5 for i in range(rows)])
        elif t == "binary":
            cols[c] = pa.array(["no", "yes"] * (rows // 2))
        elif t in CELLS:
            cols[c] = pa.array([CELLS[t](i) for i in range(rows)])
        else:
            cols[c] = pa.array([("a", "b", "c")[i % 3] for i in range(rows)])
    if split_col is not None:
        cols[split_col] = pa.array([("train", "train", "validation", "test")[i % 4] for i in range(rows)])
    return pa.table(cols)


def resolved(text: str, table: pa.Table, file: str = "gen.dml"):
    checked = check(parse(text, file))
    facts = check_data(checked, table)
    return resolve(checked, facts, n_train=table.num_rows // 2)


@FAST
@given(programs(), st.lists(SEPARATORS | st.just(""), min_size=1, max_size=12))
def test_generated_programs_parse_check_and_round_trip(prog, seps):
    stmts, types, split_col = prog
    canonical = "\n".join(" ".join(s) for s in stmts) + "\n"
    text = layout([t for s in stmts for t in s], seps)
    try:
        p = parse(text, "gen.dml")
    except MlcError as e:  # pragma: no cover - a failure message worth reading
        pytest.fail(f"well-formed program rejected:\n{text}\n{e.render()}")
    # layout, whitespace and comments do not change the program
    assert shape(p) == shape(parse(canonical, "gen.dml"))
    # printing and reparsing is stable
    printed = program_to_dml(p)
    again = parse(printed, "gen.dml")
    assert shape(again) == shape(p)
    assert program_to_dml(again) == printed
    # valid by construction: the checks agree
    try:
        r = resolved(text, table_for(types, split_col))
    except MlcError as e:  # pragma: no cover
        pytest.fail(f"valid program rejected:\n{text}\n{e.render()}")
    # `mlc explain` prints valid .dml that resolves to the same program
    explained = explain(r)
    r2 = resolved(explained, table_for(types, split_col))
    assert resolved_equal(r, r2), explained


@FAST
@given(programs(), st.data())
def test_glued_words_are_rejected(prog, data):
    """Two words written together are one word: `inputage` is not `input age`."""
    stmts, types, split_col = prog
    tokens = [t for s in stmts for t in s]
    pairs = [i for i in range(len(tokens) - 1)
             if re.fullmatch(r"[A-Za-z_]\w*", tokens[i]) and re.fullmatch(r"[A-Za-z_]\w*", tokens[i + 1])]
    i = data.draw(st.sampled_from(pairs))
    text = " ".join(tokens[:i] + [tokens[i] + tokens[i + 1]] + tokens[i + 2:])
    with pytest.raises(MlcError) as e:
        resolved(text, table_for(types, split_col))
    assert_located(e.value, text, "gen.dml")


# ---- any value for any option ----------------------------------------------------
STRING_TOKENS = st.from_regex(r'"([^"\\\n]|\\[^\n])*"', fullmatch=True)
NUMBER_TOKENS = st.one_of(
    st.integers(-10**30, 10**30).map(str),
    st.floats(allow_nan=False, allow_infinity=False).map(ast.format_number),
    st.from_regex(r"[+-]?([0-9]{1,4}\.?[0-9]{0,3}|\.[0-9]{1,3})([eE][+-]?[0-9]{1,4})?", fullmatch=True),
)
CHOICE_NAMES = sorted({n for t in [*spec.FEATURE_OPTIONS.values(), *spec.SECTION_OPTIONS.values()]
                       for o in t.values() if isinstance(o.form, spec.Choice) for n in o.form.calls})
WORDS = st.one_of(names, st.sampled_from(CHOICE_NAMES))
ARG_NAMES = st.sampled_from(["lr", "weight_decay", "b1", "b2", "momentum", "warmup", "bins", "size", "delta",
                             "label_smoothing", "x"])
values = st.recursive(
    st.one_of(NUMBER_TOKENS, STRING_TOKENS, WORDS),
    lambda inner: st.one_of(
        st.lists(inner, max_size=4).map(lambda xs: "[" + ", ".join(xs) + "]"),
        st.tuples(WORDS, st.lists(st.tuples(ARG_NAMES, inner), max_size=3)).map(
            lambda c: f"{c[0]}(" + ", ".join(f"{k} = {v}" for k, v in c[1]) + ")")),
    max_leaves=6)


@st.composite
def plausible(draw, form) -> str:
    """A value of about the right shape for an option: valid often, wrong in the details."""
    if isinstance(form, spec.Choice):
        name = draw(st.sampled_from(sorted(form.calls)))
        keys = draw(st.lists(st.sampled_from(sorted(form.calls[name]) or ["x"]), max_size=3))
        if not keys and draw(st.booleans()):
            return name
        return f"{name}(" + ", ".join(f"{k} = {draw(NUMBER_TOKENS)}" for k in keys) + ")"
    if form.kind == "int_list":
        return "[" + ", ".join(draw(st.lists(NUMBER_TOKENS, max_size=3))) + "]"
    if form.kind == "string":
        return draw(st.one_of(STRING_TOKENS, NUMBER_TOKENS, names, st.sampled_from(['"yes"', '"no"', "yes"])))
    return draw(st.one_of(NUMBER_TOKENS, st.just("auto")))


PLACES = [("input", "number"), ("input", "category"), ("input", "binary"), ("output", "binary"),
          ("output", "category"), ("output", "number"), ("combiner", None), ("train", None)]


@FAST
@given(st.sampled_from(PLACES), st.data())
def test_any_option_value_is_checked(place, data):
    role, typ = place
    table = spec.FEATURE_OPTIONS[(role, typ)] if typ else spec.SECTION_OPTIONS[role]
    # (hypothesis favours small integers: the common case is 0 in each draw below)
    other_key = not table or data.draw(st.integers(0, 9)) == 9
    key = data.draw(names if other_key else st.sampled_from(sorted(table)))
    value = data.draw(plausible(table[key].form) if key in table and data.draw(st.integers(0, 2)) < 2
                      else values)
    on = data.draw(st.sampled_from([" on val.loss", " on val.y.accuracy", " on val.y.r2", " on y"])
                   if data.draw(st.integers(0, 5)) == 5 or key == "early_stop" else st.just(""))
    block = f"{{ {key} = {value}{on} }}"
    path = data.draw(STRING_TOKENS if data.draw(st.integers(0, 9)) == 9 else st.just('"data.csv"'))
    lines = [f"data {path}", "input a : number", "input b : category", "input c : binary",
             "output y : binary"]
    if role == "input":
        lines.append(f"input x : {typ} {block}")
    elif role == "output":
        lines.append(f"output x : {typ} {block}")
    else:
        lines.append(f"{role}{' concat' if role == 'combiner' else ''} {block}")
    text = "\n".join(lines) + "\n"
    types = {"a": "number", "b": "category", "c": "binary", "y": "binary", "x": typ or "number"}
    try:
        r = resolved(text, table_for(types, None))
    except MlcError as e:
        assert_located(e, text, "gen.dml")
        return
    assert resolved_equal(r, resolved(explain(r), table_for(types, None))), explain(r)


# ---- mutating programs ------------------------------------------------------------
RICH = '''# every construct once
data "data/titanic.csv" split 70/15/15 seed 3

input  sex             : binary
input  age             : number { normalize = zscore, missing = mean
                                  encoder = ple(bins = 8) }
input  passenger_class : category { encoder = embed(size = 4), min_count = 2 }
output survived        : binary { positive = "yes", weight = 1.5, loss = binary_cross_entropy }

combiner concat { layers = [64, 32], activation = gelu, dropout = 0.1, norm = layernorm }
train {
  optimizer  = adamw(lr = 0.003, weight_decay = 1e-4, b1 = 0.9, b2 = 0.999)
  schedule   = cosine(warmup = 0.1)
  batch_size = auto
  epochs     = 20
  early_stop = 5 on val.survived.roc_auc
  grad_clip  = 1.0
}
'''
SPLIT_BY = 'data "data/titanic.csv" split by sex\ninput age : number\noutput survived : binary\n'
BASES = [(p.name, p.read_text()) for p in EXAMPLES] + [("rich.dml", RICH), ("split_by.dml", SPLIT_BY)]

INSERTS = st.sampled_from(list("{}()[]=,:./\"'#\n\t -+0123456789eE_xyz\\@é\x00\x0c\r“")
                          + ["input", "output", "data", "train", "combiner", "split", "by", "seed", "on",
                             "val", "auto", "number", "binary", "category", "concat", "adamw(", "[1,",
                             '"', '"x.csv"', "80/10/10", "1e999", "-1", "0.5", "\\q", "\n}\n", "{\n"])
TOKEN = re.compile(r'"(?:[^"\\\n]|\\.)*"|#[^\n]*|[A-Za-z_][A-Za-z0-9_]*|[0-9.eE+-]+|\s+|.', re.S)


@st.composite
def mutated(draw):
    name, text = draw(st.sampled_from(BASES))
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["delete", "insert", "replace", "drop_token", "dup_token", "swap_tokens"]))
        if op in ("delete", "insert", "replace"):
            i = draw(st.integers(0, len(text)))
            n = draw(st.integers(1, 6)) if op != "insert" else 0
            new = draw(INSERTS) if op != "delete" else ""
            text = text[:i] + new + text[i + n:]
        else:
            toks = TOKEN.findall(text)
            if len(toks) < 2:
                continue
            i = draw(st.integers(0, len(toks) - 1))
            if op == "drop_token":
                del toks[i]
            elif op == "dup_token":
                toks.insert(i, toks[i])
            else:
                j = draw(st.integers(0, len(toks) - 1))
                toks[i], toks[j] = toks[j], toks[i]
            text = "".join(toks)
    return name, text


@lru_cache(maxsize=None)
def example_table(name: str) -> pa.Table:
    if name in ("rich.dml", "split_by.dml"):
        return D.read_table(ROOT / "examples" / "data" / "titanic.csv")
    data = re.search(r'^data "([^"]+)"', (ROOT / "examples" / name).read_text(), re.M).group(1)
    return D.read_table(ROOT / "examples" / data)


def assert_located(e: MlcError, source: str, file: str):
    lines = source.split("\n")
    assert e.diagnostics, "MlcError without diagnostics"
    for d in e.diagnostics:
        assert isinstance(d.message, str) and d.message.strip(), d
        assert d.span is not None, f"diagnostic without a location: {d.message}"
        assert 1 <= d.span.line <= len(lines), (d.span, len(lines), d.message)
        assert 1 <= d.span.col <= len(lines[d.span.line - 1]) + 1, (d.span, lines[d.span.line - 1], d.message)
        assert d.file == file
        assert "\n" not in d.message
    rendered = e.render()  # never fails, and leads with FILE:LINE:COL
    first = e.diagnostics[0]
    assert rendered.startswith(f"{file}:{first.span.line}:{first.span.col}: error: ")
    # the excerpt shows the line the span names (lines end at "\n" only, as the parser counts)
    shown = rendered.split("\n")[1]
    line = lines[first.span.line - 1].rstrip("\r")
    assert shown.startswith(f"{first.span.line:>4} | ")
    assert len(shown) == len(f"{first.span.line:>4} | ") + len(line)
    assert all(a == b or not b.isprintable() or b.isspace() for a, b in zip(shown[7:], line)), (shown, line)


def front(source: str, file: str, table: pa.Table | None):
    """parse -> check -> check_data -> resolve -> explain, as far as the program is valid."""
    checked = check(parse(source, file))
    if table is None:
        return
    facts = check_data(checked, table)
    r = resolve(checked, facts, n_train=max(1, table.num_rows * 8 // 10))
    explain(r)


@FAST
@given(mutated())
def test_mutated_programs_fail_only_with_located_diagnostics(case):
    name, source = case
    try:
        front(source, name, example_table(name))
    except MlcError as e:
        assert_located(e, source, name)


@FAST
@given(st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=200))
def test_arbitrary_text_fails_only_with_located_diagnostics(source):
    try:
        front(source, "any.dml", None)
    except MlcError as e:
        assert_located(e, source, "any.dml")


@FAST
@given(st.lists(st.sampled_from(["data", "input", "output", "combiner", "train", "split", "by", "seed", "on",
                                 "x", "age", '"d.csv"', "80", "/", "10", ":", "number", "binary", "{", "}",
                                 "(", ")", "[", "]", "=", ",", ".", "1.5", "-2", "auto", "val", "\n",
                                 "#c\n"]),
                max_size=40))
def test_token_soup_fails_only_with_located_diagnostics(tokens):
    source = " ".join(tokens)
    try:
        front(source, "soup.dml", None)
    except MlcError as e:
        assert_located(e, source, "soup.dml")


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_examples_check_cleanly(path):
    front(path.read_text(), str(path), example_table(path.name))
