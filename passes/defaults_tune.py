"""Resolve `tune { ... }`: the metric, the scheduler and, for `tune { trials = N }`
alone, the default search space (docs/language.md, "Tuning", says why each range).
"""
from __future__ import annotations

from mlc import spec

# The default space, for tabular programs. Ranges bracket the defaults (lr 1e-3, weight decay
# 1e-4, dropout 0.1, layers [256, 256]) so trial 0, the defaults themselves, lies inside.
# Why these and not others: benchmarks/RESULTS.md, "Tuning: which choices matter".
DEFAULT_SPACE = [
    {"path": "train.lr", "dist": "loguniform", "args": [3e-4, 3e-3]},
    {"path": "train.weight_decay", "dist": "loguniform", "args": [1e-5, 1e-2]},
    {"path": "combiner.dropout", "dist": "uniform", "args": [0.0, 0.4]},
    {"path": "combiner.layers", "dist": "choice", "args": [[256, 256], [512, 256]]},
]
DEFAULT_REASONS = {
    "train.lr": "the step size matters most; 3e-4 to 3e-3 brackets AdamW's 1e-3 default",
    "train.weight_decay": "decoupled decay from almost none to strong, on a log scale",
    "combiner.dropout": "0 (none) to 0.4 (strong); small tables want more",
    "combiner.layers": "two widths: the default and a wider first layer; each width is one compiled group",
}


def resolve_tune(tune: dict | None, resolved: spec.Resolved, reasons: dict) -> dict | None:
    if tune is None:
        return None
    out = {"trials": tune["trials"], "metric": tune["metric"] or resolved.train["early_stop"]["metric"],
           "scheduler": (tune["scheduler"] or {"name": "halving"})["name"]}
    reasons["tune.trials"] = "set in the program"
    reasons["tune.metric"] = "set in the program" if tune["metric"] else "the early-stopping metric"
    reasons["tune.scheduler"] = "set in the program" if tune["scheduler"] else (
        "successive halving: at half the early-stopping patience, the patience and twice it, the worse "
        "half of each group's trials stops")
    space = [{k: e[k] for k in ("path", "dist", "args")} for e in tune["space"]]
    if not space:
        block = resolved.combiner.get("block")
        opt = resolved.train["optimizer"]["name"]
        for e in DEFAULT_SPACE:
            if block and e["path"].startswith("combiner."):
                continue  # an expert block has no layers or dropout of its own
            if e["path"] == "train.weight_decay" and opt != "adamw":
                continue
            if e["path"] == "combiner.layers" and resolved.combiner["options"].get("layers") != [256, 256]:
                continue  # a text program's narrow default, or layers set in the program: keep them
            space.append(dict(e))
            reasons[f"tune.{e['path']}"] = "default space: " + DEFAULT_REASONS[e["path"]]
    else:
        for e in space:
            reasons[f"tune.{e['path']}"] = "set in the program"
    out["space"] = space
    return out
