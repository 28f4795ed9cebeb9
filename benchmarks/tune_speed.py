#!/usr/bin/env python3
"""16 trials as one vmapped program against the same 16 trained one after another.

Usage:  python benchmarks/tune_speed.py [FILE.dml ...] [--trials 16] [--json OUT.json]

For each program (default: examples/titanic.dml, examples/credit.dml,
examples/penguins.dml), draws `trials` trials from the default space's continuous part
(learning rate, weight decay, dropout: the shape-preserving choices, so one group),
then trains them
  - one after another with runtime/train.py's `train` (today's loop: each trial its own
    compiled program, its own Python epoch loop and validation), and
  - as one group with runtime/tune_group.py (`jax.vmap` over the trial axis), with no
    halving (the same work: every trial runs to its own early stop), and
  - as one group with successive halving (what `tune` does by default),
and prints wall seconds, trials per second and the ratios. It also checks that the
group's per-trial best validation metric matches the one-by-one run.
"""
from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT = ["examples/titanic.dml", "examples/credit.dml", "examples/penguins.dml"]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("dml", nargs="*")
    ap.add_argument("--trials", type=int, default=16)
    ap.add_argument("--json", metavar="FILE")
    args = ap.parse_args()
    from mlc.compile import frontend
    from mlc.ir.lower import lower
    from mlc.ir.pipeline import optimize
    from mlc.passes.defaults_tune import DEFAULT_SPACE
    from mlc.runtime import data as D
    from mlc.runtime import preprocess as P
    from mlc.runtime import search_space as S
    from mlc.runtime.train import train
    from mlc.runtime.tune_group import Lane, train_group
    rows = []
    for p in args.dml or [os.path.join(ROOT, d) for d in DEFAULT]:
        fe = frontend(p)
        r = fe.resolved
        tables = {s: D.take(fe.table, fe.splits[s]) for s in ("train", "validation", "test")}
        enc = {s: (P.encode_inputs(r, fe.state, t, lenient=True), P.encode_targets(r, fe.state, t))
               for s, t in tables.items()}
        space = [e for e in DEFAULT_SPACE if e["path"] in ("train.lr", "train.weight_decay", "combiner.dropout")]
        trials = S.sample(space, args.trials, 0, r)
        metric = r.train["early_stop"]["metric"]

        t = time.perf_counter()
        alone = []
        for i, values in enumerate(trials):
            ri = S.apply(r, values)
            alone.append(train(ri, optimize(lower(ri, fe.state))[0], fe.state, enc, i))
        seq = time.perf_counter() - t

        graph = optimize(lower(S.apply(r, {"combiner.dropout": 0.5}), fe.state))[0]
        res = {}
        for halving in (False, True):
            lanes = [Lane(i, S.apply(r, v).train["optimizer"]["lr"], S.apply(r, v).train["optimizer"]["weight_decay"],
                          v["combiner.dropout"], i) for i, v in enumerate(trials)]
            t = time.perf_counter()
            g = train_group(r, graph, fe.state, enc, lanes, metric, halving=halving)
            res[halving] = (time.perf_counter() - t, lanes, g)
        same = max(abs(a.history[a.best_epoch - 1][metric] - ln.best) for a, ln in zip(alone, res[False][1]))
        # per trial: does the vmapped lane follow the one-by-one run (same stop, metric within 2e-4)?
        per_trial = [{"trial": i, "values": v, "best_sequential": a.history[a.best_epoch - 1][metric],
                      "best_vmapped": ln.best, "best_epoch": [a.best_epoch, ln.best_epoch],
                      "epochs_run": [a.epochs_run, ln.epochs_run],
                      "first_epoch_apart": next((e + 1 for e, (x, y) in enumerate(zip(a.history, ln.history))
                                                 if abs(x[metric] - y[metric]) > 2e-4), None)}
                     for i, (v, a, ln) in enumerate(zip(trials, alone, res[False][1]))]
        matched = sum(t["best_epoch"][0] == t["best_epoch"][1] and abs(t["best_sequential"] - t["best_vmapped"]) <= 2e-4
                      for t in per_trial)
        row = {"program": os.path.relpath(p, ROOT), "trials": args.trials, "train_rows": len(fe.splits["train"]),
               "sequential_s": seq, "vmapped_s": res[False][0], "vmapped_halving_s": res[True][0],
               "ratio": seq / res[False][0], "ratio_halving": seq / res[True][0],
               "trials_per_s": {"sequential": args.trials / seq, "vmapped": args.trials / res[False][0],
                                "vmapped_halving": args.trials / res[True][0]},
               "epochs_sequential": sum(a.epochs_run for a in alone),
               "epochs_vmapped": sum(ln.epochs_run for ln in res[False][1]),
               "vmapped_compile_s": res[False][2].compile_seconds,
               "max_metric_difference": same, "trials_matching": matched, "per_trial": per_trial,
               "best_val": {"sequential": max(a.history[a.best_epoch - 1][metric] for a in alone),
                            "halving": max(ln.best for ln in res[True][1])}}
        rows.append(row)
        print(f"{row['program']:<24} {args.trials} trials: one after another {seq:6.1f} s "
              f"({row['trials_per_s']['sequential']:.2f}/s), vmapped {res[False][0]:5.1f} s "
              f"({row['trials_per_s']['vmapped']:.2f}/s, x{row['ratio']:.1f}), with halving {res[True][0]:5.1f} s "
              f"(x{row['ratio_halving']:.1f}); max |metric difference| {same:.1e}, {matched}/{args.trials} trials "
              f"matching", flush=True)
        if args.json:
            json.dump(rows, open(args.json, "w"), indent=1)
    print("geometric mean ratio:", float(np.exp(np.mean([np.log(r["ratio"]) for r in rows]))))


if __name__ == "__main__":
    main()
