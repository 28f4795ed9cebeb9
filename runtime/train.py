"""The training loop: whole epochs compiled as one XLA program.

The training split lives on the device; each epoch is a single jitted call that
shuffles row indices and runs `lax.scan` over the minibatches, so Python runs
once per epoch, not once per step. Validation runs after every epoch and the
parameters of the best epoch (by the early-stopping metric) are kept.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import jax
import jax.numpy as jnp
import numpy as np
import optax

from mlc import spec
from mlc.backends import jax_backend
from mlc.diagnostics import UserError
from mlc.ir.graph import Graph
from mlc.runtime import metrics as M


def make_schedule(train: dict, total_steps: int):
    """The learning rate as a function of the step count."""
    sched, lr = train["schedule"], train["optimizer"]["lr"]
    if sched["name"] == "cosine":
        warmup = int(total_steps * sched["warmup"])
        if warmup:
            return optax.warmup_cosine_decay_schedule(0.0, lr, warmup, max(total_steps, warmup + 1), end_value=0.0)
        return optax.cosine_decay_schedule(lr, max(total_steps, 1))
    return optax.constant_schedule(lr)


# From this many parameter tensors on, the optimizer runs on one flat vector (optax.flatten):
# per tensor, each update adds its own moments and ops and the global norm a chain of adds,
# which made XLA's compile time superlinear in depth (benchmarks/RESULTS.md, "Compile time of
# deep blocks"); flat, it is a handful of ops whatever the depth. Below it (every example and
# most programs) the update stays per tensor: the same math, without the concatenation.
FLAT_OPTIMIZER_MIN_TENSORS = 64


def make_optimizer(train: dict, total_steps: int) -> optax.GradientTransformation:
    opt = train["optimizer"]
    schedule = make_schedule(train, total_steps)
    clip = [optax.clip_by_global_norm(train["grad_clip"])] if train["grad_clip"] > 0 else []
    if opt["name"] == "adamw":
        # Decay weight matrices only, not biases, norms or embeddings.
        mask = lambda params: {k: (v.ndim == 2 and not k.startswith("embed.")) for k, v in params.items()}  # noqa: E731
        few = _clipped(clip, optax.adamw(schedule, b1=opt["b1"], b2=opt["b2"],
                                         weight_decay=opt["weight_decay"], mask=mask))
        # optax.adamw is scale_by_adam, add_decayed_weights, scale_by_learning_rate: the mask
        # needs the tensors' shapes, so only the first part runs flat
        many = optax.chain(optax.flatten(optax.chain(*clip, optax.scale_by_adam(b1=opt["b1"], b2=opt["b2"]))),
                           optax.add_decayed_weights(opt["weight_decay"], mask),
                           optax.scale_by_learning_rate(schedule))
        return _by_tensor_count(few, many)
    if opt["name"] == "adam":
        base = optax.adam(schedule, b1=opt["b1"], b2=opt["b2"])
    else:
        base = optax.sgd(schedule, momentum=opt["momentum"] or None)
    return _by_tensor_count(_clipped(clip, base), optax.flatten(_clipped(clip, base)))


def _clipped(clip: list, base: optax.GradientTransformation) -> optax.GradientTransformation:
    # the state's structure is what the fused `mlc_adamw` update mirrors: no chain without a clip
    return optax.chain(*clip, base) if clip else base


def _by_tensor_count(few: optax.GradientTransformation, many: optax.GradientTransformation):
    """`many` for trees of FLAT_OPTIMIZER_MIN_TENSORS tensors or more, else `few` (the count is
    static under jit, so one of them is traced)."""
    pick = lambda tree: many if len(jax.tree.leaves(tree)) >= FLAT_OPTIMIZER_MIN_TENSORS else few  # noqa: E731
    return optax.GradientTransformation(lambda params: pick(params).init(params),
                                        lambda updates, state, params=None: pick(updates).update(updates, state, params))


def output_metrics(resolved: spec.Resolved, preds: dict, targets: dict, state: dict) -> dict:
    """Metrics per output, in the units the user sees; `loss` is the training loss per row."""
    out = {}
    for f in resolved.outputs:
        p, y = np.asarray(preds[f"pred.{f['name']}"]), np.asarray(targets[f"y_{f['name']}"])
        if f["type"] == "binary":
            out[f["name"]] = M.binary_metrics(y, p[:, 0])
        elif f["type"] == "category":
            out[f["name"]] = M.category_metrics(y, p)
        elif f["type"] == "set":
            out[f["name"]] = M.set_metrics(y, p, f["options"]["threshold"])
        elif f["type"] == "vector":
            st = state["outputs"][f["name"]]
            mean, std = np.asarray(st["mean"]), np.asarray(st["std"])
            out[f["name"]] = M.vector_metrics(y * std + mean, p * std + mean)
            err = p - y
            out[f["name"]]["loss"] = float((err ** 2).mean() if f["options"]["loss"]["name"] == "mse"
                                           else np.abs(err).mean())
        else:
            st = state["outputs"][f["name"]]
            out[f["name"]] = M.number_metrics(y * st["std"] + st["mean"], p[:, 0] * st["std"] + st["mean"])
            out[f["name"]]["loss"] = M.regression_loss(y, p[:, 0], f["options"]["loss"])
    return out


def total_loss(resolved: spec.Resolved, split_metrics: dict) -> float:
    return float(sum(f["options"]["weight"] * split_metrics[f["name"]]["loss"] for f in resolved.outputs))


def metric_value(metric: str, split_metrics: dict, total_loss: float) -> float:
    """`val.loss` or `val.OUT.METRIC` -> its value in this epoch's metrics."""
    parts = metric.split(".")
    return total_loss if parts[1:] == ["loss"] else split_metrics[parts[1]][parts[2]]


class Diverged(UserError):
    """Training produced a non-finite loss, parameter or prediction. `option` names the
    program option most likely to blame ("train.optimizer", "combiner", ...)."""

    def __init__(self, epoch: int, what: str, option: str, hint: str):
        super().__init__(f"training diverged in epoch {epoch}: {what}; no model was written")
        self.epoch, self.option, self.hint = epoch, option, hint


def likely_cause(resolved: spec.Resolved) -> tuple[str, str]:
    """(option, hint) most likely to make training diverge."""
    cfg = resolved.train
    opt = cfg["optimizer"]
    if opt["lr"] > 0.1:
        return "train.optimizer", f"the learning rate {opt['lr']:g} is very large; try adamw(lr = 0.001)"
    if opt.get("weight_decay", 0) > 1:
        return "train.optimizer", f"weight_decay = {opt['weight_decay']:g} is very large; try 0.0001"
    if resolved.combiner.get("block"):
        return "combiner", (f"check the expert block `{resolved.combiner['name']}` for log or division of "
                            "values that can reach 0 or below, and exp of large values")
    return "train.optimizer", "lower the learning rate, or set `grad_clip` in `train`"


@dataclass
class TrainResult:
    params: dict
    best_epoch: int
    epochs_run: int
    history: list = field(default_factory=list)
    compile_seconds: float = 0.0
    train_seconds: float = 0.0
    steps: int = 0
    rows_per_second: float = 0.0  # training steps only: no compilation, no validation
    stopped_by: str = "epochs"  # "epochs" | "early_stop" | "max_time"
    mesh: dict = field(default_factory=dict)  # devices.describe: where training ran
    resumed_from: int = 0  # the epoch of the checkpoint this run continued from (0: none)


class Evaluator:
    """Jitted forward pass over a whole split.

    Rows go through in fixed-size chunks (the last one padded), so every split
    of every size reuses one compiled program.
    """

    def __init__(self, graph: Graph, wanted: list[str], chunk: int = 2048):
        self.fn = jax.jit(jax_backend.build(graph, wanted))
        self.max_chunk = chunk

    def __call__(self, params, inputs: dict) -> dict:
        n = len(next(iter(inputs.values())))
        # Small splits pad to the next power of two, so they cost little and compile
        # at most a handful of shapes.
        chunk = min(self.max_chunk, 1 << max(0, (n - 1).bit_length()))
        parts = []
        for start in range(0, n, chunk):
            part = {k: v[start:start + chunk] for k, v in inputs.items()}
            pad = chunk - len(next(iter(part.values())))
            if pad:
                part = {k: np.concatenate([v, np.repeat(v[-1:], pad, axis=0)]) for k, v in part.items()}
            parts.append(jax.device_get(self.fn(params, part)))
        return {k: np.concatenate([p[k] for p in parts])[:n] for k in parts[0]}


def fused_update(train: dict, total_steps: int, graph: Graph, launcher: str = "triton",
                 compute_capability: int | None = None):
    """make_optimizer's step as the `mlc_adamw` primitive (one Triton kernel on cuda), on
    the same optax state; None for an optimizer without a kernel (sgd)."""
    from mlc.backends.triton.optimizer import FusedAdamW
    opt = train["optimizer"]
    if opt["name"] not in ("adamw", "adam"):
        return None
    return FusedAdamW({n: p.type.shape for n, p in graph.params.items()}, make_schedule(train, total_steps),
                      b1=opt["b1"], b2=opt["b2"], weight_decay=opt["weight_decay"] if opt["name"] == "adamw" else 0.0,
                      grad_clip=train["grad_clip"], launcher=launcher, compute_capability=compute_capability)


def loss_builder(graph: Graph, kernels: str = "xla"):
    """The training loss as a function of (params, batch, key, train). kernels 'xla': the
    jax.numpy lowering of every op; 'triton': each fused group an `mlc_fused` primitive
    (its Triton kernels on cuda, its jax.numpy reference elsewhere)."""
    if kernels == "xla":
        return jax_backend.build(graph, ["loss"])
    if kernels == "triton":
        from mlc.backends.triton import primitive
        return primitive.build(graph, ["loss"], launcher="triton")
    raise ValueError(f"kernels must be 'xla' or 'triton', not {kernels!r}")


def train(resolved: spec.Resolved, graph: Graph, state: dict, splits: dict, seed: int,
          progress=None, kernels: str = "xla", layout=None, checkpoint=None) -> TrainResult:
    """splits: name -> (inputs, targets) numpy dicts. progress(epoch, epochs, info) is called per epoch.
    kernels: see `loss_builder`. layout: a runtime.devices.Layout (default: every local device).
    checkpoint: a runtime.checkpoint.Checkpoints, saved after every epoch and resumed from."""
    from mlc.runtime import devices as DV
    cfg = resolved.train
    train_inputs, train_targets = splits["train"]
    host = {**train_inputs, **train_targets}
    n = len(next(iter(host.values())))
    batch = min(cfg["batch_size"], n)
    if layout is None:
        layout = DV.layout_for(graph, None, batch)
    # The rows are replicated on every device (this path runs when they fit): each device
    # gathers its slice of each batch locally, and only gradients cross devices.
    data = {k: DV.put(v, layout.replicated()) for k, v in host.items()}
    steps = max(1, n // batch)  # drop the ragged last batch: every step sees a full batch
    epochs = cfg["epochs"]
    total_steps = min(steps * epochs, 2**31 - 1)  # optax counts steps in int32
    optimizer = make_optimizer(cfg, total_steps)
    loss_fn = loss_builder(graph, kernels)
    fused = fused_update(cfg, total_steps, graph) if kernels == "triton" else None

    def loss_of(params, batch_data, key):
        return loss_fn(params, batch_data, key, True)["loss"]

    def step(carry, idx):
        params, opt_state, key, data = carry
        key, sub = jax.random.split(key)
        # the global batch, split over the mesh's `data` axis: XLA partitions the step and
        # all-reduces the gradients (the result is the one-device result up to rounding)
        batch_data = {k: jax.lax.with_sharding_constraint(v[idx], layout.batch()) for k, v in data.items()}
        loss, grads = jax.value_and_grad(loss_of)(params, batch_data, sub)
        if fused is not None:
            params, opt_state = fused.update(grads, opt_state, params)
        else:
            updates, opt_state = optimizer.update(grads, opt_state, params)
            params = optax.apply_updates(params, updates)
        return (params, opt_state, key, data), loss

    # The data is an argument, not a closure: captured arrays would be baked into the
    # compiled program as constants (slow to compile, and a copy per program).
    def run_epoch(params, opt_state, key, data):
        key, perm_key = jax.random.split(key)
        perm = jax.random.permutation(perm_key, n)[: steps * batch].reshape(steps, batch)
        (params, opt_state, key, _), losses = jax.lax.scan(step, (params, opt_state, key, data), perm)
        return params, opt_state, key, losses.mean()

    finite = jax.jit(lambda p: jnp.all(jnp.asarray([jnp.isfinite(v).all() for v in jax.tree.leaves(p)])))

    def diverged(epoch: int, what: str):
        option, hint = likely_cause(resolved)
        return Diverged(epoch, what, option, hint)

    key = jax.random.PRNGKey(seed)
    key, init_key = jax.random.split(key)
    params = jax_backend.init_params(graph, init_key)
    params = {k: DV.put(np.asarray(v), layout.param_sharding(k)) for k, v in params.items()}
    key = DV.put(np.asarray(key), layout.replicated())
    opt_state = DV.spread(jax.jit(optimizer.init)(params), layout)
    # Outputs keep the inputs' shardings, so every epoch reuses the first epoch's program.
    shardings = jax.tree.map(lambda a: a.sharding, (params, opt_state, key))
    run_epoch = jax.jit(run_epoch, out_shardings=(*shardings, layout.replicated()))
    evaluate = Evaluator(graph, [w for w in graph.outputs if w.startswith("pred.")])
    val_inputs, val_targets = splits["validation"]

    metric = cfg["early_stop"]["metric"]
    name = metric.split(".")[-1]
    higher = spec.HIGHER_IS_BETTER.get(name, False) and metric != "val.loss"
    best, best_params, best_epoch, history = None, params, 0, []
    patience = cfg["early_stop"]["patience"]
    first, stopped_by = 1, "epochs"
    restored = checkpoint.restore({"params": params, "opt_state": opt_state, "key": key}) if checkpoint else None
    if restored is not None:  # continue where the checkpointed run stopped (runtime/checkpoint.py)
        tree, meta = restored
        params, opt_state, key, best_params = tree["params"], tree["opt_state"], tree["key"], tree["best_params"]
        best, best_epoch, history = meta["best"], meta["best_epoch"], meta["history"]
        first, stopped_by = meta["epoch"] + 1, meta.get("stopped_by") or "epochs"
    if progress:
        progress(0, epochs, None)  # compiling the first epoch
    t0 = time.perf_counter()
    compile_seconds = step_seconds = 0.0
    epoch = first - 1
    # a checkpoint of a finished run (killed before its report was written) trains no more
    for epoch in range(first, epochs + 1 if stopped_by == "epochs" else first):
        t_epoch = time.perf_counter()
        params, opt_state, key, train_loss = run_epoch(params, opt_state, key, data)
        train_loss = float(train_loss)
        if epoch == first:
            compile_seconds = time.perf_counter() - t_epoch
        else:
            step_seconds += time.perf_counter() - t_epoch
        if not np.isfinite(train_loss):
            raise diverged(epoch, f"the training loss is {train_loss}")
        if not bool(finite(params)):
            raise diverged(epoch, "some parameters are no longer finite numbers")
        val_preds = evaluate(DV.local(params), val_inputs)
        if not all(np.isfinite(v).all() for v in val_preds.values()):
            raise diverged(epoch, "the model predicts non-finite values on the validation split")
        val = output_metrics(resolved, val_preds, val_targets, state)
        val_loss = total_loss(resolved, val)
        value = metric_value(metric, val, val_loss)
        improved = best is None or (value > best if higher else value < best)
        if improved and np.isfinite(value):
            best, best_params, best_epoch = value, params, epoch
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
    timed = epoch - first  # epochs after the one that compiled
    return TrainResult(DV.to_host(best_params), best_epoch, epoch, history, compile_seconds,
                       time.perf_counter() - t0, steps * epoch,
                       steps * batch * timed / step_seconds if step_seconds else 0.0, stopped_by,
                       DV.summary(layout), first - 1)
