"""Triton back end: generated `@triton.jit` kernels for the hot training loop.

    from mlc.backends.triton import compile_kernels, emit_triton, emit_ptx, generate
    arts = compile_kernels(graph, archs=("sm_80", "sm_90"))   # PTX + cubin per kernel, cached
    print(emit_triton(graph))                                  # the generated sources

Generators (each walks IR ops with the per-op rules in rules.py, forward and
derivative side by side): tile.py (elementwise chains, row-wise reductions and
losses, gathers), matmul.py (matmul with an elementwise epilogue), embedding_bag.py
(ragged bags: gather, weighted sum or mean, elementwise ops; scatter-add backward),
adamw.py (one fused optimizer update over a flat buffer); api.py maps the middle
end's groups to them (values of rank > 2 get no kernel: the XLA path). spec.py: what a kernel is (source, arguments with roles, grid). aot.py
compiles for sm_80/sm_90 without a GPU, with a disk cache (loader.py writes the
source files). interp.py runs any kernel on numpy arrays under Triton's
interpreter; catalog.py holds representative kernels with their JAX references;
runner.py chains a whole training step from generated kernels on numpy arrays.

From JAX: primitive.py makes each fused group the `mlc_fused` primitive (custom VJP;
the kernels through jax-triton on cuda, the jax.numpy reference elsewhere) and
optimizer.py the AdamW group the `mlc_adamw` primitive; jax_call.py holds the
jax-triton argument-order wrappers, the launchers (jax-triton, or the interpreter via
pure_callback for tests) and the per-platform lowering rules. Triton is imported
lazily: generating source needs none.
"""
from .adamw import FlatLayout, adamw_kernel, flat_layout
from .api import DEFAULT_ARCHS, Generation, KernelArtifact, compile_kernels, emit_ptx, emit_triton, generate
from .matmul import epilogue_bwd, matmul_backward_launches, matmul_fwd, matmul_kernel
from .spec import KernelArg, KernelSpec, Unsupported
from .tile import tile_kernel

__all__ = ["DEFAULT_ARCHS", "FlatLayout", "Generation", "KernelArg", "KernelArtifact", "KernelSpec", "Unsupported",
           "adamw_kernel", "compile_kernels", "emit_ptx", "emit_triton", "epilogue_bwd", "flat_layout", "generate",
           "matmul_backward_launches", "matmul_fwd", "matmul_kernel", "tile_kernel"]
