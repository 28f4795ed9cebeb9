"""Calling a generated kernel from JAX: the jax-triton argument order, and two launchers.

jax-triton passes a kernel its operands (arrays and Python scalars, in order),
then its outputs, then the constexprs; a scalar must be known when the program is
traced. Our kernels interleave outputs with inputs and take the dropout seed as
a scalar, which inside a jitted step is a traced value. `jax_call_spec` adds a
thin `@triton.jit` wrapper to the kernel's module that takes the arguments in
jax-triton's order and reads the seed from a one-element buffer, then calls the
kernel (Triton inlines it). Both launchers run that wrapper:

- `triton_launch`: `jax_triton.triton_call`, lowered to a `triton_kernel_call`
  custom call on cuda. It needs jax-triton and the CUDA plugin's kernel-call
  serializer (`cuda_kernel_calls`); a machine without a GPU can still lower and
  export for one.
- `interpret_launch`: `jax.pure_callback` into Triton's interpreter on the CPU,
  with exactly the same arguments: the tests run a whole jitted training step
  through the generated kernels this way.
"""
from __future__ import annotations

import functools
import importlib.util
import os
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np

from .spec import KernelArg, KernelSpec, function_text, ptr_type

OUTPUT_ROLES = ("output", "grad_input")
PLUGIN_ENV = "MLC_CUDA_PLUGIN_DIR"


_wrappers: dict[tuple, KernelSpec] = {}


def _wrap(spec: KernelSpec, dynamic: tuple[str, ...], inplace: tuple[str, ...]) -> KernelSpec:
    ins = [a for a in spec.args if a.role not in OUTPUT_ROLES]
    outs = [a for a in spec.args if a.role in OUTPUT_ROLES]
    dynamic = set(dynamic) | {a.name for a in ins if a.role == "seed"}
    by_name = {a.name: a for a in ins}
    args = [KernelArg(f"{a.name}_ptr", ptr_type(a.type), a.role) if a.name in dynamic else a for a in ins]
    args += [KernelArg(f"{n}_out", by_name[n].type, "output", by_name[n].value, by_name[n].shape) for n in inplace]
    args += outs
    body = "".join(f"    {a.name} = tl.load({a.name}_ptr)\n" for a in ins if a.name in dynamic)
    call = [f"{a.name}_out" if a.name in inplace else a.name for a in spec.args] + [f"{k}={k}" for k in spec.constexprs]
    body += f"    {spec.name}({', '.join(call)})"
    params = [a.name for a in args] + [f"{k}: tl.constexpr" for k in spec.constexprs]
    name = f"{spec.name}_jax"
    doc = f"{spec.name} with jax-triton's argument order (operands, then outputs)"
    source = spec.source + "\n\n" + function_text(name, params, body, doc)
    return replace(spec, name=name, source=source, args=args)


def jax_call_spec(spec: KernelSpec, dynamic: tuple[str, ...] = (), inplace: tuple[str, ...] = ()) -> KernelSpec:
    """The spec of a wrapper kernel taking `spec`'s arguments in jax-triton's order.
    The seed and the scalars named in `dynamic` (values traced inside a jitted step:
    the step count, the learning rate) come as one-element buffers named NAME_ptr.
    Each pointer named in `inplace` (a buffer the kernel updates in place) is also an
    output, NAME_out, which the wrapper hands to the kernel: jax-triton aliases it to
    the input, the interpreter launch starts it as a copy of the input."""
    key = (spec.key, tuple(dynamic), tuple(inplace))
    w = _wrappers.get(key)
    if w is None:
        w = _wrappers[key] = _wrap(spec, tuple(dynamic), tuple(inplace))
    return w


def operand_args(spec: KernelSpec) -> list[KernelArg]:
    return [a for a in spec.args if a.role not in OUTPUT_ROLES]


def output_args(spec: KernelSpec) -> list[KernelArg]:
    return [a for a in spec.args if a.role in OUTPUT_ROLES]


def _split(spec: KernelSpec, values: dict, dynamic, inplace):
    """(wrapper, arrays, scalars) of the wrapper's operands, in order."""
    w = jax_call_spec(spec, dynamic, inplace)
    arrays, scalars = [], {}
    for a in operand_args(w):
        if a.is_pointer:
            arrays.append(values[a.name])
        else:
            scalars[a.name] = values[a.name]
    return w, arrays, scalars


def interpret_launch(spec: KernelSpec, values: dict, out_shapes: dict, *, dynamic=(), inplace=()) -> dict:
    """Run the kernel under Triton's interpreter from inside a jitted JAX program.
    values: argument name -> JAX array (pointers) or Python number; out_shapes:
    output argument name -> jax.ShapeDtypeStruct. Returns output name -> array."""
    import jax

    from . import interp

    w, arrays, scalars = _split(spec, values, dynamic, inplace)
    outs = output_args(w)
    pointer_names = [a.name for a in operand_args(w) if a.is_pointer]

    def host(*host_arrays):
        call = dict(scalars)
        call.update({n: np.array(x, copy=True, order="C") for n, x in zip(pointer_names, host_arrays)})
        for a in outs:
            s = out_shapes[a.name]
            call[a.name] = np.zeros(s.shape, s.dtype)
        for n in inplace:
            call[f"{n}_out"] = call[n].copy()
        interp.run(w, call)
        return tuple(call[a.name] for a in outs)

    res = jax.pure_callback(host, tuple(out_shapes[a.name] for a in outs), *arrays)
    return dict(zip([a.name for a in outs], res))


def triton_launch(spec: KernelSpec, values: dict, out_shapes: dict, *, dynamic=(), inplace=(),
                  compute_capability: int | None = None) -> dict:
    """The kernel as a jax-triton call (lowers on cuda only). compute_capability
    (90 for sm_90) lets a machine without a GPU compile for one."""
    import jax_triton

    from . import loader

    w, arrays, scalars = _split(spec, values, dynamic, inplace)
    outs = output_args(w)
    pointers = [a.name for a in operand_args(w) if a.is_pointer]
    out_names = [a.name for a in outs]
    args, k = [], iter(arrays)
    for a in operand_args(w):
        args.append(next(k) if a.is_pointer else scalars[a.name])
    res = jax_triton.triton_call(
        *args, kernel=loader.load(w), out_shape=[out_shapes[n] for n in out_names],
        grid=w.grid_for(**scalars), num_warps=w.num_warps, num_stages=3,
        input_output_aliases={pointers.index(n): out_names.index(f"{n}_out") for n in inplace},
        zeroed_outputs=tuple(i for i, a in enumerate(outs) if a.zero_init),
        compute_capability=compute_capability, name=w.name, **w.constexprs)
    return dict(zip(out_names, res))


# ---- lowering rules ------------------------------------------------------------------
def register_lowerings(prim, kernels, reference, what: str):
    """Lower `prim` per platform. cuda (launcher "triton"): `kernels(*args, launch=
    triton_launch, **params)`; cpu with launcher "interpret": the same kernels under
    the interpreter; anywhere else: `reference(*args, **params)`. The primitive's
    params hold `plan` (with `compute_capability`) and `launcher`."""
    from jax.interpreters import mlir

    def lower(ctx, *args, platform, launcher, **params):
        if platform == "cuda" and launcher == "triton":
            why = cuda_kernel_calls()
            if why is not None:
                raise RuntimeError(f"cannot lower {what} to Triton for cuda: {why}")
            launch = functools.partial(triton_launch, compute_capability=params["plan"].compute_capability)
            fn = functools.partial(kernels, launch=launch, **params)
        elif platform == "cpu" and launcher == "interpret":
            fn = functools.partial(kernels, launch=interpret_launch, **params)
        else:
            fn = functools.partial(reference, **params)
        return mlir.lower_fun(fn, multiple_results=True)(ctx, *args)

    mlir.register_lowering(prim, functools.partial(lower, platform="default"))
    for platform in ("cpu", "cuda"):
        mlir.register_lowering(prim, functools.partial(lower, platform=platform), platform=platform)


# ---- cuda kernel calls on a machine without CUDA -------------------------------------
def _plugin_dirs() -> list[Path]:
    env = os.environ.get(PLUGIN_ENV)
    return [Path(env)] if env else [Path(sys.prefix) / "mlc-cuda-plugin"]


@functools.lru_cache(maxsize=None)
def cuda_kernel_calls() -> str | None:
    """None when jax-triton can write kernel calls for cuda here; else why not.

    jax-triton serializes each call with jaxlib's CUDA plugin (`_triton`). With a
    CUDA jaxlib installed it is already loaded. Without one (a laptop, CI), the
    plugin's wheel unpacked into a directory that is not on sys.path serves the same
    purpose: installed normally, the plugin would make every `import jax` print CUDA
    driver warnings. We load only its `_triton` module from there (see README)."""
    from jax._src.lib import gpu_triton

    why = None if getattr(gpu_triton, "TritonKernel", None) is not None else _load_plugin(gpu_triton)
    if why is not None:
        return why
    try:
        import jax_triton  # noqa: F401  (needs the serializer loaded first)
    except ImportError as e:
        return f"jax-triton cannot be imported ({e}); install mlc's `gpu` extra"
    return None


def _load_plugin(gpu_triton) -> str | None:
    import jaxlib

    for root in _plugin_dirs():
        so = next(iter(sorted((root / "jax_cuda12_plugin").glob("_triton*.so"))), None)
        if so is None:
            continue
        dist = sorted(root.glob("jax_cuda12_plugin-*.dist-info"))
        have = dist[-1].name[len("jax_cuda12_plugin-"):-len(".dist-info")] if dist else "unknown"
        if have != jaxlib.__version__:
            return f"the CUDA plugin in {root} is version {have}, jaxlib is {jaxlib.__version__}"
        ms = importlib.util.spec_from_file_location("_triton", so)
        mod = importlib.util.module_from_spec(ms)
        ms.loader.exec_module(mod)
        gpu_triton._cuda_triton = mod
        for name in ("TritonKernelCall", "TritonAutotunedKernelCall", "TritonKernel", "create_array_parameter",
                     "create_scalar_parameter", "get_compute_capability", "get_arch_details", "get_custom_call",
                     "get_serialized_metadata"):
            setattr(gpu_triton, name, getattr(mod, name))
        return None
    where = " or ".join(str(d) for d in _plugin_dirs())
    return (f"no CUDA kernel-call serializer: install a CUDA jaxlib (`pip install 'jax[cuda12]'`), or unpack "
            f"the plugin with `pip install --no-deps --target {where} jax-cuda12-plugin=={jaxlib.__version__}`")

