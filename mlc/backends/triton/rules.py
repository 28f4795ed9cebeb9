"""Each IR op's forward rule and its derivative, side by side (micrograd style).

A rule turns an op into Triton source on register tiles. Values inside a kernel
are tiles `[BLOCK_R, BC]` (a row-indexed value `[B, w]`, or `[B]` as width 1),
columns `[1, BC]` (a parameter `[w]` broadcast over the rows), 0-d scalars, or
tables (a parameter read only through `gather`, never loaded whole). Padded
columns and rows hold garbage: every reduction masks with `tl.where` (never a
multiply, so a NaN in the padding cannot leak), and every store is masked.

`fwd(E, op, args, out) -> expression` gives the op's value; `bwd(E, op, args,
out, g, need) -> [contribution per argument]` gives each argument's share of
the gradient from the output's gradient `g`, or None where an argument needs
none. A contribution is an expression shaped like the output unless the rule
says otherwise with `(expr, kind, width)`; the emitter (tile.py) reduces it to
the argument's shape (a broadcast bias sums over the rows, and so on).

The elementwise table is the whole story for most ops: one line forward, one
line backward. Row-wise ops (softmax, layernorm, the losses) keep the
temporaries their backward needs in `E.saved[op.result]`; the backward kernel
recomputes the forward in registers first, so they are in scope.
"""
from __future__ import annotations

import zlib

from .spec import Unsupported, flit

SQRT1_2 = "0.7071067811865476"  # 1/sqrt(2)
INV_SQRT_2PI = "0.3989422804014327"  # 1/sqrt(2*pi)

# opcode: (forward y = f(x), backward dx = g * f'(x)); {x} input, {y} output, {g} output gradient
UNARY = {
    "neg":     ("-{x}",                                         "-{g}"),
    "exp":     ("tl.exp({x})",                                  "{g} * {y}"),
    "log":     ("tl.log({x})",                                  "{g} / {x}"),
    "relu":    ("tl.maximum({x}, 0.0)",                         "tl.where({x} > 0.0, {g}, 0.0)"),
    "sigmoid": ("1.0 / (1.0 + tl.exp(-{x}))",                   "{g} * {y} * (1.0 - {y})"),
    "tanh":    ("2.0 / (1.0 + tl.exp(-2.0 * {x})) - 1.0",       "{g} * (1.0 - {y} * {y})"),
    "silu":    ("{x} / (1.0 + tl.exp(-{x}))",                   "{g} / (1.0 + tl.exp(-{x})) * (1.0 + {x} - {y})"),
    # gelu(x) = x Phi(x): d/dx = Phi(x) + x phi(x), Phi the normal CDF (erf form), phi its density
    "gelu":    (f"0.5 * {{x}} * (1.0 + tl.erf({{x}} * {SQRT1_2}))",
                f"{{g}} * (0.5 * (1.0 + tl.erf({{x}} * {SQRT1_2}))"
                f" + {{x}} * {INV_SQRT_2PI} * tl.exp(-0.5 * {{x}} * {{x}}))"),
    "scale":   ("{x} * {factor}",                               "{g} * {factor}"),
}

# opcode: (forward, d/da, d/db) with {a} {b} inputs, {g} output gradient
BINARY = {
    "add": ("{a} + {b}", "{g}",       "{g}"),
    "sub": ("{a} - {b}", "{g}",       "-{g}"),
    "mul": ("{a} * {b}", "{g} * {b}", "{g} * {a}"),
}


def _fmt(template: str, **names) -> str:
    return template.format(**names)


def _attrs(op) -> dict:
    return {k: flit(v) for k, v in op.attrs.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}


# ---- elementwise ------------------------------------------------------------------------
def unary_fwd(E, op, a, out):
    return _fmt(UNARY[op.opcode][0], x=a[0].name, **_attrs(op))


def unary_bwd(E, op, a, out, g, need):
    return [_fmt(UNARY[op.opcode][1], x=a[0].name, y=out.name, g=g, **_attrs(op))]


def binary_fwd(E, op, a, out):
    return _fmt(BINARY[op.opcode][0], a=a[0].name, b=a[1].name)


def binary_bwd(E, op, a, out, g, need):
    _, da, db = BINARY[op.opcode]
    return [_fmt(da, a=a[0].name, b=a[1].name, g=g) if need[0] else None,
            _fmt(db, a=a[0].name, b=a[1].name, g=g) if need[1] else None]


def dropout_salt(op) -> int:
    """A per-op constant mixed into the seed, stable across the forward and backward kernels."""
    return zlib.crc32(f"dropout:{op.result}".encode()) & 0x3FFFFFFF


def dropout_fwd(E, op, a, out):
    rate = float(op.attrs["rate"])
    if not E.train or rate == 0.0:
        return a[0].name
    if out.kind != "tile":
        raise Unsupported(f"%{op.result}: dropout on a {out.kind} value")
    E.uses_seed = True
    offs = E.element_offsets(out.width)
    keep = E.let(f"tl.rand(seed ^ {dropout_salt(op)}, {offs}) >= {flit(rate)}", f"keep{E.ident(op.result)}")
    E.saved[op.result] = {"keep": keep}
    return f"tl.where({keep}, {a[0].name} * {flit(1.0 / (1.0 - rate))}, 0.0)"


def dropout_bwd(E, op, a, out, g, need):
    rate = float(op.attrs["rate"])
    if not E.train or rate == 0.0:
        return [g]
    return [f"tl.where({E.saved[op.result]['keep']}, {g} * {flit(1.0 / (1.0 - rate))}, 0.0)"]


# ---- row-wise reductions: the whole row is one tile --------------------------------------
def softmax_fwd(E, op, a, out):
    x, w = a[0].name, a[0].width
    c, m, cm = E.ix(w)
    mx = E.let(f"tl.max(tl.where({cm}, {x}, float('-inf')), axis=1, keep_dims=True)", "mx")
    e = E.let(f"tl.where({cm}, tl.exp({x} - {mx}), 0.0)", "e")
    return f"{e} / tl.sum({e}, axis=1, keep_dims=True)"


def softmax_bwd(E, op, a, out, g, need):
    c, m, cm = E.ix(a[0].width)
    dot = E.let(f"tl.sum(tl.where({cm}, {g} * {out.name}, 0.0), axis=1, keep_dims=True)", "gy")
    return [f"{out.name} * ({g} - {dot})"]


def layernorm_fwd(E, op, a, out):
    x, gamma, beta = (v.name for v in a)
    w = a[0].width
    c, m, cm = E.ix(w)
    mean = E.let(f"tl.sum(tl.where({cm}, {x}, 0.0), axis=1, keep_dims=True) / {w}", "mean")
    xc = E.let(f"tl.where({cm}, {x} - {mean}, 0.0)", "xc")
    var = E.let(f"tl.sum({xc} * {xc}, axis=1, keep_dims=True) / {w}", "var")
    rstd = E.let(f"1.0 / tl.sqrt({var} + {flit(op.attrs['eps'])})", "rstd")
    xhat = E.let(f"{xc} * {rstd}", "xhat")
    E.saved[op.result] = {"rstd": rstd, "xhat": xhat}
    return f"{xhat} * {gamma} + {beta}"


def layernorm_bwd(E, op, a, out, g, need):
    w = a[0].width
    c, m, cm = E.ix(w)
    s = E.saved[op.result]
    dx = None
    if need[0]:
        dxhat = E.let(f"tl.where({cm}, {g} * {a[1].name}, 0.0)", "dxhat")
        s1 = E.let(f"tl.sum({dxhat}, axis=1, keep_dims=True) / {w}", "s1")
        s2 = E.let(f"tl.sum({dxhat} * {s['xhat']}, axis=1, keep_dims=True) / {w}", "s2")
        dx = f"{s['rstd']} * ({dxhat} - {s1} - {s['xhat']} * {s2})"
    return [dx, f"{g} * {s['xhat']}" if need[1] else None, g if need[2] else None]


def softmax_ce_fwd(E, op, a, out):
    """loss = logsumexp(x) - sum(labels * x), labels = (1-s) one_hot(y) + s/K."""
    x, y, k = a[0].name, a[1].name, a[0].width
    s = float(op.attrs.get("smoothing", 0.0) or 0.0)
    c, m, cm = E.ix(k)
    mx = E.let(f"tl.max(tl.where({cm}, {x}, float('-inf')), axis=1, keep_dims=True)", "mx")
    e = E.let(f"tl.where({cm}, tl.exp({x} - {mx}), 0.0)", "e")
    se = E.let(f"tl.sum({e}, axis=1, keep_dims=True)", "se")
    xy = E.let(f"tl.sum(tl.where({c} == {y}, {x}, 0.0), axis=1, keep_dims=True)", "xy")
    E.saved[op.result] = {"e": e, "se": se}
    loss = f"{mx} + tl.log({se}) - {flit(1.0 - s)} * {xy}"
    if s:
        sx = E.let(f"tl.sum(tl.where({cm}, {x}, 0.0), axis=1, keep_dims=True)", "sx")
        loss += f" - {flit(s / k)} * {sx}"
    return loss


def softmax_ce_bwd(E, op, a, out, g, need):
    """d loss / d x = softmax(x) - labels: computed from the forward's own temporaries."""
    k = a[0].width
    s = float(op.attrs.get("smoothing", 0.0) or 0.0)
    c, m, cm = E.ix(k)
    sv = E.saved[op.result]
    labels = f"tl.where({c} == {a[1].name}, {flit(1.0 - s + s / k)}, {flit(s / k)})"
    return [(f"{g} * ({sv['e']} / {sv['se']} - {labels})", "tile", k), None]


def _first_col(E, v):
    """p[:, 0] of a [B, w] value, as [BLOCK_R, 1] (the per-row losses read column 0)."""
    if v.width == 1:
        return v.name
    c, m, cm = E.ix(v.width)
    return E.let(f"tl.sum(tl.where({c} == 0, {v.name}, 0.0), axis=1, keep_dims=True)", "p0")


def _to_first_col(E, v, gp):
    if v.width == 1:
        return gp
    c, m, cm = E.ix(v.width)
    return (f"tl.where({c} == 0, {gp}, 0.0)", "tile", v.width)


def bce_fwd(E, op, a, out):
    """max(p, 0) - p*y + log(1 + exp(-|p|)): sigmoid cross-entropy, stable for large |p|."""
    p = _first_col(E, a[0])
    E.saved[op.result] = {"p": p}
    return f"tl.maximum({p}, 0.0) - {p} * {a[1].name} + tl.log(1.0 + tl.exp(-tl.abs({p})))"


def bce_bwd(E, op, a, out, g, need):
    p, y = E.saved[op.result]["p"], a[1].name
    dp = f"{g} * (1.0 / (1.0 + tl.exp(-{p})) - {y})"
    return [_to_first_col(E, a[0], dp) if need[0] else None, f"-{g} * {p}" if need[1] else None]


def _diff(E, op, a):
    p = _first_col(E, a[0])
    d = E.let(f"{p} - {a[1].name}", "err")
    E.saved[op.result] = {"d": d}
    return d


def squared_error_fwd(E, op, a, out):
    d = _diff(E, op, a)
    return f"{d} * {d}"


def squared_error_bwd(E, op, a, out, g, need):
    dp = f"2.0 * {g} * {E.saved[op.result]['d']}"
    return [_to_first_col(E, a[0], dp) if need[0] else None, f"-({dp})" if need[1] else None]


def abs_error_fwd(E, op, a, out):
    return f"tl.abs({_diff(E, op, a)})"


def abs_error_bwd(E, op, a, out, g, need):
    d = E.saved[op.result]["d"]
    dp = f"tl.where({d} > 0.0, {g}, tl.where({d} < 0.0, -{g}, 0.0))"
    return [_to_first_col(E, a[0], dp) if need[0] else None, f"-({dp})" if need[1] else None]


def huber_fwd(E, op, a, out):
    """optax.huber_loss: 0.5 q^2 + delta (|d| - q), q = min(|d|, delta)."""
    d, delta = _diff(E, op, a), flit(op.attrs["delta"])
    q = E.let(f"tl.minimum(tl.abs({d}), {delta})", "q")
    return f"0.5 * {q} * {q} + {delta} * (tl.abs({d}) - {q})"


def huber_bwd(E, op, a, out, g, need):
    d, delta = E.saved[op.result]["d"], flit(op.attrs["delta"])
    dp = f"{g} * tl.minimum(tl.maximum({d}, -{delta}), {delta})"
    return [_to_first_col(E, a[0], dp) if need[0] else None, f"-({dp})" if need[1] else None]


def mean_fwd(E, op, a, out):
    """This program's share of the mean; the emitter adds the shares with an atomic."""
    return f"{E.total(a[0])} / {E.count(a[0])}"


def mean_bwd(E, op, a, out, g, need):
    v = a[0]
    if v.kind == "scalar":
        return [g]
    mask = E.mask(v)
    return [(f"tl.where({mask}, {g} / {E.count(v)}, 0.0)", v.kind, v.width)]


# ---- gathers: rows assembled from tables, indices and other tensors ----------------------
def one_hot_fwd(E, op, a, out):
    c, m, cm = E.ix(out.width)
    return f"tl.where({c} == {a[0].name}, 1.0, 0.0)"


def one_hot_bwd(E, op, a, out, g, need):
    return [None]


def _row_index(E, op, idx: str) -> tuple[str, str]:
    """(row, in range) for a gather index, as jnp.take: negative indices count from the end;
    an index out of range reads a NaN row and gets no gradient."""
    n = E.types[op.args[0]].shape[0]
    row = E.let(f"tl.where({idx} < 0, {idx} + {n}, {idx})", "row")
    ok = E.let(f"({row} >= 0) & ({row} < {n})", "ok")
    return row, ok


def gather_fwd(E, op, a, out):
    table, w = a[0], out.width
    row, ok = _row_index(E, op, a[1].name)
    c, m, _ = E.ix(w)
    return f"tl.load({table.name} + {row} * {w} + {c}, mask={m} & {ok}, other=float('nan')).to(tl.float32)"


def gather_bwd(E, op, a, out, g, need):
    """Scatter-add: rows that share an index add into the same table row."""
    d = E.grad_ptr(op.args[0])
    if d is not None:
        row, ok = _row_index(E, op, a[1].name)
        c, m, _ = E.ix(out.width)
        E.s(f"tl.atomic_add({d} + {row} * {out.width} + {c}, {g}, mask={m} & {ok})")
    return [None, None]


def concat_pieces(E, op):
    """(arg, column offset, width) for each piece of a concat along the last axis."""
    if op.attrs.get("axis") not in (1, -1) or len(op.type.shape) != 2:
        raise Unsupported(f"%{op.result}: concat along axis {op.attrs.get('axis')} of {op.type}")
    off, pieces = 0, []
    for arg in op.args:
        w = E.types[arg].shape[-1]
        pieces.append((arg, off, w))
        off += w
    return pieces


def concat_fwd(E, op, a, out):
    """Each piece evaluated at the output's columns, shifted; pieces are disjoint, so they add.
    A piece must be a leaf: a kernel input, a one_hot or a gather (computable at any column)."""
    W = out.width
    c, m, cm = E.ix(W)
    terms = []
    for arg, off, w in concat_pieces(E, op):
        rng = E.let(f"({c} >= {off}) & ({c} < {off + w})", "in")
        sh = f"({c} - {off})"
        leaf = E.leaf(arg)
        if leaf[0] == "input":
            terms.append(f"tl.load({leaf[1]} + {E.r} * {w} + {sh}, mask={E.rm} & {rng}, other=0.0).to(tl.float32)")
        elif leaf[0] == "one_hot":
            terms.append(f"tl.where(({sh} == {leaf[1]}) & {rng}, 1.0, 0.0)")
        elif leaf[0] == "gather":
            row, ok = _row_index(E, E.ops[arg], leaf[2])
            terms.append(f"tl.where({rng}, tl.load({leaf[1]} + {row} * {w} + {sh}, mask={E.rm} & {rng} & {ok}, "
                         f"other=float('nan')), 0.0).to(tl.float32)")
        else:
            raise Unsupported(f"%{op.result}: concat piece %{arg} is computed inside the kernel; "
                              f"only inputs, one_hot and gather pieces are assembled in place")
    return " + ".join(f"{t}" for t in terms)


def concat_bwd(E, op, a, out, g, need):
    """Each piece's gradient is its column window of g, written straight to its buffer."""
    c, m, cm = E.ix(out.width)
    for arg, off, w in concat_pieces(E, op):
        rng = f"({c} >= {off}) & ({c} < {off + w})"
        sh = f"({c} - {off})"
        leaf = E.leaf(arg)
        if leaf[0] == "input":
            d = E.grad_ptr(arg)
            if d is not None:
                E.s(f"tl.atomic_add({d} + {E.r} * {w} + {sh}, {g}, mask={E.rm} & {rng})")
        elif leaf[0] == "gather":
            d = E.grad_ptr(leaf[3])
            if d is not None:
                row, ok = _row_index(E, E.ops[arg], leaf[2])
                E.s(f"tl.atomic_add({d} + {row} * {w} + {sh}, {g}, mask={E.rm} & {rng} & {ok})")
    return [None] * len(op.args)


FWD = {
    **{k: unary_fwd for k in UNARY}, **{k: binary_fwd for k in BINARY},
    "dropout": dropout_fwd, "softmax": softmax_fwd, "layernorm": layernorm_fwd,
    "softmax_ce": softmax_ce_fwd, "bce_logits": bce_fwd, "squared_error": squared_error_fwd,
    "abs_error": abs_error_fwd, "huber": huber_fwd, "mean": mean_fwd,
    "one_hot": one_hot_fwd, "gather": gather_fwd, "concat": concat_fwd,
}
BWD = {
    **{k: unary_bwd for k in UNARY}, **{k: binary_bwd for k in BINARY},
    "dropout": dropout_bwd, "softmax": softmax_bwd, "layernorm": layernorm_bwd,
    "softmax_ce": softmax_ce_bwd, "bce_logits": bce_bwd, "squared_error": squared_error_bwd,
    "abs_error": abs_error_bwd, "huber": huber_bwd, "mean": mean_bwd,
    "one_hot": one_hot_bwd, "gather": gather_bwd, "concat": concat_bwd,
}
# arguments that are indices (i32): no gradient flows through them
INDEX_ARGS = {"one_hot": (0,), "gather": (1,), "softmax_ce": (1,)}
