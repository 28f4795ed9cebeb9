"""JAX back end: turn a graph into a pure function of (params, inputs).

Each IR op maps to jax.numpy here; XLA fuses and compiles the result under
`jax.jit`. Only the ops the requested outputs need are traced.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from mlc.ir.graph import Graph, live_ops


def dropout(x, *, rate, key, train):
    # `rate` is a float, or a traced per-trial array when runtime/tune.py trains trials on a vmapped axis
    if not train or (isinstance(rate, (int, float)) and rate == 0.0):
        return x
    keep = jax.random.bernoulli(key, 1.0 - rate, x.shape)
    return jnp.where(keep, x / (1.0 - rate), 0.0)


def _layernorm(x, g, b, *, eps):
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)
    return (x - mean) * jax.lax.rsqrt(var + eps) * g + b


def _optax():
    # Imported when a loss is traced, not with this module: a service that only predicts
    # (mlc.load) never needs the training side (tests/test_predict_service.py checks it).
    import optax
    return optax


def _softmax_ce(logits, y, *, smoothing):
    optax = _optax()
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
    "bce_logits": lambda logits, y: _optax().sigmoid_binary_cross_entropy(logits[:, 0], y),
    "softmax_ce": _softmax_ce,
    "squared_error": lambda p, y: (p[:, 0] - y) ** 2,
    "abs_error": lambda p, y: jnp.abs(p[:, 0] - y),
    "huber": lambda p, y, *, delta: _optax().huber_loss(p[:, 0], y, delta=delta),
    "mean": jnp.mean,
    "row_sum": lambda x: jnp.sum(x, axis=-1, keepdims=True),
    "row_mean": lambda x: jnp.mean(x, axis=-1, keepdims=True),
    "reshape": lambda x, *, shape: jnp.reshape(x, (x.shape[0],) + tuple(shape)),
    "embed_bag": embed_bag,
    "conv1d": _conv1d,
    "masked_max": _masked_max,
    "masked_mean": _masked_mean,
    "attention": _attention,
    "multi_bce": lambda logits, y: _optax().sigmoid_binary_cross_entropy(logits, y).sum(-1),
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
    """fn(params, inputs, key, train) -> {output: value} for the wanted outputs.

    A run of identical layers (the same ops on the same shapes, each layer feeding the next,
    with its own parameters: `h = h + relu(dense(layernorm(h), w))` written 200 times) is
    traced once as the body of a `lax.scan` over the layers' stacked parameters instead of
    once per layer. The values are the same; XLA's compile time then stays linear in the
    depth (unrolled, its fusion pass copies the whole elementwise residual chain, forward
    and gradient, into every layer's kernels: quadratic, see benchmarks/deep_compile.py)."""
    ops = live_ops(graph, wanted)
    runs = {run.start: run for run in find_runs(ops, graph.params, [graph.outputs[w] for w in wanted])}

    def fn(params, inputs, key=None, train=False):
        env = dict(params)
        env.update(inputs)
        i = 0
        while i < len(ops):
            if i in runs:
                i = runs[i].execute(ops, env, key, train)
                continue
            op = ops[i]
            op_key = jax.random.fold_in(key, i) if key is not None and op.opcode == "dropout" else None
            env[op.result] = apply_op(op, [env[a] for a in op.args], key=op_key, train=train)
            i += 1
        return {w: env[graph.outputs[w]] for w in wanted}

    return fn


MIN_REPEATS = 8  # layers in a run before it is scanned: shallower graphs are traced as they are
MAX_PERIOD = 64  # ops in one repeated layer


class Run:
    """`count` consecutive segments of `period` ops from `start`, each the same ops as the
    one before on its own parameters, reading only its own values, the previous segment's
    (`carried` offsets) and values defined before the run. The first count - 1 segments run
    as one lax.scan; the last is traced as usual, so everything after the run sees its
    values under their own names."""

    def __init__(self, start: int, period: int, count: int, carried: list[int], kinds: list[list[tuple]]):
        self.start, self.period, self.count, self.carried, self.kinds = start, period, count, carried, kinds

    def execute(self, ops, env: dict, key, train: bool) -> int:
        s, p, steps = self.start, self.period, self.count - 1
        slots = [(j, n) for j, ks in enumerate(self.kinds) for n, k in enumerate(ks) if k[0] == "param"]
        stacked = [jnp.stack([jnp.asarray(env[ops[s + t * p + j].args[n]]) for t in range(steps)])
                   for j, n in slots]
        drops = [j for j in range(p) if ops[s + j].opcode == "dropout"]
        # each dropout draws from fold_in(key, its op index), as when traced one op at a time
        index = jnp.asarray([[s + t * p + j for j in drops] for t in range(steps)], jnp.uint32).reshape(steps, -1)
        init = tuple(env[ops[s - p + c].result] for c in self.carried)

        def body(carry, xs):
            weights, idx = xs
            slot = dict(zip(slots, weights))
            local: list = [None] * p
            for j in range(p):
                op = ops[s + j]
                args = []
                for n, kind in enumerate(self.kinds[j]):
                    if kind[0] == "local":
                        args.append(local[kind[1]])
                    elif kind[0] == "carry":
                        args.append(carry[self.carried.index(kind[1])])
                    elif kind[0] == "param":
                        args.append(slot[(j, n)])
                    else:
                        args.append(env[op.args[n]])
                op_key = None
                if key is not None and op.opcode == "dropout":
                    op_key = jax.random.fold_in(key, idx[drops.index(j)])
                local[j] = apply_op(op, args, key=op_key, train=train)
            return tuple(local[c] for c in self.carried), None

        carry, _ = jax.lax.scan(body, init, (stacked, index))
        last = s + (steps - 1) * p
        for c, v in zip(self.carried, carry):
            env[ops[last + c].result] = v
        return s + steps * p


def find_runs(ops: list, params, outputs: list[str]) -> list[Run]:
    """Runs of at least MIN_REPEATS identical segments in `ops` (see Run), not overlapping;
    linear in len(ops) for each period tried.

    Op i + p repeats op i when both have the same opcode, attributes and type, and their
    arguments correspond: the same input, constant or distant value (read by every layer,
    like the block's `x`), parameters of the same type, or values the same distance back
    (less than two periods: the same layer or the one before)."""
    n = len(ops)
    if n < 2 * MIN_REPEATS:
        return []
    index = {op.result: i for i, op in enumerate(ops)}
    base = [(op.opcode, repr(sorted(op.attrs.items())), op.type, len(op.args)) for op in ops]
    users: dict[str, list[int]] = {}
    for i, op in enumerate(ops):
        for a in op.args:
            users.setdefault(a, []).append(i)
    outputs = set(outputs)

    def kind(a: str, i: int, p: int) -> tuple:
        if a in params:
            return ("param", params[a].type)
        k = index.get(a)
        if k is None or ops[k].opcode == "const" or i - k >= 2 * p:
            return ("ext", a)  # an input, a constant, or a value from before the layers
        return ("rel", i - k)

    def same(i: int, p: int) -> bool:
        return base[i] == base[i + p] and all(
            kind(a, i, p) == kind(b, i + p, p) for a, b in zip(ops[i].args, ops[i + p].args))

    def validate(s: int, p: int, m: int) -> Run | None:
        carried: set[int] = set()
        for t in range(m):
            seg = s + t * p
            for j in range(p):
                for a in ops[seg + j].args:
                    what = kind(a, seg + j, p)
                    if what[0] == "param":
                        continue
                    if what[0] == "ext":
                        if a in index and index[a] >= s:
                            return None  # a value of the run itself, read from further than the previous layer
                        continue
                    k = index[a]
                    if k >= seg:
                        continue
                    if k < seg - p:
                        return None  # two layers back
                    carried.add(k - (seg - p))
        for t in range(m - 1):  # only the next segment may read a segment's values
            for j in range(p):
                r = ops[s + t * p + j].result
                if r in outputs or any(not s + t * p <= u < s + (t + 2) * p for u in users.get(r, ())):
                    return None
        for c in carried:  # the values the first segment reads from before the run
            if s - p + c < 0 or ops[s - p + c].type != ops[s + c].type:
                return None
        kinds = []
        for j in range(p):
            ks = []
            for a in ops[s + j].args:
                what = kind(a, s + j, p)
                if what[0] in ("param", "ext"):
                    ks.append((what[0],))
                elif index[a] >= s:
                    ks.append(("local", index[a] - s))
                else:
                    ks.append(("carry", index[a] - (s - p)))
            kinds.append(ks)
        return Run(s, p, m, sorted(carried), kinds)

    candidates = []
    covered = [False] * n  # by a run of a shorter period: a multiple of it adds nothing
    for p in range(1, min(MAX_PERIOD, n // MIN_REPEATS) + 1):
        i = 0
        while i + p < n:
            if covered[i] or not same(i, p):
                i += 1
                continue
            j = i
            while j + p < n and same(j, p):
                j += 1
            # ops i .. j - 1 each match the op p later: segments of p ops from i up to j + p
            for start in range(i, min(i + p, j)):
                m = (j + p - start) // p
                if m < MIN_REPEATS:
                    break
                run = validate(start, p, m)
                if run is not None:
                    candidates.append(run)
                    covered[start:start + m * p] = [True] * (m * p)
                    break
            i = j + 1
    taken = [False] * n
    chosen = []
    for run in sorted(candidates, key=lambda r: (-(r.count * r.period), r.period, r.start)):
        lo, hi = run.start - run.period, run.start + run.count * run.period
        if not any(taken[max(0, lo):hi]):
            chosen.append(run)
            for k in range(max(0, lo), hi):
                taken[k] = True
    return chosen


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
