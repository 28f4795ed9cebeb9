"""JAX back end: turn a graph into a pure function of (params, inputs).

Each IR op maps to jax.numpy here; XLA fuses and compiles the result under
`jax.jit`. Only the ops the requested outputs need are traced.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax

from mlc.ir.graph import Graph, live_ops


def dropout(x, *, rate, key, train):
    if not train or rate == 0.0:
        return x
    keep = jax.random.bernoulli(key, 1.0 - rate, x.shape)
    return jnp.where(keep, x / (1.0 - rate), 0.0)


def _layernorm(x, g, b, *, eps):
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)
    return (x - mean) * jax.lax.rsqrt(var + eps) * g + b


def _softmax_ce(logits, y, *, smoothing):
    k = logits.shape[-1]
    labels = optax.smooth_labels(jax.nn.one_hot(y, k), smoothing) if smoothing else jax.nn.one_hot(y, k)
    return optax.softmax_cross_entropy(logits, labels)


def embed_bag(table, ids, weights, *, mode):
    """Sum (or weighted mean) of table rows per bag; padding slots carry weight 0, and an
    empty bag gives a zero row."""
    summed = jnp.einsum("bl,bld->bd", weights, jnp.take(table, ids, axis=0))
    if mode == "mean":
        total = weights.sum(-1, keepdims=True)
        summed = summed / jnp.where(total > 0, total, 1.0)
    return summed


def _conv1d(x, w):
    # 'same' padding: output position t sees inputs t - (K-1)//2 ... t + K//2.
    return jax.lax.conv_general_dilated(x, w, (1,), "SAME", dimension_numbers=("NWC", "WIO", "NWC"))


def _masked_max(x, mask):
    m = mask[..., None] > 0
    best = jnp.max(jnp.where(m, x, -jnp.inf), axis=1)
    return jnp.where(m.any(axis=1), best, 0.0)


def _masked_mean(x, mask):
    m = mask[..., None]
    return (x * m).sum(1) / jnp.maximum(m.sum(1), 1.0)


def _attention(q, k, v, mask, *, heads):
    b, t, d = q.shape
    split = lambda z: z.reshape(b, t, heads, d // heads)  # noqa: E731
    scores = jnp.einsum("bqhd,bkhd->bhqk", split(q), split(k)) / np.sqrt(d // heads)
    scores = jnp.where(mask[:, None, None, :] > 0, scores, -1e9)
    out = jnp.einsum("bhqk,bkhd->bqhd", jax.nn.softmax(scores, axis=-1), split(v))
    return out.reshape(b, t, d)


IMPLS = {
    "add": lambda a, b: a + b,
    "sub": lambda a, b: a - b,
    "mul": lambda a, b: a * b,
    "neg": lambda a: -a,
    "exp": jnp.exp,
    "log": jnp.log,
    "relu": jax.nn.relu,
    "gelu": lambda x: jax.nn.gelu(x, approximate=False),
    "silu": jax.nn.silu,
    "tanh": jnp.tanh,
    "sigmoid": jax.nn.sigmoid,
    "softmax": lambda x: jax.nn.softmax(x, axis=-1),
    "scale": lambda x, *, factor: x * factor,
    "matmul": jnp.matmul,
    "concat": lambda *xs, axis: jnp.concatenate(xs, axis=axis),
    "gather": lambda table, idx: jnp.take(table, idx, axis=0),
    "one_hot": lambda idx, *, depth: jax.nn.one_hot(idx, depth, dtype=jnp.float32),
    "layernorm": _layernorm,
    "bce_logits": lambda logits, y: optax.sigmoid_binary_cross_entropy(logits[:, 0], y),
    "softmax_ce": _softmax_ce,
    "squared_error": lambda p, y: (p[:, 0] - y) ** 2,
    "abs_error": lambda p, y: jnp.abs(p[:, 0] - y),
    "huber": lambda p, y, *, delta: optax.huber_loss(p[:, 0], y, delta=delta),
    "mean": jnp.mean,
    "row_sum": lambda x: jnp.sum(x, axis=-1, keepdims=True),
    "row_mean": lambda x: jnp.mean(x, axis=-1, keepdims=True),
    "reshape": lambda x, *, shape: jnp.reshape(x, (x.shape[0],) + tuple(shape)),
    "embed_bag": embed_bag,
    "conv1d": _conv1d,
    "masked_max": _masked_max,
    "masked_mean": _masked_mean,
    "attention": _attention,
    "multi_bce": lambda logits, y: optax.sigmoid_binary_cross_entropy(logits, y).sum(-1),
    "vec_squared_error": lambda p, y: ((p - y) ** 2).mean(-1),
    "vec_abs_error": lambda p, y: jnp.abs(p - y).mean(-1),
}
IMPLS["const"] = lambda *, value, dtype="f32": jnp.asarray(value, jnp.int32 if dtype == "i32" else jnp.float32)


def apply_op(op, args: list, *, key=None, train: bool = False):
    """One IR op in jax.numpy; dropout draws its mask from `key` when training."""
    if op.opcode == "dropout":
        return dropout(args[0], rate=op.attrs["rate"], key=key, train=train)
    return IMPLS[op.opcode](*args, **op.attrs)


def build(graph: Graph, wanted: list[str]):
    """fn(params, inputs, key, train) -> {output: value} for the wanted outputs."""
    ops = live_ops(graph, wanted)

    def fn(params, inputs, key=None, train=False):
        env = dict(params)
        env.update(inputs)
        for i, op in enumerate(ops):
            op_key = jax.random.fold_in(key, i) if key is not None and op.opcode == "dropout" else None
            env[op.result] = apply_op(op, [env[a] for a in op.args], key=op_key, train=train)
        return {w: env[graph.outputs[w]] for w in wanted}

    return fn


def init_params(graph: Graph, key) -> dict[str, jax.Array]:
    params = {}
    for i, (name, p) in enumerate(graph.params.items()):
        k = jax.random.fold_in(key, i)
        shape, init = p.type.shape, p.init
        if init["kind"] == "glorot":
            params[name] = jax.nn.initializers.glorot_uniform()(k, shape, jnp.float32)
        elif init["kind"] == "normal":
            params[name] = init["std"] * jax.random.normal(k, shape, jnp.float32)
        elif init["kind"] == "zeros":
            params[name] = jnp.zeros(shape, jnp.float32)
        elif init["kind"] == "ones":
            params[name] = jnp.ones(shape, jnp.float32)
        elif init["kind"] == "const":
            params[name] = jnp.asarray(np.asarray(init["values"], np.float32).reshape(shape))
        else:
            raise ValueError(f"unknown initializer {init['kind']}")
    return params
