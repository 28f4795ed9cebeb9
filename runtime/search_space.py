"""A `tune` space: drawing trials, applying one to the program, grouping by shape.

Trial 0 is the program as resolved (its own lr, dropout, layers, ...) wherever those
lie in the space, so tuning can only pick something the validation split prefers
to the defaults. The others are a Latin hypercube over the continuous dimensions
(each range cut into `trials` strata, one draw per stratum: 16 trials cover every
range evenly, where independent draws leave gaps) and a balanced, shuffled cycle
through each `choice` (every value gets its share of the trials).
"""
from __future__ import annotations

import copy
import json
import math

import numpy as np

from mlc import spec


def current_value(r: spec.Resolved, path: str):
    """What the resolved program says at `path` (None if nothing)."""
    parts = path.split(".")
    if path == "train.lr":
        return r.train["optimizer"].get("lr")
    if path == "train.weight_decay":
        return r.train["optimizer"].get("weight_decay")
    if parts[0] == "train":
        return r.train.get(parts[1])
    if parts[0] == "combiner":
        return r.combiner.get("options", {}).get(parts[1])
    if parts[0] == "input":
        f = next((f for f in r.inputs if f["name"] == parts[1]), None)
        return None if f is None else f["options"].get(parts[2])
    return None


def _inside(entry: dict, value) -> bool:
    if value is None:
        return False
    if entry["dist"] == "choice":
        return any(_same(value, c) for c in entry["args"])
    low, high = entry["args"]
    return isinstance(value, (int, float)) and low <= value <= high


def _same(a, b) -> bool:
    """Equal as the program means it: `ple` equals `ple(bins = 16)` when 16 is the default."""
    if isinstance(a, dict) and isinstance(b, dict):
        return a["name"] == b["name"] and all(a[k] == b[k] for k in a.keys() & b.keys())
    return a == b


def sample(space: list[dict], trials: int, seed: int, base: spec.Resolved) -> list[dict]:
    """`trials` dicts path -> value; the first is the program's own values where the space allows."""
    rng = np.random.default_rng(seed)
    out = [{} for _ in range(trials)]
    for entry in space:
        path, dist, args = entry["path"], entry["dist"], entry["args"]
        if dist == "choice":
            order = list(range(len(args)))
            values = [args[order[i % len(args)]] for i in range(trials)]
            rng.shuffle(values)
        else:
            low, high = args
            u = (rng.permutation(trials) + rng.random(trials)) / trials  # one draw per stratum
            if dist == "loguniform":
                values = [float(math.exp(math.log(low) + x * (math.log(high) - math.log(low)))) for x in u]
            elif dist == "uniform":
                values = [float(low + x * (high - low)) for x in u]
            else:  # int, both ends included
                values = [int(min(high, math.floor(low + x * (high - low + 1)))) for x in u]
        own = current_value(base, path)
        if _inside(entry, own):
            if dist == "choice":  # trial 0 keeps the program's value; another trial gives its draw up
                own = next(c for c in args if _same(own, c))
                swap = next((i for i in range(1, trials) if _same(values[i], own)), None)
                if swap is not None:
                    values[swap] = values[0]
            values[0] = own
        for t in range(trials):
            out[t][path] = values[t]
    return out


def apply(r: spec.Resolved, values: dict) -> spec.Resolved:
    """A copy of the program with a trial's values in place."""
    r = copy.deepcopy(r)
    r.tune = None
    for path, value in values.items():
        parts = path.split(".")
        value = copy.deepcopy(value)
        if path in ("train.lr", "train.weight_decay"):
            r.train["optimizer"][parts[1]] = value
        elif parts[0] == "train":
            r.train[parts[1]] = value
        elif parts[0] == "combiner":
            r.combiner["options"][parts[1]] = value
        elif parts[0] == "input":
            f = next(f for f in r.inputs if f["name"] == parts[1])
            old = f["options"].get(parts[2])
            if isinstance(value, dict) and isinstance(old, dict) and old.get("name") == value.get("name"):
                value = {**old, **value}  # `ple` keeps the resolved bins
            elif isinstance(value, dict):
                value = {**ARG_DEFAULTS.get(value["name"], {}), **value}
            f["options"][parts[2]] = value
    return r


# Arguments a searched encoder gets when `choice(...)` leaves them out: the defaults pass's.
ARG_DEFAULTS = {"ple": {"bins": 16}, "embed": {"size": 16}, "sum": {"size": 32}, "mean": {"size": 32},
                "bag": {"size": 64, "buckets": 100_000}, "cnn": {"size": 64, "filters": 64, "widths": [3, 5]},
                "transformer": {"size": 64, "layers": 2, "heads": 4}}


def group_key(values: dict) -> str:
    """Trials with the same key have the same shapes and program: one vmapped group."""
    return json.dumps({p: v for p, v in sorted(values.items()) if p not in spec.VMAPPED_PATHS}, sort_keys=True)


def describe(values: dict) -> str:
    """`lr=0.0012 weight_decay=3.1e-05 layers=[512, 256]` for the trial table."""
    from mlc.explain import value_to_dml
    parts = []
    for path, v in values.items():
        short = path.split(".", 1)[1] if path.startswith(("train.", "combiner.")) else path
        parts.append(f"{short}={v:.3g}" if isinstance(v, float) else f"{short}={value_to_dml(v)}")
    return " ".join(parts)
