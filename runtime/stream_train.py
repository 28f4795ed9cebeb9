"""Training on streamed data: one jitted step per batch, batches prefetched to the devices.

The whole-epoch program of runtime/train.py needs the training split on the device; here
the host reads, encodes and shuffles batches (runtime/stream.py) while the device runs
the previous steps: a background thread keeps PREFETCH batches already placed on the
devices (jax.device_put is asynchronous, so the copy overlaps the step). Each batch is
split over the mesh's `data` axis like the whole-epoch path; early stopping, divergence
checks and checkpoints are those of runtime/train.py.
"""
from __future__ import annotations

import queue
import threading
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

from mlc import spec
from mlc.runtime import devices as DV
from mlc.runtime.train import (Diverged, Evaluator, TrainResult, likely_cause, loss_builder, make_optimizer,
                               metric_value, output_metrics, total_loss)

PREFETCH = 4


class Prefetch:
    """Iterate `produce()` in a thread, `place` applied to each item, at most `depth` ahead."""

    def __init__(self, produce, place, depth: int = PREFETCH):
        self.q: queue.Queue = queue.Queue(maxsize=depth)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, args=(produce, place), daemon=True)
        self.thread.start()

    def _run(self, produce, place):
        try:
            for item in produce():
                if self.stop.is_set():
                    return
                self.q.put(("item", place(item)))
            self.q.put(("end", None))
        except BaseException as e:  # noqa: BLE001 - re-raised in the consumer
            self.q.put(("error", e))

    def __iter__(self):
        while True:
            kind, value = self.q.get()
            if kind == "end":
                return
            if kind == "error":
                raise value
            yield value

    def close(self):
        self.stop.set()
        while self.thread.is_alive():
            try:
                self.q.get(timeout=0.1)
            except queue.Empty:
                pass


def train_streamed(resolved: spec.Resolved, graph, state: dict, batches, steps: int, validation, seed: int,
                   progress=None, kernels: str = "xla", layout=None, checkpoint=None) -> TrainResult:
    """batches(epoch): host batches (dicts of numpy arrays of batch_size rows), `steps` per
    epoch. validation(params) -> (preds, targets) of the validation split."""
    cfg = resolved.train
    batch = cfg["batch_size"]
    layout = layout or DV.layout_for(graph, None, batch)
    epochs = cfg["epochs"]
    total_steps = min(steps * epochs, 2**31 - 1)
    optimizer = make_optimizer(cfg, total_steps)
    loss_fn = loss_builder(graph, kernels)
    even = batch % layout.data_size == 0
    # an uneven batch cannot be placed split; it is placed whole and split inside the step
    batch_sharding = layout.batch() if even else layout.replicated()

    def step(params, opt_state, key, loss_sum, data):
        key, sub = jax.random.split(key)
        data = {k: jax.lax.with_sharding_constraint(v, layout.batch()) for k, v in data.items()}
        loss, grads = jax.value_and_grad(lambda p: loss_fn(p, data, sub, True)["loss"])(params)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, key, loss_sum + loss

    key = jax.random.PRNGKey(seed)
    key, init_key = jax.random.split(key)
    from mlc.backends import jax_backend
    params = jax_backend.init_params(graph, init_key)
    params = {k: DV.put(np.asarray(v), layout.param_sharding(k)) for k, v in params.items()}
    key = DV.put(np.asarray(key), layout.replicated())
    opt_state = DV.spread(jax.jit(optimizer.init)(params), layout)
    zero = DV.put(np.zeros((), np.float32), layout.replicated())
    shardings = jax.tree.map(lambda a: a.sharding, (params, opt_state, key, zero))
    step = jax.jit(step, out_shardings=shardings, donate_argnums=(0, 1))
    finite = jax.jit(lambda p: jnp.all(jnp.asarray([jnp.isfinite(v).all() for v in jax.tree.leaves(p)])))

    def place(host: dict):
        return {k: DV.put(v, batch_sharding) for k, v in host.items()}

    def diverged(epoch: int, what: str):
        option, hint = likely_cause(resolved)
        return Diverged(epoch, what, option, hint)

    metric = cfg["early_stop"]["metric"]
    higher = spec.HIGHER_IS_BETTER.get(metric.split(".")[-1], False) and metric != "val.loss"
    best, best_params, best_epoch, history = None, jax.tree.map(jnp.copy, params), 0, []
    patience = cfg["early_stop"]["patience"]
    first, stopped_by = 1, "epochs"
    restored = checkpoint.restore({"params": params, "opt_state": opt_state, "key": key}) if checkpoint else None
    if restored is not None:
        tree, meta = restored
        params, opt_state, key, best_params = tree["params"], tree["opt_state"], tree["key"], tree["best_params"]
        best, best_epoch, history = meta["best"], meta["best_epoch"], meta["history"]
        first, stopped_by = meta["epoch"] + 1, meta.get("stopped_by") or "epochs"
    if progress:
        progress(0, epochs, None)
    t0 = time.perf_counter()
    compile_seconds = step_seconds = 0.0
    rows_timed = 0
    epoch = first - 1
    for epoch in range(first, epochs + 1 if stopped_by == "epochs" else first):
        t_epoch = time.perf_counter()
        loss_sum = zero
        feed = Prefetch(lambda: batches(epoch), place)
        done = 0
        try:
            for data in feed:
                t_step = time.perf_counter()
                params, opt_state, key, loss_sum = step(params, opt_state, key, loss_sum, data)
                if done == 0 and epoch == first:
                    jax.block_until_ready(loss_sum)
                    compile_seconds = time.perf_counter() - t_step
                done += 1
        finally:
            feed.close()
        train_loss = float(loss_sum) / max(done, 1)
        elapsed = time.perf_counter() - t_epoch
        step_seconds += elapsed - (compile_seconds if epoch == first else 0.0)
        rows_timed += (done - (1 if epoch == first else 0)) * batch
        if not np.isfinite(train_loss):
            raise diverged(epoch, f"the training loss is {train_loss}")
        if not bool(finite(params)):
            raise diverged(epoch, "some parameters are no longer finite numbers")
        val_preds, val_targets = validation(DV.local(params))
        if not all(np.isfinite(v).all() for v in val_preds.values()):
            raise diverged(epoch, "the model predicts non-finite values on the validation split")
        val = output_metrics(resolved, val_preds, val_targets, state)
        val_loss = total_loss(resolved, val)
        value = metric_value(metric, val, val_loss)
        if (best is None or (value > best if higher else value < best)) and np.isfinite(value):
            best, best_params, best_epoch = value, jax.tree.map(jnp.copy, params), epoch
        history.append({"epoch": epoch, "train_loss": train_loss, "val_loss": val_loss, metric: value})
        if progress:
            progress(epoch, epochs, {"train_loss": train_loss, "metric": metric, "value": value,
                                     "best": best, "best_epoch": best_epoch})
        if epoch - best_epoch >= patience:
            stopped_by = "early_stop"
        elif cfg.get("max_time") and time.perf_counter() - t0 >= cfg["max_time"]:
            stopped_by = "max_time"
        if checkpoint:
            checkpoint.save(epoch, {"params": params, "opt_state": opt_state, "key": key, "best_params": best_params},
                            {"epoch": epoch, "best": best, "best_epoch": best_epoch, "history": history,
                             "stopped_by": None if stopped_by == "epochs" else stopped_by},
                            last=stopped_by != "epochs" or epoch == epochs)
        if stopped_by != "epochs":
            break
    return TrainResult(DV.to_host(best_params), best_epoch, epoch, history, compile_seconds,
                       time.perf_counter() - t0, steps * epoch,
                       rows_timed / step_seconds if step_seconds > 0 else 0.0, stopped_by,
                       DV.summary(layout), first - 1)


def evaluate_batches(evaluate: Evaluator, params, encoded) -> tuple[dict, dict]:
    """Predictions and targets over (inputs, targets) pieces, concatenated."""
    preds, targets = [], []
    for inputs, t in encoded:
        preds.append(evaluate(params, inputs))
        targets.append(t)
    if not preds:
        return {}, {}
    return ({k: np.concatenate([p[k] for p in preds]) for k in preds[0]},
            {k: np.concatenate([t[k] for t in targets]) for k in targets[0]})
