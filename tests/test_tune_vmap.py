"""The vmapped group against the same trials trained one by one by runtime/train.py:
same seeds and values give the same per-epoch metrics, best epoch and parameters."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from mlc.compile import frontend
from mlc.ir.lower import lower
from mlc.ir.pipeline import optimize
from mlc.runtime import data as D
from mlc.runtime import preprocess as P
from mlc.runtime import search_space as S
from mlc.runtime.train import train
from mlc.runtime.tune_group import Lane, train_group

ROOT = Path(__file__).resolve().parents[1]
PROGRAM = f"""data "{ROOT}/examples/data/titanic.csv"
input passenger_class : category
input sex : category
input age : number
output survived : binary
combiner concat {{ layers = [32, 32] }}
train {{ epochs = 6, batch_size = 64, early_stop = 3 }}
"""

TRIALS = [  # (lr, weight decay, dropout, seed): one of them with no dropout at all
    (1e-3, 1e-4, 0.1, 0),
    (3e-3, 1e-2, 0.0, 5),
    (5e-4, 0.0, 0.35, 11),
]


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    path = tmp_path_factory.mktemp("vmap") / "p.dml"
    path.write_text(PROGRAM)
    fe = frontend(path)
    r = fe.resolved
    tables = {s: D.take(fe.table, fe.splits[s]) for s in ("train", "validation", "test")}
    encoded = {s: (P.encode_inputs(r, fe.state, t, lenient=True), P.encode_targets(r, fe.state, t))
               for s, t in tables.items()}
    return r, fe.state, encoded


def test_vmapped_group_matches_trials_trained_one_by_one(prepared):
    r, state, encoded = prepared
    metric = r.train["early_stop"]["metric"]
    # the group's graph has dropout ops; each lane brings its own rate (0 included)
    graph, _ = optimize(lower(S.apply(r, {"combiner.dropout": 0.5}), state))
    lanes = [Lane(i, lr, wd, d, seed) for i, (lr, wd, d, seed) in enumerate(TRIALS)]
    group = train_group(r, graph, state, encoded, lanes, metric)
    for i, (lr, wd, d, seed) in enumerate(TRIALS):
        alone_r = S.apply(r, {"train.lr": lr, "train.weight_decay": wd, "combiner.dropout": d})
        alone_graph, _ = optimize(lower(alone_r, state))  # dropout 0: no dropout op at all
        alone = train(alone_r, alone_graph, state, encoded, seed)
        lane = lanes[i]
        assert lane.best_epoch == alone.best_epoch and lane.epochs_run == alone.epochs_run
        got = [h[metric] for h in lane.history]
        want = [h[metric] for h in alone.history]
        np.testing.assert_allclose(got, want, rtol=0, atol=2e-4)
        np.testing.assert_allclose([h["train_loss"] for h in lane.history],
                                   [h["train_loss"] for h in alone.history], rtol=1e-4)
        for name, value in alone.params.items():
            np.testing.assert_allclose(group.params[name][i], value, rtol=1e-3, atol=1e-4)
    # the trials differ: the group did not train one model three times
    assert len({round(ln.best, 6) for ln in lanes}) > 1


def test_halving_stops_the_worse_half_and_keeps_each_best(prepared):
    r, state, encoded = prepared
    r = S.apply(r, {})
    r.train["epochs"], r.train["early_stop"] = 12, {"patience": 8, "metric": r.train["early_stop"]["metric"]}
    graph, _ = optimize(lower(S.apply(r, {"combiner.dropout": 0.5}), state))
    lanes = [Lane(i, lr, 1e-4, 0.1, i) for i, lr in enumerate([1e-5, 3e-5, 1e-3, 3e-3])]
    train_group(r, graph, state, encoded, lanes, r.train["early_stop"]["metric"], halving=True)
    stopped = [ln.stopped_by for ln in lanes]
    assert stopped.count("halving") >= 2, stopped
    # the tiny learning rates lose at the first rung (epoch 4)
    assert lanes[0].stopped_by == "halving" and lanes[0].epochs_run == 4
    assert all(ln.best is not None for ln in lanes)
