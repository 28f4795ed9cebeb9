#!/usr/bin/env python3
"""Training throughput: mlc's training path vs. an idiomatic hand-written JAX + optax loop.

Usage:
    python benchmarks/throughput.py [--epochs N] [--repeats K] [--warmup W] [--sequential] [FILE.dml ...]

With no .dml given it runs examples/credit.dml and examples/diamonds.dml.

Both sides train the SAME model on the SAME arrays:

* The data is read, checked, split and encoded once by mlc itself
  (`mlc.compile.frontend`, `mlc.runtime.preprocess.fit/encode_*`), so only the
  training differs.
* (1) mlc: `mlc.ir.lower.lower` + `mlc.runtime.train.train`, exactly as `mlc run`
  calls them (one jitted call per epoch, `lax.scan` over minibatches, validation
  metrics after every epoch).  `epochs` is set to W + N and early stopping is
  disabled (patience > epochs) so every run trains the same number of steps.
* (2) hand-written: the same MLP written directly in jax.numpy (same encoded
  inputs, one-hot or embedding per category input as resolved, same hidden
  widths, activation, dropout, heads, losses and initializers), optax AdamW with
  the same learning rate, betas, weight decay (weight matrices only), warmup +
  cosine schedule over the same total steps, the same gradient clipping and the
  same batch size; the ragged last batch is dropped, as mlc does, so both take the
  same number of equally sized steps.  The loop is the one most people write: a
  `@jax.jit` train_step called from a Python for-loop over minibatches sliced
  from host numpy arrays after a numpy shuffle, and a jitted validation loss
  after every epoch.

Timing: the first W epochs (W=1: the one that compiles) are excluded for both;
the timed part is the next N epochs, validation included on both sides.
rows/s = N * steps_per_epoch * batch_size / timed seconds.  The two sides run in
turn, one epoch each: mlc's progress callback (called after each of its epochs)
runs one hand-written epoch, outside mlc's timed span, so both sides see the same
load from anything else on the machine (`--sequential` runs the hand-written loop
after mlc instead).  Each paired measurement is repeated K times (fresh
parameters and a fresh compile each time); the table gives the medians and the
median of the K paired ratios.  The final training loss (mean minibatch loss of
the last epoch, dropout on) of each side shows they train the same model.

The machine should be otherwise idle: other processes skew wall-clock numbers,
so the load average is printed at the start and the end, and the table also
gives the ratio of rows per CPU-second (process CPU time over the same timed
epochs, all threads).
"""
from __future__ import annotations

import argparse
import copy
import os
import statistics
import sys
import time
from pathlib import Path

# Same device policy as the `mlc` command line: the accelerator JAX finds, MLC_DEVICE=cpu to force the CPU.
from mlc import accelerator  # noqa: E402
accelerator.select(None)
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402

from mlc.backends import jax_backend  # noqa: E402
from mlc.compile import frontend  # noqa: E402
from mlc.ir.graph import verify  # noqa: E402
from mlc.ir.lower import lower  # noqa: E402
from mlc.ir.pipeline import optimize  # noqa: E402
from mlc.runtime import data as D  # noqa: E402
from mlc.runtime import preprocess as P  # noqa: E402
from mlc.runtime.train import Evaluator, output_metrics, train  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_PROGRAMS = [ROOT / "examples" / "credit.dml", ROOT / "examples" / "diamonds.dml"]
SPLITS = ("train", "validation", "test")


# --------------------------------------------------------------------------- shared data
def prepare(path: Path) -> dict:
    """Everything both sides share: the resolved program and mlc's encoded arrays."""
    fe = frontend(path)
    r = fe.resolved
    tables = {s: D.take(fe.table, fe.splits[s]) for s in SPLITS}
    state = P.fit(r, tables["train"], fe.facts)
    encoded = {s: (P.encode_inputs(r, state, tables[s]), P.encode_targets(r, state, tables[s]))
               for s in ("train", "validation")}
    return {"path": path, "resolved": r, "state": state, "encoded": encoded}


def with_epochs(resolved, epochs: int):
    """A copy of the resolved program that trains exactly `epochs` epochs (no early stop)."""
    r = copy.deepcopy(resolved)
    r.train["epochs"] = epochs
    r.train["early_stop"] = {"patience": epochs + 1, "metric": r.train["early_stop"]["metric"]}
    return r


# --------------------------------------------------------------------------- (2) hand-written
ACTIVATIONS = {"relu": jax.nn.relu, "gelu": lambda x: jax.nn.gelu(x, approximate=False),
               "silu": jax.nn.silu, "tanh": jnp.tanh}


class HandWritten:
    """The same model and optimizer, written the way most people write a JAX loop.

    Construction builds the parameters and the optimizer; each `epoch()` call runs
    one epoch of the idiomatic loop (the first call also compiles) and returns its
    wall and CPU seconds."""

    def __init__(self, prep: dict, total_epochs: int, seed: int):
        r, state = prep["resolved"], prep["state"]
        (self.x_train, self.y_train), (self.x_val, self.y_val) = prep["encoded"]["train"], prep["encoded"]["validation"]
        cfg = r.train
        comb = r.combiner["options"]
        assert comb["norm"]["name"] == "none", "the hand-written model implements norm = none only"
        act = ACTIVATIONS[comb["activation"]["name"]]
        rate = float(comb["dropout"])

        # ---- model: encoders -> MLP -> one head per output
        cats = [(f["name"], len(state["inputs"][f["name"]]["vocab"]) + 1, f["options"]["encoder"])
                for f in r.inputs if f["type"] == "category"]
        width_in = self.x_train["x_num"].shape[1] + sum(v if enc["name"] == "onehot" else enc["size"]
                                                        for _, v, enc in cats)
        key = jax.random.PRNGKey(seed)
        self.key, init_key = jax.random.split(key)
        keys = iter(jax.random.split(init_key, 64))
        glorot = jax.nn.initializers.glorot_uniform()
        params = {}
        for name, vocab, enc in cats:
            if enc["name"] == "embed":
                params[f"embed_{name}"] = 0.1 * jax.random.normal(next(keys), (vocab, enc["size"]))
        widths = [width_in] + list(comb["layers"])
        params["hidden"] = [{"w": glorot(next(keys), (a, b), jnp.float32), "b": jnp.zeros(b)}
                            for a, b in zip(widths[:-1], widths[1:])]
        heads = {}
        for f in r.outputs:
            st = state["outputs"][f["name"]]
            if f["type"] == "binary":
                k, bias = 1, [np.log(st["prior"] / (1 - st["prior"]))]
            elif f["type"] == "category":
                k = len(st["classes"])
                bias = np.log(np.maximum(st["priors"], 1e-6))
            else:
                k, bias = 1, [0.0]
            heads[f["name"]] = {"w": glorot(next(keys), (widths[-1], k), jnp.float32),
                                "b": jnp.asarray(bias, jnp.float32)}
        params["heads"] = heads

        def forward(params, x, key, train):
            parts = [x["x_num"]]
            for name, vocab, enc in cats:
                idx = x[f"cat_{name}"]
                parts.append(jax.nn.one_hot(idx, vocab) if enc["name"] == "onehot" else params[f"embed_{name}"][idx])
            h = jnp.concatenate(parts, axis=1)
            for layer in params["hidden"]:
                h = act(h @ layer["w"] + layer["b"])
                if train and rate > 0:
                    key, sub = jax.random.split(key)
                    h = jnp.where(jax.random.bernoulli(sub, 1.0 - rate, h.shape), h / (1.0 - rate), 0.0)
            return {name: h @ head["w"] + head["b"] for name, head in params["heads"].items()}

        def loss_fn(params, x, y, key, train):
            out = forward(params, x, key, train)
            total = 0.0
            for f in r.outputs:
                z, t, loss = out[f["name"]], y[f"y_{f['name']}"], f["options"]["loss"]
                if f["type"] == "binary":
                    per_row = optax.sigmoid_binary_cross_entropy(z[:, 0], t)
                elif f["type"] == "category":
                    labels = optax.smooth_labels(jax.nn.one_hot(t, z.shape[-1]), loss["label_smoothing"])
                    per_row = optax.softmax_cross_entropy(z, labels)
                elif loss["name"] == "mse":
                    per_row = (z[:, 0] - t) ** 2
                elif loss["name"] == "mae":
                    per_row = jnp.abs(z[:, 0] - t)
                else:
                    per_row = optax.huber_loss(z[:, 0], t, delta=loss["delta"])
                total = total + f["options"]["weight"] * per_row.mean()
            return total

        # ---- optimizer: same hyperparameters as the resolved program
        self.n = len(self.x_train["x_num"])
        self.batch = min(cfg["batch_size"], self.n)
        self.steps = self.n // self.batch
        total_steps = self.steps * total_epochs
        opt_cfg, sched = cfg["optimizer"], cfg["schedule"]
        assert opt_cfg["name"] == "adamw" and sched["name"] == "cosine", "benchmark assumes the default optimizer"
        warm = int(total_steps * sched["warmup"])
        lr = (optax.warmup_cosine_decay_schedule(0.0, opt_cfg["lr"], warm, max(total_steps, warm + 1), end_value=0.0)
              if warm else optax.cosine_decay_schedule(opt_cfg["lr"], total_steps))
        decay_mask = jax.tree_util.tree_map(lambda p: p.ndim == 2, params)
        for name, _, enc in cats:
            if enc["name"] == "embed":
                decay_mask[f"embed_{name}"] = False  # mlc does not decay embeddings either
        optimizer = optax.chain(
            optax.clip_by_global_norm(cfg["grad_clip"]),
            optax.adamw(lr, b1=opt_cfg["b1"], b2=opt_cfg["b2"], weight_decay=opt_cfg["weight_decay"],
                        mask=decay_mask))
        self.params, self.opt_state = params, optimizer.init(params)

        # ---- the idiomatic step functions
        @jax.jit
        def train_step(params, opt_state, x, y, key):
            loss, grads = jax.value_and_grad(loss_fn)(params, x, y, key, True)
            updates, opt_state = optimizer.update(grads, opt_state, params)
            return optax.apply_updates(params, updates), opt_state, loss

        @jax.jit
        def eval_loss(params, x, y):
            return loss_fn(params, x, y, None, False)

        self.train_step, self.eval_loss = train_step, eval_loss
        self.rng = np.random.default_rng(seed)
        self.train_loss = self.val_loss = float("nan")

    def epoch(self) -> tuple[float, float]:
        """One epoch: shuffle, a Python loop of jitted steps, a validation loss."""
        t, c = time.perf_counter(), time.process_time()
        params, opt_state, key = self.params, self.opt_state, self.key
        perm = self.rng.permutation(self.n)
        losses = []
        for s in range(self.steps):
            idx = perm[s * self.batch:(s + 1) * self.batch]
            xb = {k: v[idx] for k, v in self.x_train.items()}
            yb = {k: v[idx] for k, v in self.y_train.items()}
            key, sub = jax.random.split(key)
            params, opt_state, loss = self.train_step(params, opt_state, xb, yb, sub)
            losses.append(loss)
        self.train_loss = float(jnp.mean(jnp.stack(losses)))
        self.val_loss = float(self.eval_loss(params, self.x_val, self.y_val))
        self.params, self.opt_state, self.key = params, opt_state, key
        return time.perf_counter() - t, time.process_time() - c


# --------------------------------------------------------------------------- (1) mlc, paired with (2)
def measure_once(prep: dict, warmup: int, epochs: int, seed: int, interleave: bool) -> dict:
    """Train both sides for warmup + epochs epochs; time the last `epochs` of each.

    (1) mlc: `lower` + `train`, as `mlc run` calls them; its progress callback,
    called after each epoch (validation included), marks the epoch boundaries.
    With `interleave`, one hand-written epoch runs inside that callback, outside
    mlc's timed span, so both sides share whatever load the machine has at each
    moment; otherwise the hand-written loop runs after mlc has finished."""
    total = warmup + epochs
    r = with_epochs(prep["resolved"], total)
    t0 = time.perf_counter()
    hand = HandWritten(prep, total, seed)
    hand_setup = time.perf_counter() - t0
    mlc_times, hand_times = [], []
    mark = {"t": time.perf_counter(), "c": time.process_time()}

    def progress(epoch, total_epochs, info):
        if info is None:  # the call before the first epoch (the bar's "compiling"): no epoch ended
            mark["t"], mark["c"] = time.perf_counter(), time.process_time()
            return
        mlc_times.append((time.perf_counter() - mark["t"], time.process_time() - mark["c"]))
        if interleave:
            hand_times.append(hand.epoch())
        mark["t"], mark["c"] = time.perf_counter(), time.process_time()

    graph, _ = optimize(lower(r, prep["state"]))  # the graph `mlc run` trains
    verify(graph)
    result = train(r, graph, prep["state"], prep["encoded"], seed, progress)
    assert result.epochs_run == total, "early stopping was not disabled"
    if not interleave:
        hand_times = [hand.epoch() for _ in range(total)]

    rows = epochs * hand.steps * hand.batch
    assert result.steps == total * hand.steps, "mlc and the hand-written loop take different numbers of steps"

    def side(times, first_extra, final_loss):
        wall = sum(t for t, _ in times[warmup:])
        cpu = sum(c for _, c in times[warmup:])
        return {"seconds": wall, "rows_per_s": rows / wall, "rows_per_cpu_s": rows / cpu,
                "first_epochs": first_extra + sum(t for t, _ in times[:warmup]), "final_loss": final_loss}

    return {"mlc": side(mlc_times, 0.0, result.history[-1]["train_loss"]),
            "hand": side(hand_times, hand_setup, hand.train_loss),
            "steps": hand.steps, "batch": hand.batch}


def validation_ms(prep: dict, calls: int = 20) -> tuple[float, float]:
    """Milliseconds per epoch each side spends on validation (both are inside the timed epochs):
    mlc's Evaluator + output_metrics, as `train` calls them, and the hand-written eval_loss."""
    r = prep["resolved"]
    graph = lower(r, prep["state"])
    evaluate = Evaluator(graph, [w for w in graph.outputs if w.startswith("pred.")])
    params = jax_backend.init_params(graph, jax.random.PRNGKey(0))
    inputs, targets = prep["encoded"]["validation"]
    hand = HandWritten(prep, 1, 0)
    out = []
    for fn in (lambda: output_metrics(r, evaluate(params, inputs), targets, prep["state"]),
               lambda: float(hand.eval_loss(hand.params, hand.x_val, hand.y_val))):
        fn()  # compile
        t = time.perf_counter()
        for _ in range(calls):
            fn()
        out.append((time.perf_counter() - t) / calls * 1000)
    return out[0], out[1]


def measure(prep: dict, warmup: int, epochs: int, repeats: int, interleave: bool) -> tuple[dict, dict, dict]:
    """K paired measurements; the median of each quantity per side."""
    runs = [measure_once(prep, warmup, epochs, seed, interleave) for seed in range(repeats)]

    def summary(name):
        rs = [run[name] for run in runs]
        med = lambda k: statistics.median(x[k] for x in rs)  # noqa: E731
        return {k: med(k) for k in rs[0]} | {"all_rows_per_s": [x["rows_per_s"] for x in rs]}
    ratios = [run["mlc"]["rows_per_s"] / run["hand"]["rows_per_s"] for run in runs]
    return summary("mlc"), summary("hand"), {"steps": runs[0]["steps"], "batch": runs[0]["batch"],
                                             "ratios": ratios}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("programs", nargs="*", type=Path, default=DEFAULT_PROGRAMS, metavar="FILE.dml")
    ap.add_argument("--epochs", type=int, default=10, help="timed epochs per measurement [10]")
    ap.add_argument("--warmup", type=int, default=1, help="untimed epochs first (compilation) [1]")
    ap.add_argument("--repeats", type=int, default=3, help="paired measurements; medians are reported [3]")
    ap.add_argument("--sequential", action="store_true",
                    help="run the hand-written loop after mlc instead of one epoch of each in turn")
    args = ap.parse_args(argv)
    if args.epochs < 1 or args.warmup < 1 or args.repeats < 1:
        ap.error("--epochs, --warmup and --repeats must be at least 1")

    t0 = time.perf_counter()
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"jax {jax.__version__} on {jax.devices()[0].platform}; {args.warmup} warmup + {args.epochs} timed "
          f"epochs, {'sequential' if args.sequential else 'interleaved'}; median of {args.repeats} repeats; "
          f"load average at the start {load}", flush=True)
    rows = []
    for path in args.programs:
        prep = prepare(path)
        mlc, hand, info = measure(prep, args.warmup, args.epochs, args.repeats, not args.sequential)
        rows.append((path.name, len(prep["encoded"]["train"][0]["x_num"]), mlc, hand, info))
        val_mlc, val_hand = validation_ms(prep)
        print(f"{path.name}: rows/s mlc {[round(x) for x in mlc['all_rows_per_s']]}, "
              f"hand-written {[round(x) for x in hand['all_rows_per_s']]}, "
              f"ratio {[round(x, 2) for x in info['ratios']]}; validation per epoch: mlc {val_mlc:.1f} ms "
              f"({len(prep['encoded']['validation'][0]['x_num'])} rows), hand-written {val_hand:.1f} ms; "
              f"epoch: mlc {1000 * mlc['seconds'] / args.epochs:.0f} ms, "
              f"hand-written {1000 * hand['seconds'] / args.epochs:.0f} ms", flush=True)

    print()
    print("| program | train rows | batch x steps/epoch | mlc rows/s | hand-written rows/s | **ratio mlc/hand** "
          "| ratio per CPU-second | mlc timed s | hand timed s | mlc first epoch s | hand first epoch s "
          "| mlc final loss | hand final loss |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for name, n, m, h, info in rows:
        print(f"| {name} | {n} | {info['batch']} x {info['steps']} | {m['rows_per_s']:,.0f} "
              f"| {h['rows_per_s']:,.0f} | **{statistics.median(info['ratios']):.2f}x** "
              f"| {m['rows_per_cpu_s'] / h['rows_per_cpu_s']:.2f}x "
              f"| {m['seconds']:.2f} | {h['seconds']:.2f} | {m['first_epochs']:.2f} | {h['first_epochs']:.2f} "
              f"| {m['final_loss']:.4f} | {h['final_loss']:.4f} |")
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"\ntotal wall time {time.perf_counter() - t0:.1f} s; load average at the end {load}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
