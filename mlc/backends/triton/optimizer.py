"""The optimizer group as a primitive: one fused AdamW update over every parameter.

`mlc_adamw` updates a flat parameter buffer and both moment buffers in one kernel
launch (adamw.py's kernel, called in place through jax-triton on cuda), or with the
same arithmetic in jax.numpy elsewhere. `FusedAdamW.update` is a drop-in for the
optax step the training loop takes, on optax's own state: it reads the moments and
the step count from the state of `optax.chain(clip_by_global_norm, adamw(schedule,
mask))`, packs them flat (weight-decayed parameters first, so the decay mask is one
offset), runs the primitive and writes the results back. So `init.jax`'s state feeds
`train_step.ARCH.jax` unchanged, and a run can switch back to optax at any step.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np
from jax.extend.core import Primitive
from optax import tree_utils

from . import jax_call
from .adamw import FlatLayout, adamw_kernel, flat_layout
from .spec import KernelSpec

INPLACE = ("p_ptr", "m_ptr", "v_ptr")
DYNAMIC = ("step", "lr", "grad_scale")  # traced inside the jitted step: passed as one-element buffers


@dataclass(eq=False)  # hashed by identity: a primitive parameter
class UpdatePlan:
    spec: KernelSpec
    layout: FlatLayout
    b1: float
    b2: float
    eps: float
    weight_decay: float
    compute_capability: int | None = None


adamw_p = Primitive("mlc_adamw")
adamw_p.multiple_results = True
adamw_p.def_abstract_eval(lambda p, g, m, v, step, lr, scale, **_: [p, m, v])
adamw_p.def_impl(lambda *args, **params: jax.jit(functools.partial(adamw_p.bind, **params))(*args))


def reference(p, g, m, v, step, lr, scale, *, plan: UpdatePlan):
    """optax.adamw's arithmetic on the flat buffers (the kernel's, line for line)."""
    g = g * scale
    m = plan.b1 * m + (1.0 - plan.b1) * g
    v = plan.b2 * v + (1.0 - plan.b2) * g * g
    t = step.astype(jnp.float32)
    update = (m / (1.0 - plan.b1 ** t)) / (jnp.sqrt(v / (1.0 - plan.b2 ** t)) + plan.eps)
    decay = jnp.arange(p.shape[0]) < plan.layout.n_decay
    update = update + jnp.where(decay, plan.weight_decay * p, 0.0)
    return [p - lr * update, m, v]


def kernel(p, g, m, v, step, lr, scale, *, plan: UpdatePlan, launch):
    one = lambda x, dtype: jnp.reshape(x, (1,)).astype(dtype)  # noqa: E731
    values = {"p_ptr": p, "g_ptr": g, "m_ptr": m, "v_ptr": v, "n_elements": plan.layout.size,
              "n_decay": plan.layout.n_decay, "step_ptr": one(step, jnp.int32), "lr_ptr": one(lr, jnp.float32),
              "b1": plan.b1, "b2": plan.b2, "eps": plan.eps, "weight_decay": plan.weight_decay,
              "grad_scale_ptr": one(scale, jnp.float32)}
    shape = jax.ShapeDtypeStruct(p.shape, jnp.float32)
    out = launch(plan.spec, values, {f"{n}_out": shape for n in INPLACE}, dynamic=DYNAMIC, inplace=INPLACE)
    return [out[f"{n}_out"] for n in INPLACE]


jax_call.register_lowerings(adamw_p, kernel, reference, "the AdamW update")


class FusedAdamW:
    """optax's clip-then-AdamW step as one `mlc_adamw` primitive, on optax's state.

        new_params, new_state = FusedAdamW(...).update(grads, state, params)
    """

    def __init__(self, shapes: dict, schedule, *, b1: float, b2: float, eps: float = 1e-8,
                 weight_decay: float = 0.0, grad_clip: float = 0.0, launcher: str = "triton",
                 compute_capability: int | None = None):
        layout = flat_layout({k: tuple(s) for k, s in shapes.items()})
        self.plan = UpdatePlan(adamw_kernel("mlc_adamw_update"), layout, b1, b2, eps, weight_decay,
                               compute_capability)
        self.schedule, self.grad_clip, self.launcher = schedule, grad_clip, launcher

    def _flat(self, tree: dict):
        return jnp.concatenate([jnp.ravel(tree[n]) for n in self.plan.layout.order])

    def _unflat(self, flat) -> dict:
        lay = self.plan.layout
        return {n: flat[lay.offsets[n]:lay.offsets[n] + int(np.prod(lay.shapes[n]))].reshape(lay.shapes[n])
                for n in lay.order}

    def update(self, grads: dict, state, params: dict):
        count = tree_utils.tree_get_all_with_path(state, "count")[0][1]  # the adam and schedule counts agree
        g = self._flat(grads)
        scale = jnp.float32(1.0)
        if self.grad_clip > 0:  # optax.clip_by_global_norm, folded into the kernel's grad_scale
            norm = jnp.sqrt(jnp.sum(g * g))
            scale = jnp.where(norm < self.grad_clip, 1.0, self.grad_clip / norm).astype(jnp.float32)
        p, m, v = adamw_p.bind(self._flat(params), g, self._flat(tree_utils.tree_get(state, "mu")),
                               self._flat(tree_utils.tree_get(state, "nu")), count + 1,
                               jnp.asarray(self.schedule(count), jnp.float32), scale,
                               plan=self.plan, launcher=self.launcher)
        state = tree_utils.tree_set(state, mu=self._unflat(m), nu=self._unflat(v), count=count + 1)
        return self._unflat(p), state
