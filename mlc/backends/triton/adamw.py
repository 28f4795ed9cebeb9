"""One fused AdamW update over every parameter, laid out in one flat buffer.

The parameters, their gradients and both moments live in four flat fp32 buffers
(`flat_layout` says where each parameter sits). The parameters that weight decay
applies to come first, so the decay mask is one number: `n_decay`. One launch
updates everything, as optax.adamw does:

    m = b1 m + (1 - b1) g            v = b2 v + (1 - b2) g^2
    p = p - lr (m / (1 - b1^t) / (sqrt(v / (1 - b2^t)) + eps) + wd p [i < n_decay])

with g already scaled by `grad_scale` (a global-norm clip folds in there) and
t = `step` counted from 1. With weight_decay = 0 it is Adam.
"""
from __future__ import annotations

from dataclasses import dataclass
from math import prod
from typing import Callable

import numpy as np

from .spec import HEADER, KernelArg, KernelSpec, function_text, ptr_type

BODY = """    pid = tl.program_id(0)
    offs = pid * BLOCK + tl.arange(0, BLOCK)
    mask = offs < n_elements
    p = tl.load(p_ptr + offs, mask=mask, other=0.0)
    g = tl.load(g_ptr + offs, mask=mask, other=0.0).to(tl.float32) * grad_scale
    m = tl.load(m_ptr + offs, mask=mask, other=0.0)
    v = tl.load(v_ptr + offs, mask=mask, other=0.0)
    m = b1 * m + (1.0 - b1) * g
    v = b2 * v + (1.0 - b2) * g * g
    t = step.to(tl.float32)
    bc1 = 1.0 - tl.exp(t * tl.log(b1))
    bc2 = 1.0 - tl.exp(t * tl.log(b2))
    update = (m / bc1) / (tl.sqrt(v / bc2) + eps)
    update = update + tl.where(offs < n_decay, weight_decay * p, 0.0)
    tl.store(p_ptr + offs, p - lr * update, mask=mask)
    tl.store(m_ptr + offs, m, mask=mask)
    tl.store(v_ptr + offs, v, mask=mask)"""


def adamw_kernel(name: str = "mlc_adamw_update", *, grad_dtype: str = "fp32", block: int = 1024,
                 num_warps: int = 4, group: str | None = None) -> KernelSpec:
    args = [KernelArg("p_ptr", "*fp32", "input"), KernelArg("g_ptr", ptr_type(grad_dtype), "input"),
            KernelArg("m_ptr", "*fp32", "input"), KernelArg("v_ptr", "*fp32", "input"),
            KernelArg("n_elements", "i32", "size"), KernelArg("n_decay", "i32", "size"),
            KernelArg("step", "i32", "scalar")]
    args += [KernelArg(n, "fp32", "scalar") for n in ("lr", "b1", "b2", "eps", "weight_decay", "grad_scale")]
    params = [a.name for a in args] + ["BLOCK: tl.constexpr"]
    doc = "AdamW over flat buffers, in place: params, m and v are read and written"
    source = HEADER + "\n\n" + function_text(name, params, BODY, doc)
    return KernelSpec(name=name, family="adamw_update", variant="update", source=source, args=args,
                      constexprs={"BLOCK": block}, grid=("cdiv(n_elements, BLOCK)",), num_warps=num_warps,
                      group=group, doc=doc)


def default_decay(name: str, shape: tuple) -> bool:
    """The training loop's mask (runtime/train.py): weight matrices decay; biases, norms, embeddings do not."""
    return len(shape) == 2 and not name.startswith("embed.")


@dataclass
class FlatLayout:
    order: list[str]  # parameter names, decayed ones first
    offsets: dict[str, int]
    shapes: dict[str, tuple]
    n_decay: int
    size: int

    def pack(self, tensors: dict) -> np.ndarray:
        flat = np.zeros(self.size, np.float32)
        for n in self.order:
            flat[self.offsets[n]:self.offsets[n] + prod(self.shapes[n])] = np.asarray(tensors[n], np.float32).ravel()
        return flat

    def unpack(self, flat: np.ndarray) -> dict:
        return {n: np.asarray(flat[self.offsets[n]:self.offsets[n] + prod(self.shapes[n])]).reshape(self.shapes[n])
                for n in self.order}


def flat_layout(shapes: dict[str, tuple], decay: Callable[[str, tuple], bool] = default_decay) -> FlatLayout:
    """Where each parameter sits in the flat buffers (decayed ones first, then in the given order)."""
    names = list(shapes)
    order = [n for n in names if decay(n, tuple(shapes[n]))] + [n for n in names if not decay(n, tuple(shapes[n]))]
    offsets, off = {}, 0
    n_decay = 0
    for n in order:
        offsets[n] = off
        off += prod(shapes[n])
        if decay(n, tuple(shapes[n])):
            n_decay = off
    return FlatLayout(order, offsets, {n: tuple(shapes[n]) for n in names}, n_decay, off)
