"""Print a resolved program as valid .dml, each decision with its reason.

Parsing this text and resolving it again gives the same program: every value is
written out, so nothing is left for the defaults pass to choose.
"""
from __future__ import annotations

from mlc import spec
from mlc.grammar.ast import Str, format_number


def value_to_dml(v) -> str:
    if isinstance(v, dict) and v.get("block"):  # an expert block encoding one input
        args = [f"{k} = {value_to_dml(x)}" for k, x in v["args"].items()]
        return f"{v['name']}({', '.join(args)})"
    if isinstance(v, dict):
        args = [f"{k} = {value_to_dml(x)}" for k, x in v.items() if k != "name"]
        return f"{v['name']}({', '.join(args)})" if args else v["name"]
    if isinstance(v, list):
        return "[" + ", ".join(value_to_dml(x) for x in v) + "]"
    if isinstance(v, str):
        return Str(v, None).to_dml()
    return format_number(v)


def _block(options: dict, reasons: dict, where: str, indent: str = "  ") -> list[str]:
    rows = []
    for key, value in options.items():
        text = (f"{key} = {value['patience']} on {value['metric']}" if key == "early_stop"
                else f"{key} = auto" if value == "auto"  # resolved from the training split (max_len)
                else f"{key} = {value_to_dml(value)}")
        rows.append((text, reasons.get(f"{where}.{key}", "")))
    width = max((len(t) for t, _ in rows), default=0)
    return [f"{indent}{t.ljust(width)}  # {r}" if r else f"{indent}{t}" for t, r in rows]


def explain(r: spec.Resolved) -> str:
    out = [f"# {r.file}: every decision made, with the reason for each default", ""]
    split = r.split
    if split["kind"] == "ratio":
        clause = f"split {'/'.join(str(p) for p in split['parts'])} seed {split['seed']}"
    else:
        clause = f"split by {split['column']}"
    out.append(f"data {Str(r.data_path, None).to_dml()} {clause}  # {r.reasons.get('split', '')}")
    out.append("")
    for text in r.blocks.values():
        out += [text, ""]
    features = [("input", f) for f in r.inputs] + [("output", f) for f in r.outputs]
    width = max(len(f["name"]) for _, f in features)
    for role, f in features:
        head = f"{role.ljust(6)} {f['name'].ljust(width)} : {f['type']}"
        if f["options"]:
            out.append(head + " {")
            out += _block(f["options"], r.reasons, f"{role}.{f['name']}", "    ")
            out.append("}")
        else:
            out.append(head)
    if r.slices:
        out.append("")
    for s in r.slices:
        weight = f" {{ weight = {format_number(s['weight'])} }}" if s["weight"] != 1.0 else ""
        out.append(f"slice {s['name']} = {s['condition']}{weight}")
    out.append("")
    if r.combiner.get("block"):
        args = ", ".join(f"{k} = {value_to_dml(v)}" for k, v in r.combiner["args"].items())
        out.append(f"combiner {r.combiner['name']}({args})  # {r.reasons.get('combiner', '')}")
    else:
        out.append(f"combiner {r.combiner['name']} {{  # {r.reasons.get('combiner', '')}")
        out += _block(r.combiner["options"], r.reasons, "combiner")
        out.append("}")
    out.append("")
    out.append("train {")
    out += _block(r.train, r.reasons, "train")
    out.append("}")
    if r.tune is not None:  # the search space, as `tune { ... }` (runtime/tune.py runs it)
        t = r.tune
        settings = {"trials": t["trials"], "metric": t["metric"], "scheduler": {"name": t["scheduler"]}}
        rows = [(f"{k} = {v if k == 'metric' else value_to_dml(v)}", r.reasons.get(f"tune.{k}", ""))
                for k, v in settings.items()]
        rows += [(f"{e['path']} = {e['dist']}({', '.join(value_to_dml(a) for a in e['args'])})",
                  r.reasons.get(f"tune.{e['path']}", "")) for e in t["space"]]
        width = max(len(text) for text, _ in rows)
        out += ["", "tune {"] + [f"  {text.ljust(width)}  # {why}" if why else f"  {text}" for text, why in rows]
        out.append("}")
    return "\n".join(out) + "\n"


def resolved_equal(a: spec.Resolved, b: spec.Resolved) -> bool:
    return a.to_json() == b.to_json()
