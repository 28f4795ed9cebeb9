"""`tune { ... }` and `ensemble = K` in `mlc run`: many models trained as few programs.

1. Draw the trials (runtime/search_space.py; trial 0 is the program's own values).
2. Group them by shape: trials that differ only in learning rate, weight decay and
   dropout (spec.VMAPPED_PATHS) form one group, trained as one vmapped program
   (runtime/tune_group.py); each other combination of choices (layers, encoders, batch
   size) is its own group, compiled once.
3. Successive halving inside each group (scheduler = halving, the default): at 1/8,
   1/4 and 1/2 of the epochs the worse half of the group's trials stops.
4. The best trial by the tuning metric on the validation split is KEPT, not retrained:
   its parameters at its best epoch are exactly what training it alone with its seed
   gives (tests/test_tune_vmap.py), so retraining would spend a whole run for the same
   model. It is evaluated once on the test split by `mlc run`, like any model.
5. With `ensemble = K`, K members of the chosen program train as one more group
   (seeds s, s+1, ...; member 0 is the single model) and form one averaged graph.
"""
from __future__ import annotations

import copy
import time
from dataclasses import dataclass

import numpy as np

from mlc import spec
from mlc.ir.graph import verify
from mlc.ir.lower import lower
from mlc.ir.pipeline import optimize
from mlc.runtime import preprocess as P
from mlc.runtime import search_space as S
from mlc.runtime.ensemble import member_params
from mlc.runtime.train import Diverged, TrainResult, likely_cause
from mlc.runtime.tune_group import Lane, train_group

DROPOUT_PLACEHOLDER = 0.5  # lowers the dropout ops when dropout is searched; each trial's rate replaces it


@dataclass
class Searched:
    resolved: spec.Resolved  # the chosen program (tune resolved away), with `ensemble` if any
    state: dict
    graph: object
    encoded: dict
    params: dict
    result: TrainResult
    report: dict  # report.json's "tuning" / "ensemble" entries


def search(fe, r: spec.Resolved, state: dict, tables: dict, encoded: dict, seed: int, log=print) -> Searched:
    t0 = time.perf_counter()
    report: dict = {}
    chosen, chosen_seed = r, seed
    best_params = None
    if r.tune is not None:
        chosen, chosen_state, chosen_encoded, chosen_seed, best_params, lane, report["tuning"] = _tune(
            fe, r, state, tables, encoded, seed, log)
        state, encoded = chosen_state, chosen_encoded
    k = chosen.train.get("ensemble", 1)
    if k > 1:
        member = copy.deepcopy(chosen)
        member.train["ensemble"] = 1
        graph = _graph(member, state, tuned_dropout=False)
        lanes = [Lane(i, member.train["optimizer"]["lr"], member.train["optimizer"].get("weight_decay", 0.0),
                      _dropout(member), chosen_seed + i) for i in range(k)]
        log(f"ensemble: {k} members as one vmapped program")
        res = train_group(member, graph, state, encoded, lanes, member.train["early_stop"]["metric"],
                          budget_s=member.train.get("max_time"))
        _all_diverged(res.lanes, member)
        params = member_params(res.params, k)
        lane = res.lanes[0]
        report["ensemble"] = {"members": k, "seeds": [ln.seed for ln in res.lanes],
                              "val_metric": [ln.best for ln in res.lanes],
                              "best_epochs": [ln.best_epoch for ln in res.lanes],
                              "seconds": round(res.train_seconds, 3), "compile_seconds": round(res.compile_seconds, 3)}
        compile_s, steps, rows = res.compile_seconds, res.steps_per_epoch, res.rows_per_epoch * sum(
            ln.epochs_run for ln in res.lanes)
    else:
        params = best_params
        compile_s = report["tuning"]["compile_seconds"]
        steps = report["tuning"]["steps_per_epoch"]
        rows = report["tuning"]["rows_seen"]
    graph, _ = optimize(lower(chosen, state))
    verify(graph)
    seconds = time.perf_counter() - t0
    result = TrainResult(params, lane.best_epoch, lane.epochs_run, lane.history, compile_s, seconds,
                         steps * lane.epochs_run, rows / max(seconds - compile_s, 1e-9), lane.stopped_by)
    return Searched(chosen, state, graph, encoded, params, result, report)


def _dropout(r: spec.Resolved) -> float:
    return 0.0 if r.combiner.get("block") else float(r.combiner["options"].get("dropout", 0.0))


def _graph(r: spec.Resolved, state: dict, tuned_dropout: bool):
    if tuned_dropout and not r.combiner.get("block"):
        r = copy.deepcopy(r)
        r.combiner["options"]["dropout"] = DROPOUT_PLACEHOLDER
    graph, _ = optimize(lower(r, state))
    verify(graph)
    return graph


def _all_diverged(lanes: list[Lane], r: spec.Resolved) -> None:
    if all(ln.stopped_by == "diverged" for ln in lanes):
        option, hint = likely_cause(r)
        raise Diverged(max(ln.epochs_run for ln in lanes), "every trial's loss or parameters became non-finite",
                       option, hint)


def _tune(fe, r: spec.Resolved, state: dict, tables: dict, encoded: dict, seed: int, log):
    t = r.tune
    metric, trials = t["metric"], S.sample(t["space"], t["trials"], seed, r)
    higher = spec.HIGHER_IS_BETTER.get(metric.split(".")[-1], False) and metric != "val.loss"
    groups: dict[str, list[int]] = {}
    for i, values in enumerate(trials):
        groups.setdefault(S.group_key(values), []).append(i)
    tuned_dropout = any(e["path"] == "combiner.dropout" for e in t["space"])
    log(f"tune: {len(trials)} trials in {len(groups)} group{'s' if len(groups) > 1 else ''} "
        f"(scheduler {t['scheduler']}, metric {metric})")
    lanes: dict[int, Lane] = {}
    where: dict[int, tuple] = {}  # trial -> (group index, lane index)
    group_rows, results = [], []
    for g, members in enumerate(groups.values()):
        static = {p: v for p, v in trials[members[0]].items() if p not in spec.VMAPPED_PATHS}
        rg = S.apply(r, static)
        rg.train.pop("ensemble", None)
        st, enc = state, encoded
        if any(p.startswith("input.") for p in static):  # other encoders: refit the preprocessing
            st = P.fit(rg, tables["train"], fe.facts)
            enc = _encode(rg, st, tables, encoded)
        graph = _graph(rg, st, tuned_dropout)
        group_lanes = []
        for i in members:
            v = S.apply(rg, trials[i])
            lane = Lane(i, v.train["optimizer"]["lr"], v.train["optimizer"].get("weight_decay", 0.0),
                        _dropout(v), seed + i)
            lanes[i] = lane
            where[i] = (g, len(group_lanes))
            group_lanes.append(lane)
        if static:
            log(f"  group {g}: {S.describe(static)}")
        res = train_group(rg, graph, st, enc, group_lanes, metric, halving=t["scheduler"] == "halving", log=log,
                          budget_s=r.train.get("max_time"))
        results.append((res, st, enc))
        group_rows.append({"group": g, "values": static, "trials": members, "lanes_compiled": len(members),
                           "compile_seconds": round(res.compile_seconds, 3), "seconds": round(res.train_seconds, 3)})
    _all_diverged(list(lanes.values()), r)
    ok = [i for i in lanes if lanes[i].tune_value is not None and np.isfinite(lanes[i].tune_value)]
    best = max(ok, key=lambda i: lanes[i].tune_value if higher else -lanes[i].tune_value)
    g, j = where[best]
    res, st, enc = results[g]
    chosen = S.apply(r, trials[best])
    if "ensemble" in r.train:
        chosen.train["ensemble"] = r.train["ensemble"]
    default = lanes[0].tune_value
    for path in trials[best]:
        chosen.reasons[_reason_key(path)] = (
            f"chosen by tune: trial {best} of {len(trials)}, {metric} {lanes[best].tune_value:.4f}"
            + (f" (the program's own values, trial 0: {default:.4f})" if best != 0 and default is not None else ""))
    rows = []
    for i, values in enumerate(trials):
        ln = lanes[i]
        rows.append({"trial": i, "group": where[i][0], "values": values, "seed": ln.seed, "val_metric": ln.tune_value,
                     "best_epoch": ln.best_epoch, "epochs_run": ln.epochs_run, "stopped_by": ln.stopped_by,
                     "seconds": round(ln.seconds, 3), "curve": ln.history})
    _print_table(rows, metric, best, log)
    report = {"metric": metric, "scheduler": t["scheduler"], "space": t["space"], "chosen": best,
              "kept": "the chosen trial's parameters at its best epoch (not retrained: with its seed, training "
                      "it alone gives the same model)",
              "groups": group_rows, "trials": rows,
              "compile_seconds": round(sum(x[0].compile_seconds for x in results), 3),
              "seconds": round(sum(x[0].train_seconds for x in results), 3),
              "steps_per_epoch": res.steps_per_epoch,
              "rows_seen": sum(x[0].rows_per_epoch * sum(ln.epochs_run for ln in x[0].lanes) for x in results)}
    params = {k: v[j] for k, v in res.params.items()}
    return chosen, st, enc, lanes[best].seed, params, lanes[best], report


def _reason_key(path: str) -> str:
    if path in ("train.lr", "train.weight_decay"):
        return "train.optimizer"
    return path


def _encode(r: spec.Resolved, state: dict, tables: dict, old: dict) -> dict:
    out = {}
    for s, table in tables.items():
        targets = P.encode_targets(r, state, table)
        if "row_weight" in old[s][1]:  # slice weights do not depend on the encoding
            targets["row_weight"] = old[s][1]["row_weight"]
        out[s] = (P.encode_inputs(r, state, table, lenient=True), targets)
    return out


def _print_table(rows: list[dict], metric: str, best: int, log) -> None:
    head = f"  {'trial':>5}  {'group':>5}  {metric:>{max(12, len(metric))}}  {'epochs':>7}  {'stopped by':<10}  values"
    log(head)
    for row in sorted(rows, key=lambda x: x["trial"]):
        v = row["val_metric"]
        mark = "*" if row["trial"] == best else " "
        log(f" {mark}{row['trial']:>5}  {row['group']:>5}  {('-' if v is None else f'{v:.4f}'):>{max(12, len(metric))}}"
            f"  {row['best_epoch']:>3}/{row['epochs_run']:<3}  {row['stopped_by']:<10}  {S.describe(row['values'])}")


def explain_trial_axis(r: spec.Resolved, seed: int = 0) -> str:
    """For `mlc explain --fusion`: how the trials map onto vmapped programs (comment lines)."""
    out = []
    if r.tune is not None:
        trials = S.sample(r.tune["space"], r.tune["trials"], seed, r)
        groups: dict[str, list[int]] = {}
        for i, values in enumerate(trials):
            groups.setdefault(S.group_key(values), []).append(i)
        axis = [p for p in spec.VMAPPED_PATHS if any(e["path"] == p for e in r.tune["space"])]
        out.append(f"# trial axis: {len(trials)} trials in {len(groups)} vmapped program"
                   f"{'s' if len(groups) > 1 else ''} (seed {seed})")
        for g, members in enumerate(groups.values()):
            static = {p: v for p, v in trials[members[0]].items() if p not in spec.VMAPPED_PATHS}
            width = 1 << max(0, (len(members) - 1).bit_length())
            out.append(f"#   group {g}: trials {members} on an axis of {width}"
                       + (f"; {S.describe(static)}" if static else ""))
        out.append("#   per trial, along the axis: seed" + "".join(f", {p}" for p in axis)
                   + "; every parameter, optimizer state and activation gains a leading trial dimension")
        out.append("#   (the kernel groups above, each batched over the axis: a matmul [B, I] x [I, O] runs as "
                   "[T, B, I] x [T, I, O]); early-stopped and halved trials are masked")
    k = r.train.get("ensemble", 1)
    if k > 1:
        out.append(f"# ensemble: {k} members trained on a trial axis of {k} (seeds s .. s+{k - 1}); the model "
                   f"graph above holds the {k} members' ops, averaged in `pred.*`")
    return "\n".join(out) + ("\n" if out else "")
