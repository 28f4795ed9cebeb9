"""Each fused group as a JAX primitive with a custom VJP: one jitted step, any platform.

`mlc_fused` is one primitive whose parameters name the group (a `GroupPlan`) and
the stage: `fwd` (the group's outputs, plus the matmul product the backward
reads), `bwd` (the gradient of every differentiable input from the outputs'
cotangents) and `fwd_bwd` (a loss group: the loss and its input gradient in one
pass, as in Liger-Kernel). How a stage lowers depends on the platform:

    cuda      the generated Triton kernels, through jax-triton (jax_call.triton_launch)
    cpu       the jax.numpy reference of the group's ops (or, with launcher="interpret",
              the same kernels under Triton's interpreter: how the tests run them)
    others    the jax.numpy reference

`group_function` wraps the stages in `jax.custom_vjp`, so `jax.grad` of a program
built from them calls the generated backward kernels. `build` has the signature
of `jax_backend.build`: the training step and the evaluator take either.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass, field

import jax
import jax.numpy as jnp
import numpy as np
from jax.custom_derivatives import SymbolicZero
from jax.extend.core import Primitive

from mlc.backends.jax_backend import apply_op
from mlc.ir.graph import Graph, live_ops

from . import jax_call
from .catalog import shape_of
from .matmul import matmul_backward_launches
from .rules import dropout_salt
from .spec import KernelSpec

LAUNCHERS = ("triton", "interpret")
_DTYPES = {"*fp32": jnp.float32, "*bf16": jnp.bfloat16, "*i32": jnp.int32, "f32": jnp.float32, "i32": jnp.int32}


@dataclass(eq=False)  # hashed by identity: a primitive parameter
class GroupPlan:
    name: str
    ops: list
    inputs: list[str]  # operand values, in the fwd kernel's order
    outputs: list[str]  # the group's outputs (what the program reads)
    wrt: list[str]  # differentiable inputs (float params and activations)
    types: dict  # value -> IR type, for every value the group touches
    train: bool
    fwd: KernelSpec
    bwd: KernelSpec | None = None  # tile bwd, or the matmul epilogue's bwd
    fwd_bwd: KernelSpec | None = None  # loss groups
    matmul: KernelSpec | None = None  # the strided matmul, for matmul groups' dX and dW
    compute_capability: int | None = None  # cuda target when lowering without a GPU
    loss: str | None = None  # the scalar output that fwd_bwd differentiates
    saved: list[str] = field(default_factory=list)  # fwd outputs beyond `outputs` (the matmul product)

    @property
    def fwd_values(self) -> list[str]:
        return [a.value for a in self.fwd.args if a.role == "output"]

    @property
    def is_matmul(self) -> bool:
        return "x" in self.fwd.extra

    def rows(self, arrays) -> int:
        for v, x in zip(self.inputs, arrays):
            if self.types[v].shape[:1] == ("B",):
                return x.shape[0]  # symbolic under jax.export; the kernels need it concrete
        return 1

    def aval(self, value: str, rows: int):
        t = self.types[value]
        return jax.core.ShapedArray(shape_of(t.shape, rows), _DTYPES[t.dtype])

    def stage_outputs(self, stage: str) -> list[str]:
        """The values a stage returns (for bwd: the gradients of `wrt`)."""
        if stage == "fwd":
            return self.fwd_values
        if stage == "fwd_bwd":
            return [a.value for a in self.fwd_bwd.args if a.role == "output"] + self.wrt
        return self.wrt


# ---- the primitive ------------------------------------------------------------------
fused_p = Primitive("mlc_fused")
fused_p.multiple_results = True


def _abstract_eval(seed, *operands, plan: GroupPlan, stage: str, launcher: str):
    rows = plan.rows(operands[:len(plan.inputs)])
    return [plan.aval(v, rows) for v in plan.stage_outputs(stage)]


fused_p.def_abstract_eval(_abstract_eval)
fused_p.def_impl(lambda *args, **params: jax.jit(functools.partial(fused_p.bind, **params))(*args))


def _split_operands(plan: GroupPlan, stage: str, operands):
    n = len(plan.inputs)
    inputs = dict(zip(plan.inputs, operands[:n]))
    if stage != "bwd":
        return inputs, {}, {}
    saved = dict(zip(plan.saved, operands[n:n + len(plan.saved)]))
    cts = dict(zip(plan.outputs, operands[n + len(plan.saved):]))
    return inputs, saved, cts


# ---- the jax.numpy reference --------------------------------------------------------
def _reference_env(plan: GroupPlan, seed, inputs: dict) -> dict:
    """Every value of the group; values already in `inputs` (a saved product) are not recomputed."""
    env = dict(inputs)
    for op in plan.ops:
        if op.result in env:
            continue
        # the dropout mask follows the seed and the op, as the kernels' tl.rand(seed ^ salt) does
        key = jax.random.fold_in(jax.random.PRNGKey(seed), dropout_salt(op)) if op.opcode == "dropout" else None
        env[op.result] = apply_op(op, [env[a] for a in op.args], key=key, train=plan.train)
    return env


def _reference_vjp(plan: GroupPlan, seed, inputs: dict, cts: dict, saved: dict | None = None) -> list:
    """d outputs / d wrt, pulled back from `cts`. With the matmul product saved, as the
    kernels do: the epilogue's pullback gives dZ, then dW = X^T dZ and dX = dZ W^T
    (no second forward matmul)."""
    wrt = list(plan.wrt)
    if saved:
        x, w, z = (plan.fwd.extra[k] for k in ("x", "w", "z"))
        wrt = [z] + [v for v in plan.wrt if v not in (x, w)]
        inputs = {**inputs, **saved}

    def outputs_of(*wrt_values):
        env = _reference_env(plan, seed, {**inputs, **dict(zip(wrt, wrt_values))})
        return [env[v] for v in plan.outputs]

    _, pullback = jax.vjp(outputs_of, *[inputs[v] for v in wrt])
    grads = dict(zip(wrt, pullback([cts[v] for v in plan.outputs])))
    if saved:
        dz = grads.pop(wrt[0])
        grads[w] = inputs[x].T @ dz
        grads[x] = dz @ inputs[w].T
    return [grads[v] for v in plan.wrt]


def reference(seed, *operands, plan: GroupPlan, stage: str):
    inputs, saved, cts = _split_operands(plan, stage, operands)
    if stage == "bwd":
        return _reference_vjp(plan, seed, inputs, cts, saved)
    env = _reference_env(plan, seed, inputs)
    if stage == "fwd":
        return [env[v] for v in plan.fwd_values]
    outs = [env[a.value] for a in plan.fwd_bwd.args if a.role == "output"]
    ones = {v: (jnp.ones_like(env[v]) if v == plan.loss else jnp.zeros_like(env[v])) for v in plan.outputs}
    return outs + _reference_vjp(plan, seed, inputs, ones)


# ---- the generated kernels ------------------------------------------------------------
def _launch_spec(launch, spec: KernelSpec, plan: GroupPlan, values: dict, rows: int, seed, **scalars) -> dict:
    """One kernel: arguments by role, from IR values; returns (role, value) -> array."""
    call, shapes = {}, {}
    for a in spec.args:
        if a.role in ("input", "grad_output"):
            call[a.name] = values[a.value] if a.role == "input" else values[("ct", a.value)]
        elif a.role in ("output", "grad_input"):
            shapes[a.name] = jax.ShapeDtypeStruct(shape_of(a.shape, rows), _DTYPES[a.type])
        elif a.role == "seed":
            call["seed_ptr"] = jnp.reshape(seed, (1,)).astype(jnp.int32)
        elif a.name == "n_rows":
            call[a.name] = rows
        else:
            call[a.name] = scalars[a.name]
    out = launch(spec, call, shapes)
    return {(a.role, a.value): out[a.name] for a in spec.args if a.role in ("output", "grad_input")}


def kernels(seed, *operands, plan: GroupPlan, stage: str, launch):
    inputs, saved, cts = _split_operands(plan, stage, operands)
    rows = plan.rows(operands[:len(plan.inputs)])
    values = {**inputs, **saved, **{("ct", v): c for v, c in cts.items()}}
    if stage in ("fwd", "fwd_bwd"):
        spec = plan.fwd if stage == "fwd" else plan.fwd_bwd
        got = _launch_spec(launch, spec, plan, values, rows, seed, dloss=1.0)
        outs = [got[("output", a.value)] for a in spec.args if a.role == "output"]
        return outs + ([got[("grad_input", v)] for v in plan.wrt] if stage == "fwd_bwd" else [])
    grads: dict = {}

    def add(v, g):
        grads[v] = grads[v] + g if v in grads else g

    if plan.bwd is not None:
        for (_, v), g in _launch_spec(launch, plan.bwd, plan, values, rows, seed).items():
            add(v, g)
    if plan.is_matmul:
        ex = plan.fwd.extra
        x, w, z = ex["x"], ex["w"], ex["z"]
        dz = grads.pop(z) if plan.bwd is not None else cts[z]
        bufs = {"dZ": dz, "W": inputs[w], "X": inputs[x]}
        for which, shape in (("dW", (ex["K"], ex["N"])), ("dX", (rows, ex["K"]))):
            if (w if which == "dW" else x) not in plan.wrt:
                continue
            launch_args = matmul_backward_launches(rows, ex["K"], ex["N"])[which]
            call = {k: (bufs[v] if k in ("pa", "pb") else v) for k, v in launch_args.items() if k != "c"}
            out = launch(plan.matmul, call, {"c": jax.ShapeDtypeStruct(shape, jnp.float32)})["c"]
            add(w if which == "dW" else x, out)
    return [grads[v] if v in grads else jnp.zeros_like(inputs[v]) for v in plan.wrt]


# ---- lowering rules -----------------------------------------------------------------
jax_call.register_lowerings(fused_p, kernels, reference, "a fused group")


# ---- the custom VJP -------------------------------------------------------------------
def group_function(plan: GroupPlan, launcher: str = "triton"):
    """f(seed, *inputs) -> the group's outputs, differentiable through its kernels."""
    bind = functools.partial(fused_p.bind, plan=plan, launcher=launcher)
    index = {v: i for i, v in enumerate(plan.fwd_values)}

    def pick(fwd_outs):
        return tuple(fwd_outs[index[v]] for v in plan.outputs)

    @jax.custom_vjp
    def f(seed, *inputs):
        return pick(bind(seed, *inputs, stage="fwd"))

    def f_fwd(seed, *inputs):
        seed, inputs = seed.value, [p.value for p in inputs]
        if plan.fwd_bwd is not None:
            outs = bind(seed, *inputs, stage="fwd_bwd")
            by_value = dict(zip(plan.stage_outputs("fwd_bwd"), outs))
            return tuple(by_value[v] for v in plan.outputs), (seed, inputs, [], list(outs[-len(plan.wrt):]))
        outs = bind(seed, *inputs, stage="fwd")
        return pick(outs), (seed, inputs, [outs[index[v]] for v in plan.saved], None)

    def f_bwd(res, cts):
        seed, inputs, saved, loss_grads = res
        live = {v: c for v, c in zip(plan.outputs, cts) if not isinstance(c, SymbolicZero)}
        grads = [None] * len(plan.wrt)
        if loss_grads is not None:  # the loss group's fwd_bwd already computed d loss / d inputs
            ct = live.pop(plan.loss, None)
            if ct is not None:
                grads = [g * ct for g in loss_grads]
        if live:
            avals = {v: plan.aval(v, plan.rows(inputs)) for v in plan.outputs}
            full = [live.get(v, jnp.zeros(avals[v].shape, avals[v].dtype)) for v in plan.outputs]
            more = bind(seed, *inputs, *saved, *full, stage="bwd")
            grads = [m if g is None else g + m for g, m in zip(grads, more)]
        by_value = dict(zip(plan.wrt, grads))
        return (None, *[by_value.get(v) for v in plan.inputs])

    f.defvjp(f_fwd, f_bwd, symbolic_zeros=True)
    return f


# ---- plans for a graph, and the program built from them ------------------------------
def plans(graph: Graph, mode: str = "train", compute_capability: int | None = None):
    """(annotated graph, [kernel or GroupPlan in schedule order]): a GroupPlan where the
    Triton back end generated the group's kernels, the fusion Kernel otherwise."""
    from mlc.fusion import kernels as schedule

    from .api import _graph_types, generate

    gen = generate(graph, mode=mode)
    g = gen.graph
    types = _graph_types(g)
    by_group: dict[str, dict[str, KernelSpec]] = {}
    for s in gen.specs:
        if s.group is not None and s.variant != "update":
            by_group.setdefault(s.group, {})[s.variant] = s
    matmul = next((s for s in gen.specs if s.variant == "matmul"), None)
    out = []
    for k in schedule(g):
        specs = by_group.get(k.name)
        if not specs or "fwd" not in specs:
            out.append(k)
            continue
        fwd = specs["fwd"]
        bwd = specs.get("bwd") or specs.get("epilogue_bwd")
        fb = specs.get("fwd_bwd")
        inputs = [a.value for a in fwd.args if a.role == "input"]
        wrt = [a.value for a in (fb or bwd or fwd).args if a.role == "grad_input"] if mode == "train" else []
        if fwd.extra.get("x") is not None and mode == "train":  # matmul: dW, dX (if an activation) and the epilogue's
            ex = fwd.extra
            wrt = [v for v in inputs if v == ex["w"] or (v == ex["x"] and v not in g.inputs) or v in wrt]
        loss = next((v for v in k.outputs if types[v].shape == ()), None) if fb is not None else None
        plan = GroupPlan(k.name, list(k.ops), inputs, list(k.outputs), wrt, types, mode == "train", fwd,
                         bwd=bwd, fwd_bwd=fb, matmul=matmul, compute_capability=compute_capability, loss=loss)
        plan.saved = [v for v in plan.fwd_values if v not in plan.outputs]
        out.append(plan)
    return g, out


def build(graph: Graph, wanted: list[str], launcher: str = "triton", compute_capability: int | None = None):
    """fn(params, inputs, key, train) -> {output: value}, like jax_backend.build, with
    every group that has generated kernels called as an `mlc_fused` primitive."""
    if launcher not in LAUNCHERS:
        raise ValueError(f"launcher must be one of {LAUNCHERS}, not {launcher!r}")
    live = {op.result for op in live_ops(graph, wanted)}
    schedules = {}

    def schedule(train: bool):
        if train not in schedules:
            g, items = plans(graph, "train" if train else "eval", compute_capability)
            consts = [op for op in g.ops if op.opcode == "const"]
            calls = [(it, group_function(it, launcher)) if isinstance(it, GroupPlan) else (it, None)
                     for it in items if any(op.result in live for op in it.ops)]
            schedules[train] = (g, consts, calls)
        return schedules[train]

    def fn(params, inputs, key=None, train=False):
        g, consts, calls = schedule(bool(train))
        seed = jax.random.randint(key, (), 0, np.iinfo(np.int32).max, jnp.int32) if key is not None \
            else jnp.zeros((), jnp.int32)
        env = dict(params)
        env.update(inputs)
        for op in consts:
            env[op.result] = apply_op(op, [])
        for item, call in calls:
            if call is not None:
                env.update(zip(item.outputs, call(seed, *[env[v] for v in item.inputs])))
                continue
            for op in item.ops:  # a group without kernels: the XLA path
                drop = key is not None and op.opcode == "dropout"
                op_key = jax.random.fold_in(key, dropout_salt(op)) if drop else None
                env[op.result] = apply_op(op, [env[a] for a in op.args], key=op_key, train=train)
        return {w: env[g.outputs[w]] for w in wanted}

    return fn
