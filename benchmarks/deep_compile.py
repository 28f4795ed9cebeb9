"""Compile time of a deep expert block: N residual layers (layernorm + relu), per stage.

    python benchmarks/deep_compile.py [--depths 25 50 100] [--unrolled] [--width 32]

Each depth runs in its own process (so peak memory is its own) on examples/data/titanic.csv:

    block deep(x, width: int = 32) {
      h = dense(x, width)
      h = h + relu(dense(layernorm(h), width))     # N times
      return h
    }

and times mlc's stages: parse + check + data (`frontend`), lowering to the IR, the IR
passes (fusion planning on its own), finding repeated layers and tracing the training
step to a jaxpr, XLA's compilation of the whole training epoch (the jitted `lax.scan`
over minibatches that `mlc run` compiles; with `epochs = 1` the first epoch is almost
all compilation) and of the evaluator; plus the peak resident memory of the process.

`--unrolled` traces every layer on its own, as mlc did before repeated layers became
a `lax.scan` (`jax_backend.MIN_REPEATS` set out of reach): the numbers before the fix.
`--per-tensor-optimizer` updates each parameter tensor on its own, as mlc did before deep
programs' optimizer ran on one flat vector (`train.FLAT_OPTIMIZER_MIN_TENSORS` out of reach).
Results: benchmarks/RESULTS.md, "Compile time of deep blocks".
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def program(depth: int, width: int) -> str:
    layers = "\n".join("  h = h + relu(dense(layernorm(h), width))" for _ in range(depth))
    data = (ROOT / "examples" / "data" / "titanic.csv").as_posix()
    return f'''data "{data}" split 80/10/10 seed 7
block deep(x, width: int = {width}) {{
  h = dense(x, width)
{layers}
  return h
}}
input  sex             : binary
input  age             : number
input  passenger_class : category
output survived        : binary
combiner deep()
train {{ epochs = 1 }}
'''


def measure(depth: int, width: int, unrolled: bool, per_tensor: bool = False) -> dict:
    """One depth, in this process."""
    import jax

    from mlc.backends import jax_backend
    from mlc.compile import frontend
    from mlc.ir.graph import live_ops
    from mlc.ir.lower import lower
    from mlc.ir.pipeline import optimize
    from mlc.runtime import data as D, preprocess as P
    from mlc.runtime.train import Evaluator, train

    if unrolled:
        jax_backend.MIN_REPEATS = 10**9
    if per_tensor:
        from mlc.runtime import train as T
        T.FLAT_OPTIMIZER_MIN_TENSORS = 10**9
    out = {"depth": depth}
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"deep{depth}.dml"
        path.write_text(program(depth, width))
        t = time.perf_counter()
        fe = frontend(path)
        out["frontend_s"] = time.perf_counter() - t
    r = fe.resolved
    t = time.perf_counter()
    graph = lower(r, fe.state)
    out["lower_s"] = time.perf_counter() - t
    out["ops"] = len(graph.ops)
    t = time.perf_counter()
    graph, log = optimize(graph)
    out["passes_s"] = time.perf_counter() - t
    out["fuse_s"] = next(rec.seconds for rec in log.records if rec.name == "fuse")
    t = time.perf_counter()
    runs = jax_backend.find_runs(live_ops(graph, ["loss"]), graph.params, [graph.outputs["loss"]])
    out["find_runs_s"] = time.perf_counter() - t
    out["scanned_layers"] = sum(run.count - 1 for run in runs)

    tables = {s: D.take(fe.table, fe.splits[s]) for s in ("train", "validation")}
    encoded = {s: (P.encode_inputs(r, fe.state, tables[s], lenient=True), P.encode_targets(r, fe.state, tables[s]))
               for s in tables}
    batch = {k: v[:64] for k, v in {**encoded["train"][0], **encoded["train"][1]}.items()}
    params = jax_backend.init_params(graph, jax.random.PRNGKey(0))
    loss = jax_backend.build(graph, ["loss"])
    t = time.perf_counter()
    jax.make_jaxpr(jax.grad(lambda p: loss(p, batch, jax.random.PRNGKey(1), True)["loss"]))(params)
    out["trace_grad_s"] = time.perf_counter() - t

    result = train(r, graph, fe.state, encoded, seed=0)  # epochs = 1: compile + one epoch
    out["first_epoch_s"] = result.compile_seconds
    evaluate = Evaluator(graph, [w for w in graph.outputs if w.startswith("pred.")])
    t = time.perf_counter()
    evaluate(result.params, encoded["validation"][0])
    out["evaluator_s"] = time.perf_counter() - t
    out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--depths", type=int, nargs="+", default=[25, 50, 100])
    ap.add_argument("--width", type=int, default=32)
    ap.add_argument("--unrolled", action="store_true", help="trace every layer (mlc before the fix)")
    ap.add_argument("--per-tensor-optimizer", action="store_true",
                    help="update each parameter tensor on its own (mlc before the flat optimizer)")
    ap.add_argument("--one", type=int, help=argparse.SUPPRESS)  # internal: measure one depth, print JSON
    args = ap.parse_args()
    if args.one is not None:
        print(json.dumps(measure(args.one, args.width, args.unrolled, args.per_tensor_optimizer)))
        return
    print(f"# {time.strftime('%Y-%m-%d %H:%M:%S %Z')}, {platform.python_version()}, {os.cpu_count()} CPUs, "
          f"load {os.getloadavg()[0]:.1f}, {'unrolled' if args.unrolled else 'repeated layers scanned'}, "
          f"{'per-tensor' if args.per_tensor_optimizer else 'flat (from 64 tensors)'} optimizer")
    cols = ["depth", "ops", "frontend_s", "lower_s", "passes_s", "fuse_s", "find_runs_s", "scanned_layers",
            "trace_grad_s", "first_epoch_s", "evaluator_s", "peak_rss_mb"]
    print("| " + " | ".join(cols) + " |")
    print("|" + "---:|" * len(cols))
    for depth in args.depths:
        cmd = [sys.executable, __file__, "--one", str(depth), "--width", str(args.width)]
        if args.unrolled:
            cmd.append("--unrolled")
        if args.per_tensor_optimizer:
            cmd.append("--per-tensor-optimizer")
        t = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
        if proc.returncode != 0:
            print(f"| {depth} | failed after {time.perf_counter() - t:.0f} s: {proc.stderr.strip()[-300:]} |")
            continue
        row = json.loads(proc.stdout.strip().splitlines()[-1])
        print("| " + " | ".join(f"{row[c]:.3f}" if isinstance(row[c], float) and c.endswith("_s")
                                else f"{row[c]:.0f}" if isinstance(row[c], float) else str(row[c])
                                for c in cols) + " |", flush=True)


if __name__ == "__main__":
    main()
