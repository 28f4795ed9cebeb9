"""A reference interpreter of the graph IR in numpy: the oracle for tests.

Each op's semantics is written out plainly, next to its name, with no fusion and
no tricks, so that a pass or a back end can be checked against it. It follows the
JAX back end's conventions (mlc/backends/jax_backend.py) exactly:

- `gather` wraps negative indices in [-n, 0) and gives NaN rows for indices out of
  range; `one_hot` gives a zero row for any index outside [0, depth).
- losses read column 0 of the prediction (`p[:, 0]`) and give one value per row.
- `dropout` is the identity in eval mode (`train=False`, the default). In train mode
  the random mask must be given: `masks={op_result: keep}` (a boolean array of the
  op's shape); the op then computes `where(keep, x / (1 - rate), 0)`, as the JAX back
  end does. A dropout op with no mask in train mode is an error, never a silent guess.

Computation runs in float32 by default; pass `dtype=np.float64` to run every float
value in float64 (for finite-difference gradient checks).
"""
from __future__ import annotations

import math

import numpy as np

from .graph import Graph, IRError, Op, live_ops

_erf = np.vectorize(math.erf, otypes=[np.float64])


def _sigmoid(x):
    return np.exp(-np.logaddexp(0.0, -x)).astype(x.dtype)


def _log_sigmoid(x):
    return -np.logaddexp(np.zeros((), x.dtype), -x)


def _log_softmax(x):
    shifted = x - x.max(-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(-1, keepdims=True))


def _gelu(x):  # exact (erf) form, as jax.nn.gelu(approximate=False)
    return (0.5 * x * (1.0 + _erf(x / math.sqrt(2.0)))).astype(x.dtype)


def _gather(table, idx):
    n = table.shape[0]
    ok = (idx >= -n) & (idx < n)
    rows = table[np.where(ok, idx, 0)]
    return np.where(ok.reshape(ok.shape + (1,) * (table.ndim - 1)), rows, np.nan).astype(table.dtype)


def _one_hot(idx, *, depth, dtype):
    return (idx[..., None] == np.arange(depth)).astype(dtype)


def _layernorm(x, g, b, *, eps):
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * g + b


def _softmax(x):
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def _softmax_ce(logits, y, *, smoothing, dtype):
    k = logits.shape[-1]
    labels = _one_hot(y, depth=k, dtype=dtype)
    if smoothing:
        labels = labels * (1.0 - smoothing) + smoothing / k
    return -(labels * _log_softmax(logits)).sum(-1)


def _bce_logits(logits, y):
    x = logits[:, 0]
    return -y * _log_sigmoid(x) - (1.0 - y) * _log_sigmoid(-x)


def _huber(p, y, *, delta):
    err = np.abs(p[:, 0] - y)
    quadratic = np.minimum(err, delta)
    return 0.5 * quadratic ** 2 + delta * (err - quadratic)


def _embed_bag(table, ids, weights, *, mode):
    out = np.zeros((ids.shape[0], table.shape[1]), table.dtype)
    for b in range(ids.shape[0]):  # plainly, bag by bag
        total = 0.0
        for i, w in zip(ids[b], weights[b]):
            out[b] += w * table[i]
            total += w
        if mode == "mean" and total > 0:
            out[b] /= total
    return out


def _conv1d(x, w):
    k = w.shape[0]
    left = (k - 1) // 2
    padded = np.pad(x, ((0, 0), (left, k - 1 - left), (0, 0)))
    t = x.shape[1]
    return sum(padded[:, j:j + t, :] @ w[j] for j in range(k))


def _masked_max(x, mask):
    m = mask[..., None] > 0
    best = np.where(m, x, -np.inf).max(axis=1)
    return np.where(m.any(axis=1), best, 0.0)


def _masked_mean(x, mask):
    m = mask[..., None]
    return (x * m).sum(1) / np.maximum(m.sum(1), 1.0)


def _attention(q, k, v, mask, *, heads):
    b, t, d = q.shape
    h = d // heads
    out = np.zeros_like(q)
    for i in range(heads):
        s = slice(i * h, (i + 1) * h)
        scores = q[:, :, s] @ k[:, :, s].transpose(0, 2, 1) / np.sqrt(h)
        scores = np.where(mask[:, None, :] > 0, scores, -1e9)
        out[:, :, s] = _softmax(scores) @ v[:, :, s]
    return out


# opcode -> fn(*args, **attrs); `dtype` (the float dtype in use) is passed to the
# ops that create floats from integers.
IMPLS = {
    "add": lambda a, b: a + b,
    "sub": lambda a, b: a - b,
    "mul": lambda a, b: a * b,
    "neg": lambda a: -a,
    "exp": np.exp,
    "log": np.log,
    "relu": lambda x: np.maximum(x, 0),
    "gelu": _gelu,
    "silu": lambda x: x * _sigmoid(x),
    "tanh": np.tanh,
    "sigmoid": _sigmoid,
    "softmax": _softmax,
    "scale": lambda x, *, factor: x * x.dtype.type(factor),
    "matmul": np.matmul,
    "concat": lambda *xs, axis: np.concatenate(xs, axis=axis),
    "gather": _gather,
    "one_hot": _one_hot,
    "layernorm": _layernorm,
    "bce_logits": _bce_logits,
    "softmax_ce": _softmax_ce,
    "squared_error": lambda p, y: (p[:, 0] - y) ** 2,
    "abs_error": lambda p, y: np.abs(p[:, 0] - y),
    "huber": _huber,
    "mean": lambda x: np.asarray(x.mean(), x.dtype),
    "row_sum": lambda x: x.sum(axis=-1, keepdims=True),
    "row_mean": lambda x: x.mean(axis=-1, keepdims=True),
    "reshape": lambda x, *, shape: x.reshape((x.shape[0],) + tuple(shape)),
    "embed_bag": _embed_bag,
    "conv1d": _conv1d,
    "masked_max": _masked_max,
    "masked_mean": _masked_mean,
    "attention": _attention,
    "multi_bce": lambda logits, y: (-y * _log_sigmoid(logits) - (1.0 - y) * _log_sigmoid(-logits)).sum(-1),
    "vec_squared_error": lambda p, y: ((p - y) ** 2).mean(-1),
    "vec_abs_error": lambda p, y: np.abs(p - y).mean(-1),
}
_NEEDS_DTYPE = {"one_hot", "softmax_ce"}


def eval_op(op: Op, args: list, dtype=np.float32, train: bool = False, mask=None) -> np.ndarray:
    """One op on numpy arguments."""
    if op.opcode == "const":
        np_dtype = np.int32 if op.attrs.get("dtype", "f32") == "i32" else dtype
        return np.asarray(op.attrs["value"], np_dtype)
    if op.opcode == "dropout":
        x = args[0]
        rate = op.attrs["rate"]
        if not train or rate == 0.0:
            return x
        if mask is None:
            raise IRError(f"%{op.result} = dropout: train mode needs a mask (masks={{'{op.result}': keep}})")
        return np.where(mask, x / x.dtype.type(1.0 - rate), x.dtype.type(0)).astype(x.dtype)
    if op.opcode not in IMPLS:
        raise IRError(f"%{op.result}: the interpreter has no rule for `{op.opcode}`")
    extra = {"dtype": dtype} if op.opcode in _NEEDS_DTYPE else {}
    with np.errstate(all="ignore"):
        out = IMPLS[op.opcode](*args, **op.attrs, **extra)
    out = np.asarray(out)
    if out.dtype.kind == "f" and out.dtype != dtype:
        out = out.astype(dtype)
    return out


def _cast(value, type_, dtype):
    a = np.asarray(value)
    if type_.dtype == "i32":
        return a.astype(np.int32)
    return a.astype(dtype)


def run_all(graph: Graph, params: dict, inputs: dict, ops: list[Op] | None = None, *,
            train: bool = False, masks: dict | None = None, dtype=np.float32) -> dict:
    """Every value the ops define (plus params and inputs), by name."""
    env = {}
    for name, p in graph.params.items():
        if name in params:
            env[name] = _cast(params[name], p.type, dtype)
    for name, t in graph.inputs.items():
        if name in inputs:
            env[name] = _cast(inputs[name], t, dtype)
    masks = masks or {}
    for op in graph.ops if ops is None else ops:
        try:
            args = [env[a] for a in op.args]
        except KeyError as e:
            raise IRError(f"%{op.result} = {op.opcode}: no value for %{e.args[0]} (missing param or input?)") from None
        env[op.result] = eval_op(op, args, dtype, train, masks.get(op.result))
    return env


def run_graph(graph: Graph, params: dict, inputs: dict, wanted: list[str] | None = None, *,
              train: bool = False, masks: dict | None = None, dtype=np.float32) -> dict:
    """{output name: numpy array} for the wanted outputs (all outputs by default).

    Only the ops the wanted outputs need run, so inputs they do not need may be left out.
    """
    wanted = list(graph.outputs) if wanted is None else list(wanted)
    env = run_all(graph, params, inputs, live_ops(graph, wanted), train=train, masks=masks, dtype=dtype)
    return {w: env[graph.outputs[w]] for w in wanted}
