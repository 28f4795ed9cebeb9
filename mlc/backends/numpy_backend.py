"""NumPy back end for a few rows on the CPU: the inference graph as a list of numpy calls.

For a request of one row, a jitted XLA program costs more to call than the model's
arithmetic (its arguments are checked and handed over one by one: ~0.3 ms for a 19-input
model), and its first call compiles (~0.5 s) after importing JAX (~1 s). On the CPU, a
loaded model runs up to `MAX_ROWS` rows through this plan instead, and larger batches
through XLA, which fuses and threads (runtime/artifact.py chooses; docs/serving.md).

Each live op is the reference interpreter's rule (mlc/ir/interp.py, the oracle the JAX
back end is tested against), looked up once when the plan is built; the few rules the
interpreter writes as Python loops over rows have vectorized forms here with the same
results. Computation is float32, as in XLA; results agree with it to float32 rounding
(tests/test_numpy_backend.py). Importing this module does not import JAX.
"""
from __future__ import annotations

import contextlib
import functools
import threading

import numpy as np

from mlc.ir import interp
from mlc.ir.graph import Graph, live_ops
from mlc.backends.numpy_layers import Fused, fuse_dense_layers

# Rows up to which this plan beats calling XLA on this 2-core CPU: the plan's cost grows with
# the rows, XLA's call cost does not (benchmarks/predict_speed.py prints the crossover: the
# plan was ahead up to 256 rows on all three models measured, behind from 1024).
MAX_ROWS = 128


def _embed_bag(table, ids, weights, *, mode):
    """interp._embed_bag without its loop over bags (as the JAX back end computes it)."""
    summed = np.einsum("bl,bld->bd", weights, table[ids])
    if mode == "mean":
        total = weights.sum(-1, keepdims=True)
        summed = summed / np.where(total > 0, total, 1.0)
    return summed


_ONE_HOT: dict[tuple, np.ndarray] = {}


def _one_hot(idx, *, depth, dtype):
    """interp._one_hot as one row lookup: an identity table with a zero row below it, which
    every index outside [0, depth) reads (clipped to it: negative int32 indices are large
    as uint32)."""
    if idx.dtype != np.int32:
        return interp._one_hot(idx, depth=depth, dtype=dtype)
    table = _ONE_HOT.get((depth, dtype))
    if table is None:
        table = _ONE_HOT[(depth, dtype)] = np.eye(depth + 1, depth, dtype=dtype)
    return table.take(idx.view(np.uint32), axis=0, mode="clip")


_VECTORIZED = {"embed_bag": _embed_bag, "one_hot": _one_hot}


class _OneBlasThread:
    """numpy's BLAS on one thread while plans run. A multithreaded BLAS splits even a
    64 x 256 x 256 product across threads, and on a busy machine waiting for them costs 16 ms
    instead of 0.3 ms (measured here under load). threadpoolctl finds the BLAS numpy loaded
    (OpenBLAS, MKL or BLIS); the first plan to enter saves its thread count, the last to
    leave restores it, so concurrent plans never leave the process on one thread.

    threadpoolctl lets one Python thread only change OpenBLAS's thread count (the first that
    did, while it lives: the pool is process-wide) and ignores the others: a service should
    run its plans on one thread (`mlc serve` warms up and predicts on its predict thread).
    Making every change on a thread of ours instead was tried: handing each change to it cost
    about 0.25 ms a plan here (a 16-row plan took 0.69 ms against 0.21 ms)."""

    def __init__(self):
        self.lock = threading.Lock()
        self.inside = 0
        self.saved: list = []
        self.libraries = None

    def __enter__(self):
        with self.lock:
            if self.libraries is None:
                from threadpoolctl import ThreadpoolController
                self.libraries = ThreadpoolController().select(user_api="blas").lib_controllers
            if self.inside == 0:
                self.saved = [(lib, lib.num_threads) for lib in self.libraries]
                for lib, threads in self.saved:
                    if threads != 1:
                        lib.set_num_threads(1)
            self.inside += 1

    def __exit__(self, *exc):
        with self.lock:
            self.inside -= 1
            if self.inside == 0:
                for lib, threads in self.saved:
                    if threads != 1:
                        lib.set_num_threads(threads)


_ONE_BLAS_THREAD = _OneBlasThread()

# OpenBLAS runs a product of m x k by k x n on one thread while m * k * n stays under this
# (65536 x GEMM_MULTITHREAD_THRESHOLD 4, interface/gemm.c); below it, changing the thread
# count only costs: for one row of the 19-input churn model, p50 92 us without the change
# against 138 us with it on an idle machine, and p99 0.3 ms against 4.5 ms beside two busy
# processes; from 16 rows the change wins (p99 4.6 ms against 16 ms under that load).
BLAS_ONE_THREAD_MNK = 65536 * 4
# ops whose rules call BLAS on products of sizes the plan cannot bound (activations by activations)
_BLAS_OPS = {"matmul", "conv1d", "attention"}


class Plan:
    """The ops the wanted outputs need, in order, each bound to its numpy rule.

    `run(inputs)` takes the encoded arrays (runtime/preprocess.py's names) and returns
    {wanted value: float32 array}; inputs the wanted outputs do not need may be left out."""

    def __init__(self, graph: Graph, params: dict[str, np.ndarray], wanted: list[str]):
        self.wanted = {w: graph.outputs[w] for w in wanted}
        self.inputs = {name: (np.int32 if t.dtype == "i32" else np.float32) for name, t in graph.inputs.items()}
        self.values: dict[str, np.ndarray] = {}  # parameters and constants, cast once
        for name, p in graph.params.items():
            if name in params:
                self.values[name] = np.asarray(params[name], np.int32 if p.type.dtype == "i32" else np.float32)
        alias: dict[str, str] = {}  # dropout in inference: the op's result is its argument
        self.steps: list[tuple] = []
        ops = fuse_dense_layers(live_ops(graph, wanted), self.values, graph, set(self.wanted.values()))
        fused = [op for op in ops if isinstance(op, Fused)]
        unbounded = any(not isinstance(op, Fused) and op.opcode in _BLAS_OPS for op in ops)
        for op in ops:
            if isinstance(op, Fused):  # a dense layer as one step (mlc/backends/numpy_layers.py)
                self.steps.append((op.rule, tuple(alias.get(a, a) for a in op.args), op.result))
            elif op.opcode == "const":
                self.values[op.result] = interp.eval_op(op, [])
            elif op.opcode == "dropout":
                alias[op.result] = alias.get(op.args[0], op.args[0])
            elif op.opcode in _VECTORIZED or op.opcode in interp.IMPLS:
                rule = _VECTORIZED.get(op.opcode) or interp.IMPLS[op.opcode]
                attrs = dict(op.attrs, **({"dtype": np.float32} if op.opcode in interp._NEEDS_DTYPE else {}))
                args = tuple(alias.get(a, a) for a in op.args)
                self.steps.append((functools.partial(rule, **attrs) if attrs else rule, args, op.result))
            else:
                raise interp.IRError(f"%{op.result}: the numpy back end has no rule for `{op.opcode}`")
        self.wanted = {w: alias.get(v, v) for w, v in self.wanted.items()}
        # up to these rows no product is large enough for OpenBLAS to use threads: leave it be
        largest = [op.rule.product[0] * op.rule.product[1] for op in fused]
        self.one_thread_rows = 0 if unbounded else BLAS_ONE_THREAD_MNK // max(largest, default=1)
        self.input_types = [(name, np.dtype(t)) for name, t in self.inputs.items()]

    def run(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        env = self.values.copy()
        rows = 0
        for name, dtype in self.input_types:
            v = inputs.get(name)
            if v is not None:
                env[name] = v if type(v) is np.ndarray and v.dtype is dtype else np.asarray(v, dtype)
                rows = len(v)
        with _ONE_BLAS_THREAD if rows > self.one_thread_rows else contextlib.nullcontext(), \
                np.errstate(all="ignore"):  # as XLA: an overflow gives inf, checked after decoding
            for rule, args, result in self.steps:
                out = rule(*[env[a] for a in args])
                if out.dtype == np.float64:  # a float64 constant inside a rule: back to float32, as XLA
                    out = out.astype(np.float32)
                env[result] = out
        return {w: env[v] for w, v in self.wanted.items()}
