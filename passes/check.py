"""Check a parsed program against the language (no data needed yet).

Collects every mistake it can find, then raises one MlcError holding them all,
so a newcomer fixes a whole file in one go. The result maps each option to a
plain Python value: a name or call becomes {"name": ..., **args}.
"""
from __future__ import annotations

import math
import re

import numpy as np
from dataclasses import dataclass, field

from mlc import spec
from mlc.diagnostics import Diagnostic, MlcError, Span, did_you_mean
from mlc.grammar import ast

from .check_blocks import check_block_call, check_blocks


# Bounds of call arguments, whose kinds spec.Choice records: key -> (low, high, low_open, high_open).
ARG_BOUNDS = {
    "bins": (1, 4096, False, False),  # quantile bins; more cannot be told apart in real data
    "size": (1, None, False, False),
    "lr": (0, None, True, False),
    "weight_decay": (0, None, False, False),
    "b1": (0, 1, False, True),
    "b2": (0, 1, False, True),
    "momentum": (0, 1, False, True),
    "warmup": (0, 1, False, False),
    "label_smoothing": (0, 1, False, True),
    "delta": (0, None, True, False),
    "buckets": (0, 1 << 24, False, False),
    "filters": (1, None, False, False),
    "layers": (1, None, False, False),
    "heads": (1, None, False, False),
    "vocab": (1, None, False, False),
    "min_count": (1, None, False, False),
}


# Whole-number options size loops and arrays: beyond int32 they can only be mistakes.
MAX_INT = 2**31 - 1


@dataclass
class Checked:
    """A program that passed checking, with options as Python values."""

    program: ast.Program
    data: ast.Data
    features: dict[str, ast.Feature]  # by name, in program order
    options: dict[str, dict]  # "input.age" / "output.churn" / "combiner" / "train" -> {key: value}
    option_spans: dict[str, Span]  # "input.age.normalize" -> where it was written
    combiner: str | None
    blocks: dict = field(default_factory=dict)  # name -> ast.Block
    block_args: dict = field(default_factory=dict)  # arguments of the block combiner
    tune: dict | None = None  # `tune { ... }` as checked (passes/check_tune.py)


class _Collector:
    def __init__(self, program: ast.Program):
        self.program = program
        self.diags: list[Diagnostic] = []

    def error(self, message, span, hint=None, notes=()):
        self.diags.append(Diagnostic(message, span, self.program.file, hint, notes=list(notes)))


def check(program: ast.Program) -> Checked:
    c = _Collector(program)
    data = _check_data(c)
    features: dict[str, ast.Feature] = {}
    options: dict[str, dict] = {}
    spans: dict[str, Span] = {}

    blocks = check_blocks(program, c.error)
    for f in program.features:
        types = spec.INPUT_TYPES if f.role == "input" else spec.OUTPUT_TYPES
        if f.type not in types and f.role == "output" and f.type in spec.INPUT_TYPES:
            c.error(f"a `{f.type}` column can be an input, not an output", f.type_span,
                    "outputs are " + ", ".join(f"`{t}`" for t in spec.OUTPUT_TYPES))
        elif f.type not in types:
            c.error(f"unknown {f.role} type `{f.type}`", f.type_span, did_you_mean(f.type, types))
        first = features.get(f.name)
        if first is not None:
            if first.role != f.role:
                c.error(f"`{f.name}` is both an input and an output", f.span,
                        "a column cannot be learned from and predicted at once; remove one of the lines",
                        [(first.span, f"`{f.name}` is declared as an {first.role} here")])
            else:
                c.error(f"duplicate {f.role} `{f.name}`", f.span, "remove one of the lines",
                        [(first.span, "first declared here")])
            continue
        features[f.name] = f
        if f.type in types:
            where = f"{f.role}.{f.name}"
            table = spec.FEATURE_OPTIONS[(f.role, f.type)]
            block_enc = next((o for o in f.options if o.key == "encoder" and _block_name(o.value) in blocks), None)
            rest = [o for o in f.options if o is not block_enc]
            options[where] = _check_options(c, rest, table, f"{f.type} {f.role}s", where, spans)
            if block_enc is not None:
                options[where]["encoder"] = _block_encoder(c, f, block_enc, blocks[_block_name(block_enc.value)])
                spans[f"{where}.encoder"] = block_enc.span
            _check_encoder(c, options[where].get("encoder"), spans.get(f"{where}.encoder"))

    if not program.inputs:
        c.error("the program declares no `input`", Span(1, 1), "add a line such as `input age : number`")
    if not program.outputs:
        c.error("the program declares no `output`", Span(1, 1),
                "add the column to predict, such as `output churn : binary`")

    combiner = None
    block_args: dict = {}
    seen_sections: dict[str, ast.Section] = {}
    for s in program.sections:
        if s.keyword in seen_sections:
            c.error(f"duplicate `{s.keyword}` section", s.span, "merge the two into one",
                    [(seen_sections[s.keyword].span, "first written here")])
            continue
        seen_sections[s.keyword] = s
        if s.keyword == "combiner":
            combiner = s.name
            if s.name in blocks:
                block_args = check_block_call(s, blocks[s.name], c.error)
                continue
            if s.name not in spec.COMBINERS:
                c.error(f"unknown combiner `{s.name}`", s.span,
                        did_you_mean(s.name, list(spec.COMBINERS) + list(blocks)))
            elif s.args is not None:
                c.error(f"the built-in combiner `{s.name}` takes options in `{{ }}`, not arguments", s.span,
                        f"write `combiner {s.name} {{ layers = [256, 128] }}`")
        options[s.keyword] = _check_options(c, s.options, spec.SECTION_OPTIONS[s.keyword],
                                            f"`{s.keyword}`", s.keyword, spans)
    _check_early_stop(c, seen_sections.get("train"), program)
    from .check_tune import check_tune  # `tune { ... }`: its own pass, sharing the option rules
    tune = check_tune(program, options, blocks, c)

    if c.diags:
        raise MlcError(c.diags, program.source)
    return Checked(program, data, features, options, spans, combiner, blocks, block_args, tune)


def _block_name(v: ast.Value) -> str | None:
    return v.value if isinstance(v, ast.Name) else v.name if isinstance(v, ast.Call) else None


def _block_encoder(c: _Collector, f: ast.Feature, opt: ast.Option, block: ast.Block) -> dict | None:
    """`encoder = my_block(width = 64)` on one input: the block encodes that column alone."""
    if f.role != "input" or f.type not in spec.BLOCK_ENCODED_TYPES:
        c.error(f"an expert block cannot encode a `{f.type}` {f.role}", opt.value.span,
                "blocks encode " + ", ".join(f"`{t}`" for t in spec.BLOCK_ENCODED_TYPES) + " inputs")
        return None
    call = ast.Section("encoder", block.name, [], opt.value.span,
                       opt.value.args if isinstance(opt.value, ast.Call) else [])
    args = check_block_call(call, block, c.error, usage="encoder =")
    return {"name": block.name, "block": True, "args": args}


def _check_encoder(c: _Collector, enc: dict | None, span: Span | None):
    """Arguments of an encoder that must agree with each other."""
    if not enc or enc.get("name") != "transformer" or enc.get("block"):
        return
    size, heads = enc.get("size", 64), enc.get("heads", 4)
    if size % heads:
        c.error(f"a transformer of size {size} cannot split into {heads} heads", span,
                f"make `size` a multiple of `heads`, such as size = {heads * max(1, round(size / heads))}")


def _check_data(c: _Collector) -> ast.Data | None:
    prog = c.program
    if not prog.data:
        c.error("the program has no `data` statement", Span(1, 1),
                'start the program with the file to learn from, such as `data "churn.csv"`')
        return None
    for extra in prog.data[1:]:
        c.error("only one `data` statement is allowed", extra.span, None,
                [(prog.data[0].span, "the data is already named here")])
    d = prog.data[0]
    suffix = d.path.lower().rsplit(".", 1)[-1] if "." in d.path else ""
    # a folder of files (a partitioned data set) ends in `/`; it is read streamed (runtime/stream.py)
    if suffix not in ("csv", "parquet", "pq") and not d.path.endswith("/"):
        c.error(f"cannot tell the format of `{d.path}`", d.span, "data files end in .csv or .parquet")
    if isinstance(d.split, ast.SplitRatio):
        parts = d.split.parts
        if len(parts) != 3:
            c.error(f"a split has three parts (train/validation/test), not {len(parts)}", d.split.span,
                    "write it like `split 80/10/10`")
        elif sum(parts) != 100:
            c.error(f"split parts add up to {sum(parts)}, not 100", d.split.span,
                    "write percentages, such as `split 80/10/10`")
        elif min(parts) == 0:
            c.error("every part of a split must be above 0", d.split.span,
                    "validation picks the best epoch and test measures the model; both need rows")
    return d


def _check_options(c, options: list[ast.Option], table: dict[str, spec.OptionSpec], owner: str,
                   where: str, spans: dict) -> dict:
    out: dict = {}
    for opt in options:
        if opt.key in out:
            c.error(f"option `{opt.key}` is set twice", opt.span)
            continue
        s = table.get(opt.key)
        if s is None:
            if not table:
                c.error(f"{owner} take no options", opt.span)
            else:
                c.error(f"unknown option `{opt.key}` for {owner}", opt.span, did_you_mean(opt.key, table))
            continue
        if opt.on is not None and opt.key != "early_stop":
            c.error("`on` only follows `early_stop`", opt.on_span, f"remove `on {'.'.join(opt.on)}`")
        value = _convert(c, opt.value, s.form, opt.key)
        if value is not None and opt.key == "early_stop":
            value = {"patience": value, "metric": ".".join(opt.on) if opt.on else None}
        if value is not None:
            out[opt.key] = value
            spans[f"{where}.{opt.key}"] = opt.span
    return out


def _convert(c, v: ast.Value, form, key: str):
    """AST value -> Python value, reporting a diagnostic and returning None if invalid."""
    if isinstance(form, spec.Choice):
        if isinstance(v, (ast.Name, ast.Call)):
            name = v.value if isinstance(v, ast.Name) else v.name
            if name not in form.calls:
                c.error(f"unknown value `{name}` for `{key}`", v.span, did_you_mean(name, form.calls))
                return None
            out = {"name": name}
            ok = True
            for a in v.args if isinstance(v, ast.Call) else []:
                kinds = form.calls[name]
                if a.key not in kinds:
                    hint = did_you_mean(a.key, kinds) if kinds else f"`{name}` takes no arguments"
                    c.error(f"`{name}` has no argument `{a.key}`", a.span, hint)
                    ok = False
                    continue
                if a.key in out:
                    c.error(f"argument `{a.key}` is given twice", a.span)
                    ok = False
                    continue
                got = _scalar(c, a.value, spec.Scalar(kinds[a.key], 1 if kinds[a.key] == "int_list" else None), a.key)
                if got is not None and not _in_bounds(c, a, got):
                    got = None
                if got is None:
                    ok = False
                else:
                    out[a.key] = got
            return out if ok else None
        choices = ", ".join(f"`{n}`" for n in form.calls)
        hint = None
        if isinstance(v, ast.Str) and v.value in form.calls:
            hint = f"write it without quotes: `{key} = {v.value}`"
        c.error(f"`{key}` expects one of {choices}", v.span, hint)
        return None
    return _scalar(c, v, form, key)


def _in_bounds(c, a: ast.KwArg, x) -> bool:
    bounds = ARG_BOUNDS.get(a.key, (0, None, False, False))
    if not isinstance(x, (int, float)):
        return True
    low, high, low_open, high_open = bounds
    if isinstance(x, float) and abs(x) > float(np.finfo(np.float32).max):
        c.error(f"`{a.key}` is too large for float32, the precision training computes in", a.value.span,
                f"at most {float(np.finfo(np.float32).max):.3g}")
        return False
    if high is not None and high_open and isinstance(x, float) and np.float32(x) >= high:
        c.error(f"`{a.key}` = {x!r} rounds to {_fmt(high)} in float32, the precision training computes in",
                a.value.span, f"use at most {float(np.nextafter(np.float32(high), np.float32(0))):.8g}")
        return False
    if low is not None and (x <= low if low_open else x < low):
        c.error(f"`{a.key}` must be {'above' if low_open else 'at least'} {_fmt(low)}", a.value.span)
        return False
    if high is not None and (x >= high if high_open else x > high):
        c.error(f"`{a.key}` must be {'below' if high_open else 'at most'} {_fmt(high)}", a.value.span)
        return False
    return True


def _fmt(x) -> str:
    """A number as written in .dml; also infinities, which ast.format_number cannot take."""
    if isinstance(x, float) and not math.isfinite(x):
        return str(x)
    return ast.format_number(x)


def _scalar(c, v: ast.Value, form: spec.Scalar, key: str):
    if form.auto and isinstance(v, ast.Name) and v.value == "auto":
        return "auto"
    if form.kind == "string":
        if isinstance(v, ast.Str):
            if key == "separator" and not v.value:
                c.error("`separator` cannot be empty", v.span, 'write one, such as `separator = "|"`')
                return None
            return v.value
        if isinstance(v, (ast.Num, ast.Name)):
            return v.value if isinstance(v, ast.Name) else _fmt(v.value)  # `positive = yes` / `= 1`
        c.error(f"`{key}` expects a string", v.span)
        return None
    if form.kind == "int_list":
        if not isinstance(v, ast.List) or not v.items:
            c.error(f"`{key}` expects a list of whole numbers, such as [256, 128]", v.span)
            return None
        items = [_scalar(c, item, spec.Scalar("int", form.minimum), key) for item in v.items]
        return None if None in items else items
    if not isinstance(v, ast.Num):
        extra = " or `auto`" if form.auto else ""
        c.error(f"`{key}` expects a {'whole ' if form.kind == 'int' else ''}number{extra}", v.span)
        return None
    x = v.value
    if form.kind == "int":
        if not isinstance(x, int):
            c.error(f"`{key}` expects a whole number, not {_fmt(x)}", v.span)
            return None
        if x > MAX_INT:
            c.error(f"`{key}` is too large", v.span, f"at most {MAX_INT}")
            return None
    else:
        try:
            x = float(x)
        except OverflowError:  # a whole number with hundreds of digits
            x = math.inf
    if isinstance(x, float) and not math.isfinite(x):
        c.error(f"`{key}` is too large", v.span)
        return None
    if form.minimum is not None and x < form.minimum:
        c.error(f"`{key}` must be at least {_fmt(form.minimum)}", v.span)
        return None
    if form.maximum is not None and x > form.maximum:
        c.error(f"`{key}` must be at most {_fmt(form.maximum)}", v.span)
        return None
    return x


def _check_early_stop(c, train: ast.Section | None, program: ast.Program):
    if train is None:
        return
    opt = next((o for o in train.options if o.key == "early_stop"), None)
    if opt is None or opt.on is None:
        return
    _check_early_stop_path(c, opt.on, opt.on_span, program, "stop on")


def _check_early_stop_path(c, path: list[str], span: Span, program: ast.Program, verb: str) -> bool:
    """A validation metric path (`val.loss`, `val.OUTPUT.METRIC`); also `tune { metric = ... }`."""
    outputs = {f.name: f for f in program.outputs}
    if path == ["val", "loss"]:
        return True
    if len(path) != 3 or path[0] != "val":
        c.error(f"cannot {verb} `{'.'.join(path)}`", span,
                "write `val.loss` or `val.OUTPUT.METRIC`, such as `val.churn.roc_auc`")
        return False
    out = outputs.get(path[1])
    if out is None:
        c.error(f"`{path[1]}` is not an output", _part_span(program.source, span, 1),
                did_you_mean(path[1], outputs))
        return False
    metrics = spec.METRICS.get(out.type, ())
    if metrics and path[2] not in metrics:
        c.error(f"`{path[2]}` is not a metric of {out.type} output `{out.name}`",
                _part_span(program.source, span, 2), did_you_mean(path[2], metrics))
        return False
    return True


_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def _part_span(source: str, span: Span, index: int) -> Span:
    """The span of the index-th name of a dotted path such as `val.churn.roc_auc`."""
    if span.end_line != span.line or not span.end_col:
        return span  # written over several lines: point at the whole path
    lines = source.split("\n")
    if not 1 <= span.line <= len(lines):
        return span
    names = list(_NAME.finditer(lines[span.line - 1], span.col - 1, span.end_col - 1))
    if index >= len(names):
        return span
    m = names[index]
    return Span(span.line, m.start() + 1, span.line, m.end() + 1)
