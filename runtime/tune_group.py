"""Train a group of trials as one program: every trial on a leading axis under `jax.vmap`.

Trials of a group have the same shapes (same layers, encoders, batch size); they differ
in learning rate, weight decay, dropout rate and seed, which are arrays along the trial
axis. Each epoch is one jitted call for the whole group, so the per-step work of T
small models becomes one set of batched matmuls, and Python, compilation and
validation run once per group instead of once per trial.

Each trial follows exactly the steps `runtime/train.py` takes for one model with the
same seed (same key splits, permutations, dropout masks, early stopping), so a trial
trained here gets the metrics it gets alone (tests/test_tune_vmap.py checks this).

Per-trial masks: a trial that early-stops (or that halving drops) keeps its parameters
from then on (`where(active, new, old)`), and when half the lanes are idle the group is
packed onto a smaller axis (a power of two, so at most log2(T) extra compilations).
"""
from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, field

import jax
import jax.numpy as jnp
import numpy as np
import optax

from mlc import spec
from mlc.backends import jax_backend
from mlc.ir.graph import Graph
from mlc.runtime.train import make_optimizer, metric_value, output_metrics, total_loss


@dataclass
class Lane:
    """One trial's course in its group."""

    trial: int
    lr: float
    weight_decay: float
    dropout: float
    seed: int
    history: list = field(default_factory=list)
    best: float | None = None  # the early-stopping metric at the best epoch
    best_epoch: int = 0
    tune_value: float | None = None  # the tuning metric at the best epoch
    epochs_run: int = 0
    stopped_by: str = "epochs"  # "epochs" | "early_stop" | "halving" | "diverged"
    seconds: float = 0.0  # its share of the group's training time
    active: bool = True


@dataclass
class GroupResult:
    lanes: list[Lane]
    params: dict  # name -> [T, ...] numpy: each trial's parameters at its best epoch
    compile_seconds: float
    train_seconds: float
    steps_per_epoch: int
    rows_per_epoch: int


@contextlib.contextmanager
def _rates(drop_ops: list, rate):
    """Dropout ops read their rate while being traced: give them the traced per-trial one."""
    saved = [op.attrs["rate"] for op in drop_ops]
    for op in drop_ops:
        op.attrs["rate"] = rate
    try:
        yield
    finally:
        for op, r in zip(drop_ops, saved):
            op.attrs["rate"] = r


# Idle lanes are masked; the live ones move onto a smaller axis only once the axis is 4 times
# wider than they need. Measured on 2 CPU cores (benchmarks/tune_speed.py): a lane of an MLP
# costs little next to the per-step overhead every lane shares, and each new axis width costs
# a compilation (about 5 s), so packing at every halving (16 -> 8 -> 4 -> 2) was slower.
PACK_RATIO = 4

_take = jax.jit(lambda tree, idx: jax.tree.map(lambda x: x[idx], tree))


def rung_epochs(epochs: int, patience: int) -> list[int]:
    """Successive halving's rungs: half the early-stopping patience, the patience, twice it (at
    least epoch 3, before the last). The patience is the program's own measure of how long a
    model may go without improving; rungs at fractions of `epochs` (200 on small tables) came
    after most trials had stopped early, and saved nothing."""
    return [e for e in sorted({max(3, round(patience * f)) for f in (0.5, 1, 2)}) if e < epochs]


def _pow2(n: int) -> int:
    return 1 << max(0, (n - 1).bit_length())


def train_group(r: spec.Resolved, graph: Graph, state: dict, splits: dict, lanes: list[Lane], metric: str,
                halving: bool = False, log=None, budget_s: float | None = None) -> GroupResult:
    """splits: name -> (inputs, targets) numpy dicts, as train.train takes them. `graph` must have
    its dropout ops (lowered with a dropout above 0) when any lane has dropout."""
    cfg = r.train
    train_inputs, train_targets = splits["train"]
    data = {k: jnp.asarray(v) for k, v in {**train_inputs, **train_targets}.items()}
    n = len(next(iter(data.values())))
    batch = min(cfg["batch_size"], n)
    steps = max(1, n // batch)
    epochs = cfg["epochs"]
    total_steps = min(steps * epochs, 2**31 - 1)
    loss_fn = jax_backend.build(graph, ["loss"])
    drop_ops = [op for op in graph.ops if op.opcode == "dropout"]
    opt = cfg["optimizer"]

    def optimizer_for(hp):
        # optax's schedules take a Python peak, not a traced one: the schedule runs at peak 1 and
        # each trial's updates are multiplied by its learning rate (every optimizer here ends in
        # scale_by_learning_rate, so this is the same update)
        c = dict(cfg, optimizer=dict(opt, lr=1.0))
        if opt["name"] == "adamw":
            c["optimizer"]["weight_decay"] = hp["weight_decay"]
        return make_optimizer(c, total_steps)

    def loss_of(params, batch_data, key, rate):
        with _rates(drop_ops, rate):
            return loss_fn(params, batch_data, key, True)["loss"]

    def init_one(key, hp):
        key, init_key = jax.random.split(key)
        params = jax_backend.init_params(graph, init_key)
        return params, optimizer_for(hp).init(params), key

    def epoch_one(params, opt_state, key, hp, active, data):
        optimizer = optimizer_for(hp)

        def step(carry, idx):
            p, s, k = carry
            k, sub = jax.random.split(k)
            loss, grads = jax.value_and_grad(loss_of)(p, {name: v[idx] for name, v in data.items()}, sub, hp["dropout"])
            updates, s = optimizer.update(grads, s, p)
            updates = jax.tree.map(lambda u: u * hp["lr"], updates)
            return (optax.apply_updates(p, updates), s, k), loss

        k, perm_key = jax.random.split(key)
        perm = jax.random.permutation(perm_key, n)[: steps * batch].reshape(steps, batch)
        (p, s, k), losses = jax.lax.scan(step, (params, opt_state, k), perm)
        keep = lambda new, old: jnp.where(active, new, old)  # noqa: E731 - a finished trial stays as it is
        finite = jnp.all(jnp.asarray([jnp.isfinite(v).all() for v in jax.tree.leaves(p)]))
        return (jax.tree.map(keep, p, params), jax.tree.map(keep, s, opt_state), jnp.where(active, k, key),
                losses.mean(), finite)

    init = jax.jit(jax.vmap(init_one))
    run_epoch = jax.jit(jax.vmap(epoch_one, in_axes=(0, 0, 0, 0, 0, None)))
    forward = jax.jit(jax.vmap(jax_backend.build(graph, [w for w in graph.outputs if w.startswith("pred.")]),
                               in_axes=(0, None)))
    keep_best = jax.jit(lambda improved, params, best: jax.tree.map(
        lambda p, b: jnp.where(improved.reshape((-1,) + (1,) * (p.ndim - 1)), p, b), params, best))

    def hp_arrays(members):
        return {k: jnp.asarray([getattr(lanes[i], k) for i in members], jnp.float32)
                for k in ("lr", "weight_decay", "dropout")}

    es_metric, patience = cfg["early_stop"]["metric"], cfg["early_stop"]["patience"]
    higher = spec.HIGHER_IS_BETTER.get(es_metric.split(".")[-1], False) and es_metric != "val.loss"
    tune_higher = spec.HIGHER_IS_BETTER.get(metric.split(".")[-1], False) and metric != "val.loss"
    rungs = rung_epochs(epochs, patience) if halving and len(lanes) > 2 else []
    val_inputs, val_targets = splits["validation"]

    # the axis holds lanes `members` (indices into `lanes`); padding repeats a lane, inactive
    members = list(range(len(lanes)))
    width = _pow2(len(members))
    members += [members[0]] * (width - len(members))
    keys = jnp.stack([jax.random.PRNGKey(lanes[i].seed) for i in members])
    t0 = time.perf_counter()
    params, opt_state, keys = init(keys, hp_arrays(members))
    best_params = params
    final_best = {}  # lane -> its best params (numpy), once it left the axis
    compile_s = step_s = 0.0
    for epoch in range(1, epochs + 1):
        active = np.asarray([lanes[m].active and j < len(members) and members.index(m) == j
                             for j, m in enumerate(members)])
        t_epoch = time.perf_counter()
        params, opt_state, keys, train_loss, finite = run_epoch(params, opt_state, keys, hp_arrays(members),
                                                                jnp.asarray(active), data)
        train_loss, finite = np.asarray(train_loss), np.asarray(finite)
        dt = time.perf_counter() - t_epoch
        if epoch == 1:
            compile_s += dt
        else:
            step_s += dt
        preds = _evaluate(forward, params, val_inputs)
        improved = np.zeros(len(members), bool)
        running = [j for j in range(len(members)) if active[j]]
        for j in running:
            lane = lanes[members[j]]
            lane.epochs_run, lane.seconds = epoch, lane.seconds + dt / len(running)
            one = {k: v[j] for k, v in preds.items()}
            if not (np.isfinite(train_loss[j]) and finite[j] and all(np.isfinite(v).all() for v in one.values())):
                lane.active, lane.stopped_by = False, "diverged"
                continue
            val = output_metrics(r, one, val_targets, state)
            val_loss = total_loss(r, val)
            value = metric_value(es_metric, val, val_loss)
            tune_value = metric_value(metric, val, val_loss)
            if (lane.best is None or (value > lane.best if higher else value < lane.best)) and np.isfinite(value):
                lane.best, lane.best_epoch, lane.tune_value = value, epoch, tune_value
                improved[j] = True
            lane.history.append({"epoch": epoch, "train_loss": float(train_loss[j]), "val_loss": val_loss,
                                 es_metric: value, **({metric: tune_value} if metric != es_metric else {})})
            if epoch - lane.best_epoch >= patience:
                lane.active, lane.stopped_by = False, "early_stop"
        best_params = keep_best(jnp.asarray(improved), params, best_params)
        if epoch in rungs:
            _halve(lanes, tune_higher)
        if budget_s is not None and time.perf_counter() - t0 >= budget_s:
            for lane in lanes:
                if lane.active:
                    lane.active, lane.stopped_by = False, "max_time"
        live = [m for j, m in enumerate(members) if members.index(m) == j and lanes[m].active]
        if not live:
            break
        if _pow2(len(live)) * PACK_RATIO <= len(members):  # pack the live lanes onto a smaller axis
            host_best = jax.device_get(best_params)
            for j, m in enumerate(members):
                if members.index(m) == j and m not in live:
                    final_best[m] = {k: v[j] for k, v in host_best.items()}
            pick = [members.index(m) for m in live]
            pick += [pick[0]] * (_pow2(len(live)) - len(pick))
            params, opt_state, keys, best_params = _take(
                (params, opt_state, keys, best_params), jnp.asarray(pick))
            members = [members[j] for j in pick]
    host_best = jax.device_get(best_params)
    for j, m in enumerate(members):
        if members.index(m) == j:
            final_best[m] = {k: v[j] for k, v in host_best.items()}
    stacked = {k: np.stack([final_best[i][k] for i in range(len(lanes))]) for k in host_best}
    if log:
        log(f"  group of {len(lanes)}: {time.perf_counter() - t0:.1f} s (first epoch with compilation "
            f"{compile_s:.1f} s)")
    return GroupResult(lanes, stacked, compile_s, time.perf_counter() - t0, steps, steps * batch)


def _halve(lanes: list[Lane], higher: bool) -> None:
    """Successive halving: of the trials not yet dropped, the worse half (by the tuning metric at
    their best epoch so far) stops now; trials already stopped early still count in the ranking."""
    alive = [ln for ln in lanes if ln.stopped_by not in ("halving", "diverged")]
    if len(alive) <= 1:
        return
    worst = float("-inf") if higher else float("inf")
    ranked = sorted(alive, key=lambda ln: ln.tune_value if ln.tune_value is not None else worst, reverse=higher)
    for ln in ranked[(len(alive) + 1) // 2:]:
        if ln.active:
            ln.active, ln.stopped_by = False, "halving"


def _evaluate(forward, params, inputs: dict, max_chunk: int = 2048) -> dict:
    """Every lane's predictions on a split, in fixed-size chunks (as train.Evaluator)."""
    n = len(next(iter(inputs.values())))
    chunk = min(max_chunk, 1 << max(0, (n - 1).bit_length()))
    parts = []
    for start in range(0, n, chunk):
        part = {k: v[start:start + chunk] for k, v in inputs.items()}
        pad = chunk - len(next(iter(part.values())))
        if pad:
            part = {k: np.concatenate([v, np.repeat(v[-1:], pad, axis=0)]) for k, v in part.items()}
        parts.append(jax.device_get(forward(params, part)))
    return {k: np.concatenate([p[k] for p in parts], axis=1)[:, :n] for k in parts[0]}
