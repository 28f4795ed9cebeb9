"""Check `tune { ... }` against the language and the program (no data needed).

Every searched path must name an option the program has (`train.lrr` gets a
did-you-mean), every distribution must suit that option (a `loguniform` of a list
is refused), and every value a distribution can produce must be one the option
accepts (the ends of `uniform`, each `choice`, checked with the option's own
rules). The result is the space as plain data: {"trials", "metric", "scheduler",
"space": [{"path", "dist", "args"}]}, or None without a tune statement.
"""
from __future__ import annotations

import math

from mlc import spec
from mlc.diagnostics import did_you_mean
from mlc.grammar import ast

MAX_CHOICES = 64  # values one `choice` may list


def tunable_paths(program: ast.Program, blocks: dict) -> dict[str, tuple]:
    """path -> (form, how) for every path this program can search."""
    paths = dict(spec.TUNE_PATHS)
    combiner = next((s for s in program.sections if s.keyword == "combiner"), None)
    if combiner is not None and combiner.name in blocks:  # a block has no layers or dropout
        paths = {p: v for p, v in paths.items() if not p.startswith("combiner.")}
    for f in program.inputs:
        for key, opt in spec.FEATURE_OPTIONS.get(("input", f.type), {}).items():
            paths[f"input.{f.name}.{key}"] = (opt.form, "group")
    return paths


def check_tune(program: ast.Program, options: dict, blocks: dict, c) -> dict | None:
    """c: the checker's collector (c.error(message, span, hint=None, notes=())."""
    from .check import _check_early_stop_path, _convert  # the option rules, shared with check.py

    if not program.tunes:
        return None
    first = program.tunes[0]
    for extra in program.tunes[1:]:
        c.error("duplicate `tune` section", extra.span, "merge the two into one", [(first.span, "first written here")])
    paths = tunable_paths(program, blocks)
    out: dict = {"trials": None, "metric": None, "scheduler": None, "space": []}
    seen: dict[str, ast.TuneOption] = {}
    for opt in first.options:
        key = ".".join(opt.path)
        if key in seen:
            c.error(f"`{key}` is set twice in `tune`", opt.span, None, [(seen[key].span, "first set here")])
            continue
        seen[key] = opt
        if len(opt.path) == 1:
            _setting(c, opt, out, program, _convert, _check_early_stop_path)
            continue
        if key not in paths:
            c.error(f"`{key}` is not an option `tune` can search", opt.span, _path_hint(key, paths, program))
            continue
        form, how = paths[key]
        entry = _distribution(c, opt, key, form, _convert)
        if entry is None:
            continue
        if key == "train.weight_decay":
            optimizer = options.get("train", {}).get("optimizer", {"name": "adamw"})
            if optimizer.get("name") != "adamw":
                c.error(f"`{optimizer['name']}` has no weight decay to search", opt.span,
                        "use `optimizer = adamw(...)` in `train`, or remove this line")
                continue
        entry["how"] = how
        out["space"].append(entry)
    if out["trials"] is None:
        c.error("`tune` needs `trials`", first.span, "say how many configurations to train, such as "
                "`tune { trials = 16 }`")
    return out


def _setting(c, opt: ast.TuneOption, out: dict, program: ast.Program, convert, check_metric) -> None:
    key = opt.path[0]
    table = spec.TUNE_OPTIONS
    if key not in table:
        hint = did_you_mean(key, table) or ("searched options are paths such as `train.lr` or `combiner.dropout`")
        c.error(f"unknown option `{key}` for `tune`", opt.span, hint)
        return
    if key == "metric":
        if not isinstance(opt.value, (ast.Path, ast.Name)):
            c.error("`metric` expects a validation metric such as `val.loss` or `val.churn.roc_auc`", opt.value.span)
            return
        parts = opt.value.parts if isinstance(opt.value, ast.Path) else [opt.value.value]
        if check_metric(c, parts, opt.value.span, program, "tune on"):
            out["metric"] = ".".join(parts)
        return
    if isinstance(opt.value, (ast.Dist, ast.Path)):
        c.error(f"`{key}` takes a plain value, not {opt.value.to_dml()}", opt.value.span)
        return
    value = convert(c, opt.value, table[key].form, key)
    if value is not None:
        out[key] = value


def _distribution(c, opt: ast.TuneOption, key: str, form, convert) -> dict | None:
    v = opt.value
    if not isinstance(v, ast.Dist):
        c.error(f"`{key}` in `tune` needs a distribution, not {_show(v)}", v.span,
                "write one of " + ", ".join(f"`{d}`" for d in spec.TUNE_DISTS.values())
                + "; a fixed value belongs in its own section")
        return None
    if v.name not in spec.TUNE_DISTS:
        c.error(f"unknown distribution `{v.name}`", v.span, did_you_mean(v.name, spec.TUNE_DISTS)
                or "use " + ", ".join(f"`{d}`" for d in spec.TUNE_DISTS))
        return None
    if v.name == "choice":
        if not v.args:
            c.error("`choice` needs at least one value", v.span)
            return None
        if len(v.args) > MAX_CHOICES:
            c.error(f"`choice` lists {len(v.args)} values; at most {MAX_CHOICES}", v.span)
            return None
        values = [_one_value(c, a, form, key, convert) for a in v.args]
        if any(x is None for x in values):
            return None
        return {"path": key, "dist": "choice", "args": values}
    numeric = isinstance(form, spec.Scalar) and form.kind in ("int", "float")
    if not numeric:
        c.error(f"`{key}` is not a number: search it with `choice(...)`", v.span,
                f"such as `{key} = choice({_example(form)})`")
        return None
    if v.name == "int" and form.kind != "int":
        c.error(f"`{key}` is not a whole number: use `uniform` or `loguniform`", v.span)
        return None
    if v.name in ("uniform", "loguniform") and form.kind == "int":
        c.error(f"`{key}` is a whole number: use `int(low, high)` or `choice(...)`", v.span)
        return None
    if len(v.args) != 2:
        c.error(f"`{v.name}` takes two numbers, low and high, not {len(v.args)}", v.span,
                f"such as `{v.name}(1e-4, 1e-2)`" if v.name != "int" else "such as `int(64, 512)`")
        return None
    ends = [_one_value(c, a, form, key, convert) for a in v.args]
    if any(x is None for x in ends):
        return None
    low, high = ends
    if not low < high:
        c.error(f"`{v.name}` needs low < high, not {_num(low)} and {_num(high)}", v.span)
        return None
    if v.name == "loguniform" and low <= 0:
        c.error("`loguniform` needs low above 0: it is even on a log scale", v.args[0].span,
                "use `uniform` to include 0")
        return None
    return {"path": key, "dist": v.name, "args": [low, high]}


def _one_value(c, v, form, key: str, convert):
    """One value a distribution produces, checked as the option checks it."""
    if isinstance(v, (ast.Dist, ast.Path)):
        c.error(f"`{v.to_dml()}` is not a value of `{key}`", v.span)
        return None
    leaf = key.split(".")[-1]
    if key in ("train.lr", "train.weight_decay"):  # optimizer arguments: their bounds, as in adamw(...)
        from .check import _in_bounds, _scalar
        x = _scalar(c, v, spec.Scalar("float"), leaf)
        return x if x is not None and _in_bounds(c, ast.KwArg(leaf, v, v.span), x) else None
    return convert(c, v, form, leaf)


def _path_hint(key: str, paths: dict, program: ast.Program) -> str | None:
    parts = key.split(".")
    if parts[0] == "input" and len(parts) == 3 and parts[1] not in {f.name for f in program.inputs}:
        names = {f"input.{n}.{parts[2]}": n for n in (f.name for f in program.inputs)}
        close = did_you_mean(key, [p for p in names if p in paths])
        return close if close and close.startswith("did") else "name an input of the program"
    if parts[0] == "output":
        return "outputs are not searched; tune their inputs, the combiner or training"
    if parts[:2] == ["train", "optimizer"]:
        return "write the argument directly, such as `train.lr` or `train.weight_decay`"
    return did_you_mean(key, paths) or ("searchable: " + ", ".join(f"`{p}`" for p in spec.TUNE_PATHS)
                                        + ", and `input.NAME.OPTION`")


def _show(v) -> str:
    return f"`{v.to_dml()}`"


def _example(form) -> str:
    if isinstance(form, spec.Choice):
        return ", ".join(list(form.calls)[:2])
    if form.kind == "int_list":
        return "[256, 256], [512, 256]"
    return "..."


def _num(x) -> str:
    return ast.format_number(x) if isinstance(x, (int, float)) and math.isfinite(x) else str(x)
