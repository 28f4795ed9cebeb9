"""Embedding bag: `out[b] = sum_l w[b,l] * table[ids[b,l]]` (mode 'mean': divided by
`sum_l w[b,l]` when that is > 0), then elementwise ops on the output rows.

The bags are ragged: `ids` and `weights` are `[B, L]` with padding slots of weight 0,
so an empty bag (all weights 0) gives a zero row, and one bag may fill all L slots
while the others hold a few. One program owns one bag: it walks its L slots in
blocks of BLOCK_L (ids and weights loaded together, the rows gathered as a
[BLOCK_L, D] tile), accumulating the weighted sum and the weight total in fp32,
so the cost follows L, never B * L * D in registers. The output row is then a
[1, D] tile, and the group's elementwise ops run on it with tile.py's emitter and
rules (bias add, activation, dropout), as in any row kernel.

Indices follow jnp.take, as the gather kernel does: a negative id counts from the
end of the table; an id out of range reads a NaN row (which poisons its bag, weight
0 or not, as in JAX) and adds nothing to the table's gradient.

Backward (one program per bag, the forward recomputed in registers first):
- the elementwise ops in reverse give g = d out[b] (tile.py's emitter);
- d table: a second walk over the slots scatter-adds `w[b,l] / den * g` into row
  ids[b,l] with atomics (repeated ids, in one bag or across bags, add up);
  den = the weight total for 'mean' when it is > 0, else 1;
- d weights[b,l] = (g . table[ids[b,l]] - [mode mean, total > 0] g . out[b]) / den,
  written by the bag's own program (no atomics). ids get no gradient.
"""
from __future__ import annotations

from mlc.ir.graph import Op, TensorType

from .spec import HEADER, KernelArg, KernelSpec, Unsupported, flit, function_text, ident, pow2
from .tile import Emitter, Val, classify, doc_line, input_args, load_grad, needs_grad, pointer_type, store_input_grads

FAMILY = "embedding_bag"
VARIANTS = ("fwd", "bwd")


def split(ops: list[Op], inputs: list[str]) -> tuple[Op, list[Op]]:
    """(the embed_bag op, the elementwise ops on its rows), or Unsupported with the reason."""
    from mlc.fusion.legality import kind

    bags = [op for op in ops if op.opcode == "embed_bag"]
    if len(bags) != 1:
        raise Unsupported(f"an embedding-bag kernel holds one embed_bag, not {len(bags)}")
    bag, rest = bags[0], [op for op in ops if op.opcode != "embed_bag"]
    for op in rest:
        if kind(op) != "elementwise" or op.type.shape != bag.type.shape:
            raise Unsupported(f"%{op.result} ({op.opcode}, {op.type}) is not an elementwise op on the rows of "
                              f"%{bag.result}; an embedding-bag kernel holds the bag and such ops only")
    table, ids, weights = bag.args
    for v in bag.args:
        if v not in inputs:
            raise Unsupported(f"%{bag.result}: embed_bag reads %{v} from memory (it is computed in the same group)")
    for op in rest:
        if set(op.args) & {table, ids, weights}:
            raise Unsupported(f"%{op.result} reads an operand of %{bag.result}; the bag's operands are "
                              f"walked slot by slot, never held whole")
    return bag, rest


def _block_l(L: int, D: int, block_l: int | None) -> int:
    if block_l is not None:
        return block_l
    return max(1, min(pow2(L), 128, 4096 // pow2(D)))  # a [BLOCK_L, D] gather tile of <= 4096 values


def bag_kernel(name: str, ops: list[Op], inputs: list[str], outputs: list[str], types: dict[str, TensorType], *,
               variant: str = "fwd", wrt: list[str] = (), consts: dict[str, float] | None = None, io: str = "fp32",
               train: bool = True, group: str | None = None, block_l: int | None = None,
               num_warps: int = 4) -> KernelSpec:
    """The embedding-bag kernel for these ops (one embed_bag, then elementwise ops on its rows)."""
    if variant not in VARIANTS:
        raise Unsupported(f"an embedding-bag group has no `{variant}` kernel (it ends in no loss)")
    consts = consts or {}
    ops = list(ops)
    all_types = {**types, **{op.result: op.type for op in ops}}
    bag, rest = split(ops, inputs)
    table, ids, weights = bag.args
    mode = bag.attrs.get("mode")
    if mode not in ("sum", "mean"):
        raise Unsupported(f"%{bag.result}: embed_bag mode {mode!r}")
    tt, it = all_types[table], all_types[ids]
    if len(tt.shape) != 2 or tt.dtype != "f32" or len(it.shape) != 2 or it.shape[0] != "B":
        raise Unsupported(f"%{bag.result}: the bag kernel reads a table [V, D] by ids [B, L], not {tt} by {it}")
    (V, D), L = (int(d) for d in tt.shape), int(it.shape[1])
    for v in list(inputs) + [op.result for op in rest]:
        if v not in (table, ids, weights):
            classify(all_types[v])  # Unsupported for what a row kernel cannot hold
    wrt = [v for v in wrt if v in inputs and v != ids]
    for v in wrt:
        if all_types[v].dtype != "f32":
            raise Unsupported(f"%{v}: no gradient for an {all_types[v].dtype} input")

    E = Emitter(all_types, train=train, has_rows=True)
    fdt = pointer_type(all_types, io)
    args = input_args(E, inputs, consts, all_types, io)
    if variant == "fwd":
        for v in outputs:
            args.append(KernelArg(f"o_{ident(v).lstrip('_')}", fdt(v), "output", v, tuple(all_types[v].shape)))
    else:
        for v in outputs:
            args.append(KernelArg(f"g_{ident(v).lstrip('_')}", fdt(v), "grad_output", v, tuple(all_types[v].shape)))
        for v in wrt:
            atomic = v == table or classify(all_types[v])[0] != "tile"  # shared across bags: added with atomics
            d = f"d_{ident(v).lstrip('_')}"
            args.append(KernelArg(d, "*fp32" if atomic else fdt(v), "grad_input", v, tuple(all_types[v].shape),
                                  zero_init=atomic))
            E.grad_ptrs[v] = d
    params = [a.name for a in args] + ["n_rows"]
    args.append(KernelArg("n_rows", "i32", "size"))

    s = E.s
    s("pid = tl.program_id(0)")
    s(f"{E.r} = tl.zeros((1, 1), dtype=tl.int32) + pid  # this program's bag, as a [1, 1] row index")
    s(f"{E.rm} = {E.r} < n_rows")
    for v in inputs:
        if v in consts:
            E.vals[v] = Val(flit(consts[v]), "scalar")
        elif v not in (table, ids, weights):
            E.vals[v] = E.load(v, E.inputs[v])
    pt, pi, pw = E.inputs[table], E.inputs[ids], E.inputs[weights]
    c, _, cm = E.ix(D)
    out = f"v{ident(bag.result)}"

    def walk(body: list[str], gather: bool = True):
        """A loop over the bag's slots: `row` (the table row), `ok` (a real slot with an id in
        range), `lm` (a real slot), `wt` (its weight, fp32), `e` (the gathered rows, fp32)."""
        s("ls = tl.arange(0, BLOCK_L)[:, None]")
        s(f"for l0 in range(0, {L}, BLOCK_L):")
        lines = ["l = l0 + ls",
                 f"lm = l < {L}",
                 f"idx = tl.load({pi} + pid * {L} + l, mask=lm, other=0)",
                 f"wt = tl.load({pw} + pid * {L} + l, mask=lm, other=0.0).to(tl.float32)",
                 f"row = tl.where(idx < 0, idx + {V}, idx)",
                 f"ok = lm & (row >= 0) & (row < {V})"]
        if gather:  # an id out of range reads NaN (as jnp.take); padding slots are masked where summed
            lines.append(f"e = tl.load({pt} + row * {D} + {c}, mask=ok & {cm}, other=float('nan')).to(tl.float32)")
        for line in lines + body:
            s("    " + line)

    s(f"# %{bag.result} = embed_bag(%{table}, %{ids}, %{weights}) {{mode={mode!r}}}: walk the slots")
    s(f"acc = tl.zeros((1, {pow2(D)}), dtype=tl.float32)")
    s("tot = tl.zeros((1, 1), dtype=tl.float32)")
    walk([f"acc += tl.sum(tl.where(lm & {cm}, wt * e, 0.0), axis=0, keep_dims=True)",
          "tot += tl.sum(wt, axis=0, keep_dims=True)"])
    if mode == "mean":
        s("den = tl.where(tot > 0.0, tot, 1.0)  # an empty bag: a zero row")
        s(f"{out} = acc / den")
    else:
        s(f"{out} = acc")
    E.vals[bag.result] = Val(out, "tile", D)
    E.forward(rest)

    if variant == "fwd":
        s("# outputs")
        for a in args:
            if a.role == "output":
                E.store(E.vals[a.value], a.name)
    else:
        seeds = {a.value: load_grad(E, a, E.vals[a.value]) for a in args if a.role == "grad_output"}
        bag_wrt = [v for v in wrt if v in (table, weights)]
        need = needs_grad(rest, set(wrt) | ({bag.result} if bag_wrt else set()))
        adj = E.backward(rest, seeds, need)
        store_input_grads(E, args, [v for v in wrt if v not in bag_wrt], adj)
        contribs = adj.get(bag.result, [])
        g = None
        if contribs:
            parts = [E.reduce_to(x, E.vals[bag.result], interior=False) for x in contribs]
            g = E.let(" + ".join(parts), f"d{ident(bag.result)}")
        if bag_wrt:
            _bag_backward(E, walk, g, mode, table, weights, bag_wrt, L, D, c, cm, out)

    params += ["BLOCK_L: tl.constexpr"]
    constexprs = {"BLOCK_L": _block_l(L, D, block_l)}
    doc = doc_line(ops, variant)
    source = HEADER + "\n\n" + function_text(name, params, s.text(), doc)
    return KernelSpec(name=name, family=FAMILY, variant=variant, source=source, args=args, constexprs=constexprs,
                      grid=("n_rows",), num_warps=num_warps, group=group, doc=doc,
                      extra={"table": table, "ids": ids, "weights": weights, "mode": mode})


def _bag_backward(E: Emitter, walk, g: str | None, mode: str, table: str, weights: str, bag_wrt: list[str],
                  L: int, D: int, c: str, cm: str, out: str):
    """d table (scatter-add) and d weights from g = d out[b], in one more walk over the slots."""
    s = E.s
    dw_ptr = E.grad_ptrs.get(weights) if weights in bag_wrt else None
    if g is None:  # nothing downstream reads the bag: d table stays zero, d weights is zero
        if dw_ptr is not None:
            s("ls = tl.arange(0, BLOCK_L)[:, None]")
            s(f"for l0 in range(0, {L}, BLOCK_L):")
            s(f"    tl.store({dw_ptr} + pid * {L} + l0 + ls, tl.zeros((BLOCK_L, 1), dtype=tl.float32), "
              f"mask=l0 + ls < {L})")
        return
    s(f"# back through embed_bag: d %{table} scatter-added, d %{weights} per slot")
    den = "den" if mode == "mean" else "1.0"
    body = []
    if table in bag_wrt:
        body.append(f"tl.atomic_add({E.grad_ptrs[table]} + row * {D} + {c}, wt / {den} * {g}, mask=ok & {cm})")
    if dw_ptr is not None:
        if mode == "mean":
            s(f"gout = tl.where(tot > 0.0, tl.sum(tl.where({cm}, {g} * {out}, 0.0), axis=1, keep_dims=True), 0.0)")
        body.append(f"ge = tl.sum(tl.where(lm & {cm}, {g} * e, 0.0), axis=1, keep_dims=True)")
        body.append(f"tl.store({dw_ptr} + pid * {L} + l, " + ("(ge - gout) / den" if mode == "mean" else "ge")
                    + ", mask=lm)")
    walk(body, gather=dw_ptr is not None)
