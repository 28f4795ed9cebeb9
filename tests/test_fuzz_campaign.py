"""A fuzzing campaign through the whole tool, in process (issue 10).

Four kinds of cases, each generated from its number and a seed, so any case reruns alone:

- `program`: a program generated from the grammar and spec.py's option tables (every
  column type; options, some of them invalid; expert blocks as combiners and encoders;
  slices; splits) with a data file made for it (CSV or Parquet, sometimes dirty cells);
- `mutated`: a generated program or an example, with characters and tokens inserted,
  deleted, duplicated and swapped;
- `data`: a fixed program per column type on a generated data file: encodings (BOM,
  Latin-1, UTF-16, CRLF), shapes (no rows, one row, a header only, ragged lines, a missing,
  duplicate or extra column, empty or binary files), physical types in Parquet, dirty cells;
- `artifact`: a trained model.mlc with its members changed (removed, truncated, replaced,
  bit-flipped, manifest fields deleted or retyped, weights of the wrong shape or NaN, with
  and without the recorded sizes and checksums updated to match).

Each case runs `mlc check`, and where the program is valid a tiny `mlc run` (epochs = 1,
few rows) and `mlc predict` through the CLI in process (click's CliRunner), and
`mlc.load(...).predict(...)` on generated rows. A case fails on:

- an uncaught exception: the CLI must exit 0, or 1 with a diagnostic, never a traceback;
  the Python API may raise MlcError, UserError (ArtifactError, DataError, ...) or
  ValueError, with a clean message (no traceback, no object reprs, bounded length);
- a non-finite prediction (a number, a probability, a vector component);
- output left half-written: `mlc run --out` shows model.mlc and report.json both (and
  they load and agree) or neither; `mlc predict --out` writes a whole CSV (one row per
  input row) or nothing; no temporary file stays behind.

The default suite runs a bounded number of cases of each kind (69: 12 program, 20 mutated,
12 data, 25 artifact; about 2 min on 2 cores, mostly the few tiny runs and the two models
the artifact cases change). A long campaign, N cases of each kind:

    MLC_FUZZ_CAMPAIGN=800 .venv/bin/python -m pytest -q tests/test_fuzz_campaign.py -p no:randomly

MLC_FUZZ_SEED=S draws other cases; MLC_FUZZ_REPORT=FILE appends every failing case
(kind, number, what failed, the program) as a JSON line; MLC_FUZZ_STATS=FILE appends every
case's stages and exit statuses as a JSON line; MLC_FUZZ_KEEP=DIR keeps each failing
case's files there. docs/fuzzing.md records the campaigns run and what they found.
"""
from __future__ import annotations

import io
import json
import math
import os
import random
import re
import shutil
import string
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

import mlc
from mlc import spec
from mlc.cli import main as cli
from mlc.diagnostics import MlcError, UserError
from mlc.grammar import ast

ROOT = Path(__file__).resolve().parents[1]
CAMPAIGN = int(os.environ.get("MLC_FUZZ_CAMPAIGN", "0"))
SEED = os.environ.get("MLC_FUZZ_SEED", "0")
REPORT = os.environ.get("MLC_FUZZ_REPORT")
STATS = os.environ.get("MLC_FUZZ_STATS")
KEEP = os.environ.get("MLC_FUZZ_KEEP")
# cases of each kind in the default suite; and of those, how many also train (a tiny run)
DEFAULT = {"program": 12, "mutated": 20, "data": 12, "artifact": 25}
RUN_SHARE = {"program": 0.3, "mutated": 0.15, "data": 0.25}


def count(kind: str) -> int:
    return CAMPAIGN or DEFAULT[kind]


KEYWORDS = ("data", "input", "output", "combiner", "train", "split", "by", "seed", "on", "auto", "val",
            "block", "return", "slice", "and", "or", "not", "in", "is", "missing")

# Known bugs in code this campaign does not own: (kind, regex on the failure) -> reason.
# A matching case is marked xfail; every entry names the issue it is filed under.
KNOWN: dict[tuple[str, str], str] = {}


# ---- cells ------------------------------------------------------------------------
WORDS = ["red", "blue", "green", "fox", "dog", "runs", "jumps", "over", "the", "a", "cat", "sky"]


def cell(rng: random.Random, typ: str, i: int, labels: tuple) -> str:
    """A valid cell of a column type, for row i."""
    if typ == "number":
        return rng.choice([f"{(i * 7 % 13) + 0.5}", str(i % 11 - 3), f"{rng.gauss(0, 10):.3f}"])
    if typ in ("binary", "category"):
        labels = labels or (("no", "yes") if typ == "binary" else ("x", "y", "z"))
        return labels[i % len(labels)]
    if typ == "text":
        return " ".join(rng.choice(WORDS) for _ in range(rng.randint(1, 8)))
    if typ == "sequence":
        return "|".join(rng.choice(WORDS[:6]) for _ in range(rng.randint(1, 6)))
    if typ == "set":
        return "|".join(sorted(rng.sample(["a", "b", "c", "d", "e"], rng.randint(1, 3))))
    if typ == "bag":
        return "|".join(f"{w}:{rng.randint(1, 4)}" for w in rng.sample(["a", "b", "c", "d"], rng.randint(1, 3)))
    if typ == "date":
        return f"2021-{1 + i % 12:02d}-{1 + (i * 5) % 28:02d}"
    if typ == "vector":
        return "|".join(f"{rng.uniform(-2, 2):.3f}" for _ in range(3))
    raise ValueError(typ)


DIRTY = ["", "NA", "?", "null", "None", "n/a", "  ", "1,5", "1,234", "1e400", "-1e400", "inf", "-inf", "nan",
         "1.2.3", "é", "\u4e2d\u6587", "=cmd()", "quoted, comma", "line\nbreak", "a|b|c", "a:x|b:", "1|2",
         "2021-02-30", "13/45/2021", "99999999999999999999999", "0x1F", "true", "-0", "+5", " 7 ", "\t",
         "\U0001F642", "||", "a:1:2", "1||2", "--", "\\", '"', "'", "0.0000000001", "-", "1e-400"]


def dirty_cell(rng: random.Random) -> str:
    if rng.random() < 0.05:
        return rng.choice(string.ascii_letters) * rng.randint(1000, 20000)
    return rng.choice(DIRTY)


@dataclass
class Column:
    name: str
    type: str
    role: str  # "input" | "output" | "split" | "extra"
    labels: tuple = ()


def column_values(rng: random.Random, col: Column, rows: int, dirt: float) -> list:
    if col.role == "split":
        return [("train", "train", "train", "validation", "test")[i % 5] for i in range(rows)]
    out = []
    for i in range(rows):
        if dirt and rng.random() < dirt:
            out.append(dirty_cell(rng))
        else:
            out.append(cell(rng, col.type, i, col.labels))
    return out


def write_data(rng: random.Random, folder: Path, name: str, cols: list[Column], rows: int, dirt: float,
               fmt: str) -> dict:
    """Writes folder/name; returns what was written (for the failure report)."""
    values = {c.name: column_values(rng, c, rows, dirt if c.role != "split" else 0.0) for c in cols}
    path = folder / name
    if fmt == "parquet":
        arrays = {}
        for c in cols:
            vs = values[c.name]
            arrays[c.name] = pa.array(vs, pa.string())
            if c.type == "number" and rng.random() < 0.7:
                nums = []
                for v in vs:
                    try:
                        nums.append(float(v))
                    except ValueError:
                        nums.append(None)
                kind = rng.choice(["float64", "float32", "int64", "string"])
                if kind == "int64":
                    nums = [None if x is None or not math.isfinite(x) or abs(x) >= 2**63 else int(x) for x in nums]
                arrays[c.name] = pa.array(nums, pa.int64() if kind == "int64" else
                                          pa.float32() if kind == "float32" else pa.float64()) \
                    if kind != "string" else arrays[c.name]
            elif c.type == "set" and rng.random() < 0.3:
                arrays[c.name] = pa.array([v.split("|") for v in vs], pa.list_(pa.string()))
            elif c.type in ("binary", "category") and rng.random() < 0.3:
                arrays[c.name] = pa.array(vs).dictionary_encode()
        pq.write_table(pa.table(arrays) if arrays else pa.table({"x": []}), path)
    else:
        buf = io.BytesIO()
        if cols:
            pacsv.write_csv(pa.table({c.name: pa.array(values[c.name], pa.string()) for c in cols}), buf)
        path.write_bytes(buf.getvalue())
    return {"rows": rows, "dirt": dirt, "format": fmt, "columns": [(c.name, c.type, c.role) for c in cols]}


# ---- programs ------------------------------------------------------------------------
def gen_name(rng: random.Random, taken: set) -> str:
    while True:
        if rng.random() < 0.15:
            name = rng.choice(KEYWORDS)
        else:
            name = rng.choice(string.ascii_letters + "_") + "".join(
                rng.choice(string.ascii_letters + string.digits + "_") for _ in range(rng.randint(0, 8)))
        if name not in taken:
            taken.add(name)
            return name


def number(x) -> str:
    return ast.format_number(x)


INVALID_VALUES = ["-1", "0", "1e999", "2147483648", '"text"', "nope", "[1, 2]", "adamw(lr = 2)", "1.5",
                  "auto", "[]", "f()", "-0.0", "99999999999"]


def gen_value(rng: random.Random, form, key: str, strings: list[str]) -> str:
    if rng.random() < 0.06:
        return rng.choice(INVALID_VALUES)
    if isinstance(form, spec.Choice):
        name = rng.choice(sorted(form.calls))
        kinds = form.calls[name]
        keys = [k for k in sorted(kinds) if rng.random() < 0.4]
        if not keys and rng.random() < 0.5:
            return name
        args = []
        heads = rng.choice([1, 2, 4])
        for k in keys:
            kind = kinds[k]
            if kind == "int_list":
                v = "[" + ", ".join(str(rng.randint(1, 5)) for _ in range(rng.randint(1, 3))) + "]"
            elif kind == "int":
                v = str(heads if k == "heads" else 4 * rng.randint(1, 8) if k == "size" and "heads" in kinds
                        else rng.choice([1, 2, 3, 4, 8, 16, 32]))
            elif kind == "bool":
                v = rng.choice(["true", "false"])
            else:
                v = number(rng.choice([0.0, 0.001, 0.01, 0.1, 0.5, 0.9, 0.99]))
            args.append(f"{k} = {v}")
        return f"{name}({', '.join(args)})"
    if form.auto and rng.random() < 0.2:
        return "auto"
    if form.kind == "string":  # the first string fits the data; the others mostly do not
        return ast.Str(strings[0] if rng.random() < 0.85 else rng.choice(strings), None).to_dml()
    low = form.minimum if form.minimum is not None else 0
    if form.kind == "int":
        return str(int(low) + rng.choice([0, 1, 2, 3, 5, 8, 16, 40]))
    if form.kind == "int_list":
        return "[" + ", ".join(str(rng.choice([1, 2, 4, 8, 16, 32])) for _ in range(rng.randint(1, 3))) + "]"
    high = form.maximum if form.maximum is not None else low + 10
    return number(round(rng.uniform(low, high), 3))


def options(rng: random.Random, table: dict, strings: list[str], p: float = 0.25, skip=()) -> str:
    parts = [f"{k} = {gen_value(rng, table[k].form, k, strings)}" for k in sorted(table)
             if k not in skip and rng.random() < p]
    if rng.random() < 0.03:
        parts.append(f"{gen_name(rng, set())} = 1")  # an unknown option
    if not parts:
        return ""
    sep = rng.choice([", ", "\n  ", " "])
    return " { " + sep.join(parts) + " }"


TENSOR_FUNCS = ["relu", "gelu", "silu", "tanh", "sigmoid", "layernorm", "softmax", "exp", "log"]


def gen_expr(rng: random.Random, names: list[str], depth: int, pools: bool) -> str:
    """A tensor expression over `names` (tensors) and the block's `width` and `rate`."""
    if depth <= 0 or rng.random() < 0.25:
        return rng.choice(names)
    r = rng.random()
    sub = lambda: gen_expr(rng, names, depth - 1, pools)  # noqa: E731
    if r < 0.3:
        return f"dense({sub()}, {rng.choice(['width', 'width', '4', 'dim(x)', '2 * width'])})"
    if r < 0.55:
        return f"{rng.choice(TENSOR_FUNCS[:6] if rng.random() < 0.9 else TENSOR_FUNCS)}({sub()})"
    if r < 0.65:
        return f"dropout({sub()}, rate)"
    if r < 0.75:
        return f"{sub()} {rng.choice(['+', '-', '*'])} {sub()}"
    if r < 0.8:
        return f"{sub()} * {number(rng.choice([0.5, 2, -1]))}"
    if r < 0.85:
        return f"concat({sub()}, {sub()})"
    if r < 0.9:
        return f"{rng.choice(['sum', 'mean'])}({sub()})"
    if pools and r < 0.97:
        return f"{rng.choice(['pool_mean', 'pool_max'])}({sub()})"
    return f"-{sub()}"


def gen_block(rng: random.Random, name: str, pools: bool) -> str:
    lines, names = [], ["x"]
    for i in range(rng.randint(0, 3)):
        lines.append(f"  h{i} = {gen_expr(rng, names, 2, pools)}")
        names.append(f"h{i}")
    result = gen_expr(rng, names, 2, pools)
    if pools and "pool_" not in result and rng.random() < 0.8:
        result = f"pool_mean({result})"
    if rng.random() < 0.8:
        result = f"dense({result}, width)"
    return (f"block {name}(x, width: int = {rng.choice([4, 8, 16])}, rate: float = 0.1) {{\n"
            + "".join(line + "\n" for line in lines) + f"  return {result}\n}}\n")


def gen_condition(rng: random.Random, cols: list[Column], depth: int = 2) -> str:
    if depth > 0 and rng.random() < 0.3:
        op = rng.choice(["and", "or"])
        a, b = gen_condition(rng, cols, depth - 1), gen_condition(rng, cols, depth - 1)
        return rng.choice([f"{a} {op} {b}", f"not ({a})", f"({a}) {op} {b}"])
    c = rng.choice(cols)
    if rng.random() < 0.15:
        return f"{c.name} is {rng.choice(['', 'not '])}missing"
    if c.type == "number":
        return f"{c.name} {rng.choice(['<', '<=', '>', '>=', '==', '!='])} {rng.choice([0, 1, 3, 5.5, -2])}"
    value = c.labels[0] if c.labels else "red"
    if rng.random() < 0.3:
        return f'{c.name} in ["{value}", "zz"]'
    return f'{c.name} {rng.choice(["==", "!="])} "{value}"'


STRINGS = {"date": ["%Y-%m-%d", "%d/%m/%Y"], "set": ["|", ";"], "bag": ["|"], "sequence": ["|", " "],
           "vector": ["|", ","], "binary": ["yes", "no", "maybe"], "text": ["|"]}


@dataclass
class Program:
    text: str
    columns: list[Column]
    data_name: str
    fmt: str
    notes: list = field(default_factory=list)


def gen_program(rng: random.Random, tiny_run: bool) -> Program:
    taken: set = set()
    n_in, n_out = rng.randint(1, 4), rng.randint(1, 2) if rng.random() < 0.8 else 1
    cols = [Column(gen_name(rng, taken), rng.choice(spec.INPUT_TYPES), "input") for _ in range(n_in)]
    cols += [Column(gen_name(rng, taken), rng.choice(spec.OUTPUT_TYPES), "output") for _ in range(n_out)]
    for c in cols:
        if c.type == "binary":
            c.labels = rng.choice([("no", "yes"), ("0", "1"), ("false", "true"), ("a", "b")])
        elif c.type == "category":
            c.labels = tuple(rng.sample(["x", "y", "z", "w", "v"], rng.randint(2, 5)))
    fmt = rng.choice(["csv", "csv", "csv", "parquet"])
    data_name = f"data.{fmt}" if rng.random() < 0.9 else f"sub dir/{gen_name(rng, set())}.{fmt}"
    split = rng.random()
    head = f'data "{data_name}"'
    if split < 0.4:
        a = rng.randint(40, 80)
        b = rng.randint(5, 95 - a)
        head += f" split {a}/{b}/{100 - a - b}" + (f" seed {rng.randint(0, 2**31)}" if rng.random() < 0.5 else "")
    elif split < 0.5:
        cols.append(Column(gen_name(rng, taken), "category", "split"))
        head += f" split by {cols[-1].name}"
    lines = [head]
    blocks, encoder_of = [], {}
    for c in cols:
        if c.role not in ("input", "output"):
            continue
        table = spec.FEATURE_OPTIONS[(c.role, c.type)]
        strings = [c.labels[1], *c.labels, "maybe"] if c.type == "binary" else STRINGS.get(c.type, ["|"])
        opts = options(rng, table, strings, skip=("encoder",) if c.type in spec.BLOCK_ENCODED_TYPES else ())
        if c.role == "input" and c.type in spec.BLOCK_ENCODED_TYPES and rng.random() < 0.2:
            name = f"enc{len(blocks)}"
            blocks.append(gen_block(rng, name, pools=c.type in ("text", "sequence")))
            call = f"{name}(width = {rng.choice([4, 8])})"
            opts = opts[:-2] + f", encoder = {call} }}" if opts else f" {{ encoder = {call} }}"
            encoder_of[c.name] = name
        lines.append(f"{c.role} {c.name} : {c.type}{opts}")
    if rng.random() < 0.25:
        blocks.append(gen_block(rng, "comb", pools=False))
        lines.append(f"combiner comb(width = {rng.choice([4, 8, 16])})" if rng.random() < 0.8 else "combiner comb")
    elif rng.random() < 0.4:
        lines.append("combiner concat" + options(rng, spec.COMBINER_OPTIONS, []))
    train = options(rng, spec.TRAIN_OPTIONS, [], skip=("epochs", "max_time") if tiny_run else ())
    if tiny_run:
        train = train[:-2] + ", epochs = 1 }" if train else " { epochs = 1 }"
    if train or rng.random() < 0.3:
        lines.append("train" + (train or " { }"))
    declared = [c for c in cols if c.role in ("input", "output")]
    for i in range(rng.choice([0, 0, 0, 0, 0, 1, 2])):
        weight = f" {{ weight = {rng.choice([0.5, 2.0, 0])} }}" if rng.random() < 0.3 else ""
        lines.append(f"slice s{i} = {gen_condition(rng, declared)}{weight}")
    rng.shuffle(lines)
    if rng.random() < 0.05:  # an extra column in the file that the program does not declare
        cols.append(Column(gen_name(rng, taken), "number", "extra"))
    text = "".join(b for b in blocks) + "\n".join(lines) + "\n"
    return Program(text, cols, data_name, fmt)


TOKEN = re.compile(r'"(?:[^"\\\n]|\\.)*"|#[^\n]*|[A-Za-z_][A-Za-z0-9_]*|[0-9.eE+-]+|\s+|.', re.S)
INSERTS = (list("{}()[]=,:./\"'#\n\t -+*0123456789eE_xyz\\@é\x00\x0c\r“")
           + list(KEYWORDS) + ["number", "binary", "category", "text", "set", "date", "vector", "concat",
                               "adamw(", "[1,", '"x.csv"', "80/10/10", "1e999", "-1", "0.5", "\\q", "\n}\n",
                               "{\n", "relu(", "dense(x, 0)", "pool_mean(", "==", " and ", "[[[", ")))"])


def mutate(rng: random.Random, text: str) -> str:
    for _ in range(rng.randint(1, 4)):
        op = rng.choice(["delete", "insert", "replace", "drop_token", "dup_token", "swap_tokens", "dup_line"])
        if op in ("delete", "insert", "replace"):
            i = rng.randint(0, len(text))
            n = rng.randint(1, 6) if op != "insert" else 0
            text = text[:i] + (rng.choice(INSERTS) if op != "delete" else "") + text[i + n:]
        elif op == "dup_line":
            lines = text.split("\n")
            i = rng.randrange(len(lines))
            lines.insert(i, lines[i])
            text = "\n".join(lines)
        else:
            toks = TOKEN.findall(text)
            if len(toks) < 2:
                continue
            i = rng.randrange(len(toks))
            if op == "drop_token":
                del toks[i]
            elif op == "dup_token":
                toks.insert(i, toks[i])
            else:
                j = rng.randrange(len(toks))
                toks[i], toks[j] = toks[j], toks[i]
            text = "".join(toks)
    return text


# ---- running the tool --------------------------------------------------------------
class Finding(AssertionError):
    pass


def clean_message(text: str) -> str | None:
    """Why a user-facing message is not clean, or None."""
    if not text.strip():
        return "an empty message"
    if "Traceback (most recent call last)" in text:
        return "a traceback"
    if re.search(r"<[\w.]+ object at 0x[0-9a-f]+>", text):
        return "an object repr"
    if len(text) > 20000:
        return f"a message of {len(text)} characters"
    return None


STAGES: list = []  # (command, exit status) of the current case, for MLC_FUZZ_STATS


def invoke(args: list[str], what: str) -> tuple[int, str]:
    """The CLI in process: exit 0, or 1 with a message; anything else is a finding."""
    result = CliRunner().invoke(cli, args, catch_exceptions=True)
    STAGES.append((args[0], result.exit_code))
    out = result.output
    exc = result.exception
    if exc is not None and not isinstance(exc, SystemExit):
        import traceback
        tb = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
        raise Finding(f"{what}: uncaught {type(exc).__name__}: {exc}\n{tb[-3000:]}")
    if result.exit_code not in (0, 1):
        raise Finding(f"{what}: exit status {result.exit_code}\n{out[-2000:]}")
    why = clean_message(out) if result.exit_code == 1 else ("a traceback" if "Traceback (most" in out else None)
    if why:
        raise Finding(f"{what}: exit {result.exit_code} with {why}:\n{out[-3000:]}")
    return result.exit_code, out


def api(fn, what: str):
    """A Python API call: a result, or None after a clean MlcError/UserError/ValueError."""
    try:
        return fn()
    except (MlcError, UserError, ValueError) as e:
        why = clean_message(str(e))
        if why:
            raise Finding(f"{what}: {type(e).__name__} with {why}: {str(e)[:2000]}") from None
        return None
    except Exception as e:  # noqa: BLE001 - that is the finding
        import traceback
        raise Finding(f"{what}: uncaught {type(e).__name__}: {e}\n{traceback.format_exc()[-3000:]}") from None


def finite(value) -> bool:
    if isinstance(value, (list, tuple)):
        return all(finite(v) for v in value)
    if isinstance(value, dict):
        return all(finite(v) for v in value.values())
    if isinstance(value, (float, np.floating)):
        return math.isfinite(value)
    if isinstance(value, str):
        try:
            return finite(json.loads(value)) if value[:1] in "[{" else math.isfinite(float(value)) \
                if re.fullmatch(r"[-+]?(\d+\.?\d*([eE][-+]?\d+)?|inf|nan|Infinity|NaN)", value, re.I) else True
        except (ValueError, json.JSONDecodeError):
            return True
    return True


def check_predictions(columns: dict, rows: int, what: str):
    for name, values in columns.items():
        if len(values) != rows:
            raise Finding(f"{what}: column {name} has {len(values)} values for {rows} rows")
        bad = [v for v in values if not finite(v)]
        if bad:
            raise Finding(f"{what}: non-finite predictions in {name}: {bad[:3]}")


def no_temporaries(folder: Path, what: str):
    left = [p for p in folder.rglob("*") if re.search(r"\.tmp|\.part$|~$", p.name)]
    if left:
        raise Finding(f"{what}: temporary files left behind: {[str(p.relative_to(folder)) for p in left]}")


def tiny_run(folder: Path, program: Path, rng: random.Random, predict_cols: list[Column] | None):
    out = folder / "out"
    code, text = invoke(["run", str(program), "--out", str(out), "--seed", str(rng.randint(0, 9))], "mlc run")
    model, report = out / "model.mlc", out / "report.json"
    if code != 0:
        if model.exists() or report.exists():
            raise Finding(f"mlc run failed but left {'model.mlc' if model.exists() else 'report.json'}:\n{text[-1500:]}")
        if out.exists():
            no_temporaries(out, "mlc run (failed)")
        return None
    if not (model.exists() and report.exists()):
        raise Finding(f"mlc run exited 0 without model.mlc and report.json: {sorted(os.listdir(out))}")
    rep = api(lambda: json.loads(report.read_text()), "report.json")
    if rep is None:
        raise Finding("report.json does not parse")
    no_temporaries(out, "mlc run")
    loaded = api(lambda: mlc.load(model), "mlc.load(model.mlc) after a run")
    if loaded is None:
        raise Finding("a model written by mlc run does not load")
    if predict_cols is not None:
        predict_both(folder, model, rng, predict_cols)
    return model


def predict_both(folder: Path, model: Path, rng: random.Random, cols: list[Column]):
    """mlc predict on a generated file (sometimes dirty, sometimes lacking a column), and
    mlc.load(...).predict on generated rows."""
    pcols = [c for c in cols if c.role == "input" or (c.role == "output" and rng.random() < 0.3)]
    if pcols and rng.random() < 0.1:
        pcols.remove(rng.choice(pcols))
    rows = rng.choice([0, 1, 3, 17, 40])
    fmt = rng.choice(["csv", "parquet"])
    info = write_data(rng, folder, f"new.{fmt}", pcols, rows, rng.choice([0, 0, 0.1, 0.5]), fmt)
    pred = folder / "pred" / "p.csv" if rng.random() < 0.9 else folder / "missing" / "p.csv"
    if pred.parent.name == "pred":
        pred.parent.mkdir(exist_ok=True)
    code, text = invoke(["predict", str(model), "--data", str(folder / f"new.{fmt}"), "--out", str(pred)],
                        f"mlc predict ({info})")
    if code == 0:
        table = api(lambda: pacsv.read_csv(pred), "reading the predictions")
        if table is None:
            raise Finding("mlc predict wrote a CSV that does not read back")
        if rows and table.num_rows != rows:
            raise Finding(f"mlc predict wrote {table.num_rows} rows for {rows}")
        check_predictions(table.to_pydict(), table.num_rows, "mlc predict")
    elif pred.exists():
        raise Finding(f"mlc predict failed but left {pred.name}:\n{text[-1500:]}")
    if pred.parent.exists():
        no_temporaries(pred.parent, "mlc predict")
    m = api(lambda: mlc.load(model), "mlc.load")
    if m is None:
        return
    sample = {c.name: column_values(rng, c, 5, 0.3) for c in pcols}
    for c, vs in sample.items():  # Python values of other kinds, now and then
        if rng.random() < 0.2:
            sample[c] = [rng.choice([None, 1, 2.5, True, "x", [], {}, float("nan")]) for _ in vs]
    form = rng.choice(["columns", "rows", "table"])
    if form == "rows":
        rows_in = [{k: v[i] for k, v in sample.items()} for i in range(5)]
    elif form == "table":
        try:
            rows_in = pa.table(sample)
        except (pa.ArrowException, TypeError, ValueError):
            return  # values pyarrow itself cannot put in one column
    else:
        rows_in = sample
    result = api(lambda: m.predict(rows_in), f"Model.predict({form})")
    if result is not None:
        check_predictions(dict(result), 5 if sample else len(next(iter(result.values()), [])), "Model.predict")


# ---- cases -------------------------------------------------------------------------
def rng_for(kind: str, case: int) -> random.Random:
    return random.Random(f"{kind}:{SEED}:{case}")


def record(kind: str, case: int, folder: Path, error: Exception):
    message = str(error)
    program = folder / "p.dml"
    entry = {"kind": kind, "case": case, "seed": SEED, "failure": message[:4000],
             "program": program.read_text(errors="replace")[:4000] if program.exists() else None}
    if REPORT:
        with open(REPORT, "a") as f:
            f.write(json.dumps(entry) + "\n")
    if KEEP:
        dest = Path(KEEP) / f"{kind}-{SEED}-{case}"
        shutil.rmtree(dest, ignore_errors=True)
        shutil.copytree(folder, dest, symlinks=True, ignore=shutil.ignore_patterns("out", "pred"))
    for (k, pattern), reason in KNOWN.items():
        if k == kind and re.search(pattern, message, re.S):
            pytest.xfail(reason)


def run_case(kind: str, case: int, folder: Path, body):
    STAGES.clear()
    failed = None
    try:
        body()
    except Finding as e:
        failed = e
    if STATS:
        with open(STATS, "a") as f:
            f.write(json.dumps({"kind": kind, "case": case, "seed": SEED, "stages": STAGES,
                                "finding": failed is not None}) + "\n")
    if failed is not None:
        record(kind, case, folder, failed)
        raise AssertionError(f"{kind} case {case} (MLC_FUZZ_SEED={SEED}), files in {folder}:\n{failed}") from None


@pytest.mark.parametrize("case", range(count("program")))
def test_generated_programs(case, tmp_path):
    rng = rng_for("program", case)
    train = rng.random() < RUN_SHARE["program"]
    prog = gen_program(rng, tiny_run=train)

    def body():
        (tmp_path / "p.dml").write_text(prog.text)
        (tmp_path / prog.data_name).parent.mkdir(parents=True, exist_ok=True)
        rows = rng.choice([40, 40, 40, 40, 60, 60, 60, 12, 3])
        write_data(rng, tmp_path, prog.data_name, prog.columns, rows, rng.choice([0, 0, 0, 0, 0.005, 0.05]), prog.fmt)
        code, _ = invoke(["check", str(tmp_path / "p.dml")], "mlc check")
        if code == 0 and train:
            tiny_run(tmp_path, tmp_path / "p.dml", rng, prog.columns)

    run_case("program", case, tmp_path, body)


@pytest.mark.parametrize("case", range(count("mutated")))
def test_mutated_programs(case, tmp_path):
    rng = rng_for("mutated", case)
    examples = sorted((ROOT / "examples").glob("*.dml"))
    train = rng.random() < RUN_SHARE["mutated"]

    def body():
        if rng.random() < 0.3:
            text = mutate(rng, rng.choice(examples).read_text())
            (tmp_path / "data").symlink_to(ROOT / "examples" / "data")
            cols = None
        else:
            prog = gen_program(rng, tiny_run=True)
            (tmp_path / prog.data_name).parent.mkdir(parents=True, exist_ok=True)
            write_data(rng, tmp_path, prog.data_name, prog.columns, 40, 0.0, prog.fmt)
            text, cols = mutate(rng, prog.text), prog.columns
        (tmp_path / "p.dml").write_text(text)
        code, _ = invoke(["check", str(tmp_path / "p.dml")], "mlc check")
        if code == 0:
            invoke(["explain", str(tmp_path / "p.dml")], "mlc explain")
            if train and cols is not None:
                tiny_run(tmp_path, tmp_path / "p.dml", rng, cols)

    run_case("mutated", case, tmp_path, body)


def raw_csv(rng: random.Random, cols: list[Column], rows: int) -> bytes:
    """A CSV written by hand, with the quirks a writer library would not produce."""
    header = [c.name for c in cols]
    quirk = rng.choice(["bom", "crlf", "latin1", "utf16", "ragged", "dup_header", "header_only", "empty",
                        "binary", "no_newline", "quotes", "blank_lines", "semicolons", "nul"])
    lines = [header] + [[cell(rng, c.type, i, c.labels) for c in cols] for i in range(rows)]
    if quirk == "dup_header" and header:
        lines[0][-1] = lines[0][0]
    if quirk == "ragged":
        for line in rng.sample(lines[1:], min(len(lines) - 1, rng.randint(1, 3))):
            line.append("extra") if rng.random() < 0.5 else line.pop()
    if quirk == "header_only":
        lines = lines[:1]
    sep = ";" if quirk == "semicolons" else ","

    def fmt(v: str) -> str:
        return '"' + v.replace('"', '""') + '"' if any(ch in v for ch in ',;"\n') or quirk == "quotes" else v

    text = "\n".join(sep.join(fmt(v) for v in line) for line in lines) + ("" if quirk == "no_newline" else "\n")
    if quirk == "blank_lines":
        text = text.replace("\n", "\n\n", 3)
    if quirk == "crlf":
        text = text.replace("\n", "\r\n")
    if quirk == "empty":
        return b""
    if quirk == "binary":
        return bytes(rng.randrange(256) for _ in range(rng.randint(1, 2000)))
    if quirk == "nul":
        text = text.replace(",", ",\x00", 2)
    if quirk == "bom":
        return b"\xef\xbb\xbf" + text.encode()
    if quirk == "latin1":
        return text.replace("a", "\xe9", 5).encode("latin-1", errors="replace")
    if quirk == "utf16":
        return text.encode("utf-16")
    return text.encode()


DATA_PROGRAMS = {  # one declared column of each type next to a number and a binary output
    typ: [Column("a", "number", "input"), Column("x", typ, "input"), Column("y", "binary", "output", ("no", "yes"))]
    for typ in spec.INPUT_TYPES
}
DATA_PROGRAMS.update({f"out_{typ}": [Column("a", "number", "input"), Column("b", "category", "input", ("p", "q", "r")),
                                     Column("y", typ, "output", ("no", "yes") if typ == "binary" else ("u", "v", "w"))]
                      for typ in spec.OUTPUT_TYPES})


@pytest.mark.parametrize("case", range(count("data")))
def test_generated_data_files(case, tmp_path):
    rng = rng_for("data", case)
    name = rng.choice(sorted(DATA_PROGRAMS))
    cols = [Column(c.name, c.type, c.role, c.labels) for c in DATA_PROGRAMS[name]]
    train = rng.random() < RUN_SHARE["data"]

    def body():
        fmt = rng.choice(["csv", "csv", "parquet", "raw"])
        rows = rng.choice([0, 1, 2, 5, 12, 40, 40, 40, 200])
        file_cols = list(cols)
        shape = rng.random()
        if shape < 0.1:
            file_cols.remove(rng.choice(file_cols))  # a declared column is missing
        elif shape < 0.2:
            file_cols.append(Column("extra", rng.choice(spec.INPUT_TYPES), "extra"))
        elif shape < 0.25:
            rng.shuffle(file_cols)
        ext = "parquet" if fmt == "parquet" else "csv"
        if fmt == "raw":
            (tmp_path / "data.csv").write_bytes(raw_csv(rng, file_cols, rows))
        else:
            write_data(rng, tmp_path, f"data.{ext}", file_cols, rows, rng.choice([0, 0.005, 0.02, 0.1, 0.6]), fmt)
        lines = [f'data "data.{ext}"'] + [f"{c.role} {c.name} : {c.type}" for c in cols]
        lines.append("train { epochs = 1 }")
        (tmp_path / "p.dml").write_text("\n".join(lines) + "\n")
        code, _ = invoke(["check", str(tmp_path / "p.dml")], "mlc check")
        if code == 0 and train:
            tiny_run(tmp_path, tmp_path / "p.dml", rng, cols)

    run_case("data", case, tmp_path, body)


# ---- artifacts -------------------------------------------------------------------
ARTIFACT_PROGRAMS = {
    "tabular": ([Column("a", "number", "input"), Column("b", "category", "input", ("p", "q", "r")),
                 Column("c", "binary", "input", ("no", "yes")), Column("y", "binary", "output", ("no", "yes")),
                 Column("z", "number", "output")], ""),
    "types": ([Column("t", "text", "input"), Column("s", "set", "input"), Column("g", "bag", "input"),
               Column("d", "date", "input"), Column("v", "vector", "input"), Column("q", "sequence", "input"),
               Column("k", "category", "output", ("u", "v", "w")), Column("m", "set", "output"),
               Column("w", "vector", "output")],
              "block comb(x, width: int = 8) {\n  return dense(relu(dense(x, width)), width)\n}\ncombiner comb()\n"),
}


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    models = {}
    for name, (cols, extra) in ARTIFACT_PROGRAMS.items():
        folder = tmp_path_factory.mktemp(f"model_{name}")
        rng = random.Random(name)
        write_data(rng, folder, "data.csv", cols, 60, 0.0, "csv")
        text = 'data "data.csv"\n' + "".join(f"{c.role} {c.name} : {c.type}\n" for c in cols) + extra
        (folder / "p.dml").write_text(text + "train { epochs = 1 }\n")
        code, out = invoke(["run", str(folder / "p.dml"), "--out", str(folder / "out")], "training a model")
        assert code == 0, out
        models[name] = (folder / "out" / "model.mlc", cols)
    return models


def mutate_json(rng: random.Random, value, depth: int = 0):
    """One random change somewhere in a JSON value."""
    if isinstance(value, dict) and value and rng.random() < 0.8:
        key = rng.choice(sorted(value))
        value = dict(value)
        r = rng.random()
        if r < 0.2:
            del value[key]
        elif r < 0.3:
            value[key + "_x"] = value[key]
        else:
            value[key] = mutate_json(rng, value[key], depth + 1)
        return value
    if isinstance(value, list) and value and rng.random() < 0.8:
        value = list(value)
        i = rng.randrange(len(value))
        r = rng.random()
        if r < 0.2:
            del value[i]
        elif r < 0.3:
            value.append(value[i])
        else:
            value[i] = mutate_json(rng, value[i], depth + 1)
        return value
    return rng.choice([None, True, 0, -1, 1, 2**31, 2**63, 1e308, -1e-308, 0.5, "", "x", "zz" * 500, [], {},
                       [[[[[[[[[[1]]]]]]]]]], {"a": {"b": {}}}, "NaN", float("nan"), float("inf"),
                       (value * 2 if isinstance(value, (int, float)) and not isinstance(value, bool) else "y"),
                       (value[::-1] if isinstance(value, (str, list)) else 3)])


def mutate_weights(rng: random.Random, data: bytes) -> bytes:
    arrays = dict(np.load(io.BytesIO(data), allow_pickle=False))
    key = rng.choice(sorted(arrays))
    a = arrays[key]
    r = rng.random()
    if r < 0.3:
        a = a.astype(np.float32).copy()
        a.flat[rng.randrange(a.size)] = rng.choice([np.nan, np.inf, -np.inf, 1e38])
    elif r < 0.5:
        a = np.zeros(tuple(d + 1 for d in a.shape) or (2,), a.dtype)
    elif r < 0.6:
        a = a.astype(rng.choice([np.float64, np.int32, np.float16, np.bool_]))
    elif r < 0.7:
        del arrays[key]
        a = None
    elif r < 0.8:
        arrays["extra"] = np.ones(3)
    else:
        a = a.reshape(-1)
    if a is not None:
        arrays[key] = a
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


def mutate_artifact(rng: random.Random, src: Path, dst: Path) -> list[str]:
    with zipfile.ZipFile(src) as z:
        members = {i.filename: z.read(i.filename) for i in z.infolist()}
    done = []
    for _ in range(rng.randint(1, 3)):
        name = rng.choice(sorted(members))
        r = rng.random()
        if r < 0.1:
            del members[name]
            done.append(f"removed {name}")
        elif r < 0.2:
            members[name] = members[name][: rng.randrange(max(1, len(members[name])))]
            done.append(f"truncated {name}")
        elif r < 0.25:
            members[name] = bytes(rng.randrange(256) for _ in range(rng.randint(0, 300)))
            done.append(f"garbage in {name}")
        elif r < 0.35 and members[name]:
            b = bytearray(members[name])
            i = rng.randrange(len(b))
            b[i] ^= 1 << rng.randrange(8)
            members[name] = bytes(b)
            done.append(f"bit flip in {name}")
        elif r < 0.65 and "manifest.json" in members:
            try:
                manifest = json.loads(members["manifest.json"])
            except ValueError:
                continue
            members["manifest.json"] = json.dumps(mutate_json(rng, manifest)).encode()
            done.append("manifest value changed")
        elif r < 0.8 and "weights.npz" in members:
            try:
                members["weights.npz"] = mutate_weights(rng, members["weights.npz"])
                done.append("weights changed")
            except Exception:  # noqa: BLE001 - already damaged by an earlier change
                continue
        elif r < 0.9:
            for text_member in ("program.dml", "model.ir"):
                if text_member in members and rng.random() < 0.5:
                    members[text_member] = mutate(rng, members[text_member].decode(errors="replace")).encode()
                    done.append(f"{text_member} mutated")
        else:
            members[f"extra{rng.randint(0, 9)}.bin"] = b"\0" * rng.randint(0, 100)
            done.append("extra member")
    if rng.random() < 0.6 and "manifest.json" in members:  # make the recorded sizes and checksums agree again
        try:
            import hashlib
            manifest = json.loads(members["manifest.json"])
            if isinstance(manifest, dict) and isinstance(manifest.get("members"), dict):
                manifest["members"] = {n: {"bytes": len(d), "sha256": hashlib.sha256(d).hexdigest()}
                                       for n, d in members.items() if n != "manifest.json"}
                members["manifest.json"] = json.dumps(manifest).encode()
                done.append("checksums updated")
        except ValueError:
            pass
    with zipfile.ZipFile(dst, "w", compression=rng.choice([zipfile.ZIP_DEFLATED, zipfile.ZIP_STORED])) as z:
        for n, d in members.items():
            z.writestr(n, d)
    if rng.random() < 0.05:
        dst.write_bytes(dst.read_bytes()[: rng.randrange(dst.stat().st_size)])
        done.append("zip truncated")
    return done


@pytest.mark.parametrize("case", range(count("artifact")))
def test_changed_artifacts(case, trained, tmp_path):
    rng = rng_for("artifact", case)
    name = rng.choice(sorted(trained))
    src, cols = trained[name]
    model = tmp_path / "model.mlc"
    changes = mutate_artifact(rng, src, model)

    def body():
        try:
            predict_both(tmp_path, model, rng, cols)
        except Finding as e:
            raise Finding(f"{name} model, {', '.join(changes)}: {e}") from None

    run_case("artifact", case, tmp_path, body)
