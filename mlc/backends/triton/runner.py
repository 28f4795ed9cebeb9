"""A reference launcher: a whole training step from a Generation's kernels.

It runs the generated kernels in schedule order on numpy arrays under Triton's
interpreter: every forward, then every backward in reverse (the loss group's
fused fwd_bwd kernel gives the first gradient in its forward pass), then the one
AdamW update over the flat parameter buffer. It is the plain statement of which
buffer goes to which argument, in which order, that a GPU runtime (jax-triton
custom calls) performs; tests use it to check the generated set end to end
against `jax.grad` of the JAX back end.
"""
from __future__ import annotations

from collections import defaultdict

import numpy as np

from .api import Generation
from .catalog import run, shape_of
from .matmul import matmul_backward_launches
from .spec import KernelSpec


def _launch(spec: KernelSpec, env: dict, rows: int, *, grads=None, seed=0, dloss=1.0) -> dict:
    """catalog.run, with a zero upstream gradient for outputs nothing downstream used."""
    upstream = {a.value: (grads or {}).get(a.value, np.zeros(shape_of(a.shape, rows), np.float32))
                for a in spec.args if a.role == "grad_output"}
    return run(spec, env, rows, upstream=upstream, seed=seed, dloss=dloss)


def _by_group(gen: Generation) -> dict[str, dict[str, KernelSpec]]:
    groups: dict[str, dict[str, KernelSpec]] = {}
    for s in gen.specs:
        if s.group is not None and s.variant != "update":
            groups.setdefault(s.group, {})[s.variant] = s
    return groups


def forward(gen: Generation, params: dict, inputs: dict, rows: int, seed: int = 0) -> dict:
    """Every forward kernel in order; returns the environment of values."""
    if gen.skipped:
        raise ValueError(f"groups without kernels: {gen.skipped}")
    env = {**params, **inputs}
    for name, variants in _by_group(gen).items():
        for (role, v), arr in _launch(variants["fwd"], env, rows, seed=seed).items():
            env[v] = arr
    return env


def train_step(gen: Generation, params: dict, inputs: dict, rows: int, seed: int = 0, loss: str = "loss"):
    """(environment after the forward, gradient of graph output `loss` for every param)."""
    g = gen.graph
    loss_value = g.outputs[loss]
    groups = _by_group(gen)
    consumers = defaultdict(set)  # value -> groups that read it
    for name, variants in groups.items():
        for a in variants["fwd"].args:
            if a.role == "input":
                consumers[a.value].add(name)
    env = {**params, **inputs}
    grads: dict[str, np.ndarray] = {}

    def add(v, d):
        grads[v] = grads[v] + d if v in grads else d

    fused = set()
    for name, variants in groups.items():
        fb = variants.get("fwd_bwd")
        outs = [a.value for a in variants["fwd"].args if a.role == "output"]
        # the loss group: its loss is the graph's loss and nothing downstream reads its outputs
        if fb is not None and loss_value in outs and not any(consumers[o] for o in outs):
            wrote = _launch(fb, env, rows, seed=seed, dloss=1.0)
            fused.add(name)
            for (role, v), arr in wrote.items():
                if role == "output":
                    env[v] = arr
                else:
                    add(v, arr)
        else:
            for (role, v), arr in _launch(variants["fwd"], env, rows, seed=seed).items():
                env[v] = arr
    if loss_value not in grads and not fused:
        grads[loss_value] = np.ones((), np.float32)

    matmul = next(s for s in gen.specs if s.variant == "matmul") if any(s.variant == "matmul" for s in gen.specs) \
        else None
    for name in reversed(list(groups)):
        if name in fused:
            continue
        variants = groups[name]
        fwd = variants["fwd"]
        if fwd.family in ("matmul_epilogue", "matmul"):
            x, w, z = fwd.extra["x"], fwd.extra["w"], fwd.extra["z"]
            eb = variants.get("epilogue_bwd")
            if eb is not None:
                for (role, v), arr in _launch(eb, env, rows, grads=grads, seed=seed).items():
                    add(v, arr)
                dz = grads.pop(z)
            else:
                dz = grads.get(z, np.zeros(shape_of(g.type_of(z).shape, rows), np.float32))
            K, N = fwd.extra["K"], fwd.extra["N"]
            launches = matmul_backward_launches(rows, K, N)
            bufs = {"dZ": np.ascontiguousarray(dz, np.float32), "W": np.asarray(env[w], np.float32),
                    "X": np.asarray(env[x], np.float32),
                    "dX": np.zeros((rows, K), np.float32), "dW": np.zeros((K, N), np.float32)}
            from . import interp
            for which in ("dW",) + (("dX",) if x not in g.inputs else ()):
                interp.run(matmul, {k: (bufs[v] if isinstance(v, str) else v) for k, v in launches[which].items()})
            add(w, bufs["dW"])
            if x not in g.inputs:
                add(x, bufs["dX"])
        elif "bwd" in variants:
            for (role, v), arr in _launch(variants["bwd"], env, rows, grads=grads, seed=seed).items():
                add(v, arr)
    return env, {p: grads.get(p, np.zeros(shape_of(g.params[p].type.shape, rows), np.float32)) for p in g.params}
