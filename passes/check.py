"""Check a parsed program against the language (no data needed yet).

Collects every mistake it can find, then raises one MlcError holding them all,
so a newcomer fixes a whole file in one go. The result maps each option to a
plain Python value: a name or call becomes {"name": ..., **args}.
"""
from __future__ import annotations

from dataclasses import dataclass

from mlc import spec
from mlc.diagnostics import Diagnostic, MlcError, Span, did_you_mean
from mlc.grammar import ast


@dataclass
class Checked:
    """A program that passed checking, with options as Python values."""

    program: ast.Program
    data: ast.Data
    features: dict[str, ast.Feature]  # by name, in program order
    options: dict[str, dict]  # "input.age" / "output.churn" / "combiner" / "train" -> {key: value}
    option_spans: dict[str, Span]  # "input.age.normalize" -> where it was written
    combiner: str | None


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

    for f in program.features:
        types = spec.INPUT_TYPES if f.role == "input" else spec.OUTPUT_TYPES
        if f.type not in types:
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
            options[where] = _check_options(c, f.options, table, f"{f.type} {f.role}s", where, spans)

    if not program.inputs:
        c.error("the program declares no `input`", Span(1, 1), "add a line such as `input age : number`")
    if not program.outputs:
        c.error("the program declares no `output`", Span(1, 1),
                "add the column to predict, such as `output churn : binary`")

    combiner = None
    seen_sections: dict[str, ast.Section] = {}
    for s in program.sections:
        if s.keyword in seen_sections:
            c.error(f"duplicate `{s.keyword}` section", s.span, "merge the two into one",
                    [(seen_sections[s.keyword].span, "first written here")])
            continue
        seen_sections[s.keyword] = s
        if s.keyword == "combiner":
            if s.name not in spec.COMBINERS:
                c.error(f"unknown combiner `{s.name}`", s.span, did_you_mean(s.name, spec.COMBINERS))
            combiner = s.name
        options[s.keyword] = _check_options(c, s.options, spec.SECTION_OPTIONS[s.keyword],
                                            f"`{s.keyword}`", s.keyword, spans)
    _check_early_stop(c, seen_sections.get("train"), program)

    if c.diags:
        raise MlcError(c.diags, program.source)
    return Checked(program, data, features, options, spans, combiner)


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
    if suffix not in ("csv", "parquet", "pq"):
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
            c.error(f"`on` only follows `early_stop`", opt.on_span)
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
            for a in v.args if isinstance(v, ast.Call) else []:
                kinds = form.calls[name]
                if a.key not in kinds:
                    hint = did_you_mean(a.key, kinds) if kinds else f"`{name}` takes no arguments"
                    c.error(f"`{name}` has no argument `{a.key}`", a.span, hint)
                    continue
                got = _scalar(c, a.value, spec.Scalar(kinds[a.key], 0.0), a.key)
                if got is not None:
                    out[a.key] = got
            return out
        c.error(f"`{key}` expects one of " + ", ".join(f"`{n}`" for n in form.calls), v.span)
        return None
    return _scalar(c, v, form, key)


def _scalar(c, v: ast.Value, form: spec.Scalar, key: str):
    if form.auto and isinstance(v, ast.Name) and v.value == "auto":
        return "auto"
    if form.kind == "string":
        if isinstance(v, ast.Str):
            return v.value
        if isinstance(v, (ast.Num, ast.Name)):
            return str(v.value)  # `positive = yes` and `positive = 1` are fine too
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
            c.error(f"`{key}` expects a whole number, not {ast.format_number(x)}", v.span)
            return None
    else:
        x = float(x)
    if form.minimum is not None and x < form.minimum:
        c.error(f"`{key}` must be at least {ast.format_number(form.minimum)}", v.span)
        return None
    if form.maximum is not None and x > form.maximum:
        c.error(f"`{key}` must be at most {ast.format_number(form.maximum)}", v.span)
        return None
    return x


def _check_early_stop(c, train: ast.Section | None, program: ast.Program):
    if train is None:
        return
    opt = next((o for o in train.options if o.key == "early_stop"), None)
    if opt is None or opt.on is None:
        return
    path = opt.on
    outputs = {f.name: f for f in program.outputs}
    if path == ["val", "loss"]:
        return
    if len(path) != 3 or path[0] != "val":
        c.error(f"cannot stop on `{'.'.join(path)}`", opt.on_span,
                "write `val.loss` or `val.OUTPUT.METRIC`, such as `val.churn.roc_auc`")
        return
    out = outputs.get(path[1])
    if out is None:
        c.error(f"`{path[1]}` is not an output", opt.on_span, did_you_mean(path[1], outputs))
        return
    metrics = spec.METRICS.get(out.type, ())
    if metrics and path[2] not in metrics:
        c.error(f"`{path[2]}` is not a metric of {out.type} output `{out.name}`", opt.on_span,
                did_you_mean(path[2], metrics))
