#!/usr/bin/env python3
"""GPU check of the generated Triton kernels: correctness and speed against the XLA path.

On the GPU machine (one H100; the whole run takes about two to four minutes), from the
repository root:

    pip install -e '.[dev]' 'jax[cuda12]==0.10.2'     # needs the internet; offline, skip it
    python benchmarks/gpu_check.py --json benchmarks/gpu_check.json

Offline, skip the pip line: the script runs with whatever is installed (numpy, optax,
ml_dtypes, a jax with a CUDA backend, triton with `triton.knobs` (3.4 or newer; 3.9.0 is
the tested version), torch optional). It imports mlc from this checkout when mlc is not
installed (`pip install --no-deps --no-build-isolation -e .` also works offline), and
if lowering the examples fails (no `lark`, the .dml parser, say) it uses their IR
embedded below and says so in the report's notes.
Without a GPU, the same checks run on the CPU under Triton's interpreter, tiny shapes,
correctness only (the default test suite runs this; under a minute):

    python benchmarks/gpu_check.py --interpret --quick

Options: --quick (fewer repeats, smaller batch, no bf16 rows), --json FILE (the same
results as JSON), --rows N (batch rows for the kernel checks), --reps N (timed repeats),
--backend auto|torch|jax (how device buffers are made), --budget S (seconds for the timings).
Exit status: 0 all checks pass (whole-step mlc_fused rows skipped for a missing jax-triton or
CUDA kernel-call serializer do not fail it; the report says so), 1 a check failed or raised,
2 no CUDA GPU (and no --interpret) or Triton missing.

What it does, for examples/credit.dml and examples/diamonds.dml (lowered, optimized,
kernels from `mlc.backends.triton.generate(graph, mode="train")`) and for catalog cases
covering the families those programs lack (elementwise chains, layer norm, softmax
cross-entropy, embedding gather with its scatter-add backward):

1. Every generated kernel (forward, backward, fused loss forward+backward, matmul
   epilogue backward, the strided matmul's dX and dW launches, the AdamW update) is
   launched on device buffers and compared with the jax.numpy reference of the same ops
   (the XLA path, `mlc.backends.jax_backend.build`, differentiated with `jax.vjp`;
   matmuls at precision "highest"; optax.adamw for the update, three steps). Dropout
   rates are set to 0 for correctness (JAX and Triton draw different random streams).
   Tolerances are tests/test_triton_kernels.py's: |got - want| <= atol * s + rtol * |want|
   with s = max(1, max |want|) (so sums over many rows are judged at their own scale):
   float32 1e-5 (2e-5 for gradients and matmuls), bfloat16 2e-2 on bf16-rounded
   inputs, AdamW 1e-6. On a GPU the matmul kernels multiply in TF32 (10 mantissa bits,
   as `tl.dot(..., input_precision="tf32")` asks), so they and the whole training step
   are held to 1e-2 of the output's scale. "max rel" is max |got - want| / max |want|.
2. Each kernel's time against the XLA-compiled jnp reference of the same ops (jitted,
   default precision, dropout on, as training runs it). Both sides are timed the same
   way: after warmup, REPS times: INNER back-to-back calls then a synchronization
   (torch.cuda.synchronize() or cuCtxSynchronize for Triton, .block_until_ready() for
   JAX), time / INNER; the median is reported. ratio = Triton / XLA (below 1: Triton
   faster). With torch, "triton gpu" is also triton.testing.do_bench's median (GPU time
   from CUDA events, L2 flushed, no launch overhead). Zeroing the buffers a kernel adds
   into with atomics is part of its time.
3. A whole training step (forward, loss gradient, backward, AdamW; no gradient clipping
   on either side) from the generated kernels, chained as mlc/backends/triton/runner.py
   does (buffers allocated once, parameters, gradients and moments in flat buffers),
   against the jitted JAX step (value_and_grad + optax.adamw, parameters donated), at
   the program's batch size (128) and at --rows. Its correctness: the loss and every
   gradient against JAX's, and the updated parameters against optax.adamw applied to the
   chain's own gradients (tolerance 1e-6). With torch the chain is also captured once
   as a CUDA graph and replayed ("triton graph": no Python launch overhead).
4. The whole jitted training step with mlc_fused primitives against XLA: for each program,
   `jax.jit(jax.value_and_grad(loss))` in train mode (key given) at its batch size (128),
   the loss from `mlc.backends.triton.primitive.build(graph, ["loss"], launcher="triton")`
   (each fused group an `mlc_fused` primitive lowered to its Triton kernels through
   jax-triton) against `mlc.backends.jax_backend.build`. Correctness on a dropout-free copy:
   the loss and every parameter gradient (TF32 tolerance on a GPU; XLA at precision
   "highest"). Times with dropout on, default precision, both sides the same way (first
   call's compile time reported for the fused side), xla/fused = xla ms / fused ms (above 1:
   mlc_fused faster; note the inverse of the other ratios). When jax-triton cannot write
   kernel calls for cuda (`jax_call.cuda_kernel_calls()` gives a reason) or JAX has no GPU,
   the rows are marked SKIPPED with the reason. With --interpret, launcher="interpret" (the
   same kernels under Triton's interpreter via jax.pure_callback), a small batch, one
   program with --quick; the timing code runs once, its times not reported.
Time budget (--budget, default 270 s): kernel timings stop at 60% of it, training-step
chain timings at 75%, mlc_fused step timings at 90%; correctness checks always run, except
that mlc_fused steps are not started past the whole budget.

Device buffers: with torch (CUDA) importable, torch tensors; otherwise JAX GPU arrays,
passed to Triton as a small object with data_ptr() (`unsafe_buffer_pointer()`) and dtype,
synchronized and read back through libcuda.
"""
from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import time
import traceback
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ("credit", "diamonds")
FAMILIES = ("elementwise", "matmul_epilogue", "rowwise", "gather", "adamw_update")
DIRECTIONS = ("fwd", "bwd", "fwd+bwd", "update")

# tolerances: tests/test_triton_kernels.py (F32, F32_SUM, BF16; AdamW 1e-6), TF32 for GPU matmuls
TOLS = {"f32": (1e-5, 1e-5), "f32_sum": (2e-5, 2e-5), "bf16": (2e-2, 2e-2), "adamw": (1e-6, 1e-6),
        "tf32": (1e-2, 1e-2)}
HYPER = dict(lr=1e-3, b1=0.9, b2=0.999, eps=1e-8, weight_decay=1e-4)  # the programs' defaults (mlc explain)
NUM_STAGES = 3  # as mlc.backends.triton.aot compiles them

# The examples' graphs as lowered (print_graph(lower_file("examples/NAME.dml")), 2026-11),
# used only when lowering is impossible here (no `lark` on the GPU machine, say).
EMBEDDED_IR = {
    "credit": """graph model {
  input %x_num : f32[B,114]
  input %cat_home : i32[B]
  input %cat_marital : i32[B]
  input %cat_job : i32[B]
  input %y_status : f32[B]
  param %combiner.0.w : f32[132,256] = glorot()
  param %combiner.0.b : f32[256] = zeros()
  param %combiner.1.w : f32[256,256] = glorot()
  param %combiner.1.b : f32[256] = zeros()
  param %head.status.w : f32[256,1] = glorot()
  param %head.status.b : f32[1] = const(values=[0.9467459232865421])
  %0 = one_hot(%cat_home) {depth=7} : f32[B,7]
  %1 = one_hot(%cat_marital) {depth=6} : f32[B,6]
  %2 = one_hot(%cat_job) {depth=5} : f32[B,5]
  %3 = concat(%x_num, %0, %1, %2) {axis=1} : f32[B,132]
  %4 = matmul(%3, %combiner.0.w) : f32[B,256]
  %5 = add(%4, %combiner.0.b) : f32[B,256]
  %6 = relu(%5) : f32[B,256]
  %7 = dropout(%6) {rate=0.1} : f32[B,256]
  %8 = matmul(%7, %combiner.1.w) : f32[B,256]
  %9 = add(%8, %combiner.1.b) : f32[B,256]
  %10 = relu(%9) : f32[B,256]
  %11 = dropout(%10) {rate=0.1} : f32[B,256]
  %12 = matmul(%11, %head.status.w) : f32[B,1]
  %13 = add(%12, %head.status.b) : f32[B,1]
  %14 = sigmoid(%13) : f32[B,1]
  %15 = bce_logits(%13, %y_status) : f32[B]
  %16 = mean(%15) : f32[]
  %17 = scale(%16) {factor=1.0} : f32[]
  output pred.status = %14
  output loss.status = %16
  output loss = %17
}
""",
    "diamonds": """graph model {
  input %x_num : f32[B,97]
  input %cat_cut : i32[B]
  input %cat_color : i32[B]
  input %cat_clarity : i32[B]
  input %y_price : f32[B]
  param %combiner.0.w : f32[120,256] = glorot()
  param %combiner.0.b : f32[256] = zeros()
  param %combiner.1.w : f32[256,256] = glorot()
  param %combiner.1.b : f32[256] = zeros()
  param %head.price.w : f32[256,1] = glorot()
  param %head.price.b : f32[1] = zeros()
  %0 = one_hot(%cat_cut) {depth=6} : f32[B,6]
  %1 = one_hot(%cat_color) {depth=8} : f32[B,8]
  %2 = one_hot(%cat_clarity) {depth=9} : f32[B,9]
  %3 = concat(%x_num, %0, %1, %2) {axis=1} : f32[B,120]
  %4 = matmul(%3, %combiner.0.w) : f32[B,256]
  %5 = add(%4, %combiner.0.b) : f32[B,256]
  %6 = relu(%5) : f32[B,256]
  %7 = dropout(%6) {rate=0.1} : f32[B,256]
  %8 = matmul(%7, %combiner.1.w) : f32[B,256]
  %9 = add(%8, %combiner.1.b) : f32[B,256]
  %10 = relu(%9) : f32[B,256]
  %11 = dropout(%10) {rate=0.1} : f32[B,256]
  %12 = matmul(%11, %head.price.w) : f32[B,1]
  %13 = add(%12, %head.price.b) : f32[B,1]
  %14 = squared_error(%13, %y_price) : f32[B]
  %15 = mean(%14) : f32[]
  %16 = scale(%15) {factor=1.0} : f32[]
  output pred.price = %13
  output loss.price = %15
  output loss = %16
}
""",
}


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# ---- importing mlc from a checkout ---------------------------------------------------------
def _import_mlc():
    """Import mlc; when it is not installed, from this checkout (grammar/, passes/ and
    runtime/ are mlc.grammar, mlc.passes, mlc.runtime, as pyproject.toml maps them)."""
    import importlib
    import importlib.util
    try:
        import mlc
    except ImportError:
        sys.path.insert(0, str(ROOT))
        import mlc
    for sub in ("grammar", "passes", "runtime"):
        name = f"mlc.{sub}"
        if name in sys.modules:
            continue
        try:
            importlib.import_module(name)
        except ImportError:
            init = ROOT / sub / "__init__.py"
            if not init.exists():
                continue
            spec = importlib.util.spec_from_file_location(name, init, submodule_search_locations=[str(ROOT / sub)])
            mod = importlib.util.module_from_spec(spec)
            sys.modules[name] = mod
            spec.loader.exec_module(mod)
            setattr(mlc, sub, mod)
    return mlc


# ---- numbers -----------------------------------------------------------------------------------
def np_dtype(t: str):
    import numpy as np
    if t == "*bf16":
        import ml_dtypes
        return np.dtype(ml_dtypes.bfloat16)
    return np.dtype({"*fp32": np.float32, "*i32": np.int32}[t])


def compare(got, want, tol: str) -> dict:
    """max abs error, max |err| / max |want|, and pass: |got - want| <= atol * s + rtol * |want|
    with s = max(1, max |want|); NaNs must sit where the reference has them."""
    import numpy as np
    g = np.asarray(got, np.float64)
    w = np.asarray(want, np.float64)
    if g.shape != w.shape:
        return {"max_abs": float("nan"), "max_rel": float("nan"), "ok": False,
                "why": f"shape {g.shape} != {w.shape}"}
    nan_g, nan_w = np.isnan(g), np.isnan(w)
    if (nan_g != nan_w).any():
        return {"max_abs": float("nan"), "max_rel": float("nan"), "ok": False,
                "why": f"{int((nan_g != nan_w).sum())} NaNs differ"}
    keep = ~nan_w
    if not keep.any():
        return {"max_abs": 0.0, "max_rel": 0.0, "ok": True}
    g, w = g[keep], w[keep]
    err = np.abs(g - w)
    rtol, atol = TOLS[tol]
    scale = max(1.0, float(np.abs(w).max()))
    ok = bool(np.all(err <= atol * scale + rtol * np.abs(w)))
    top = float(np.abs(w).max())
    return {"max_abs": float(err.max()), "max_rel": float(err.max() / top) if top > 0 else float(err.max()),
            "ok": ok}


def merge(results: list[dict]) -> dict:
    if not results:
        return {"max_abs": 0.0, "max_rel": 0.0, "ok": True}
    out = {"max_abs": max(r["max_abs"] for r in results), "max_rel": max(r["max_rel"] for r in results),
           "ok": all(r["ok"] for r in results)}
    why = [r["why"] for r in results if r.get("why")]
    if why:
        out["why"] = "; ".join(why)
    return out


def bench(call, sync, warmup: int, reps: int, inner: int) -> float:
    """Median over `reps` of (INNER back-to-back calls, then sync) / INNER, in ms."""
    for _ in range(warmup):
        call()
    sync()
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        for _ in range(inner):
            call()
        sync()
        times.append((time.perf_counter() - t0) / inner)
    return 1e3 * statistics.median(times)


# ---- device buffers and launches ------------------------------------------------------------
def _util_specs():
    """Two helper kernels: fill a buffer with zeros, add one buffer into another."""
    from mlc.backends.triton.spec import HEADER, KernelArg, KernelSpec, function_text
    fill_body = ("    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)\n"
                 "    tl.store(dst + offs, tl.zeros([BLOCK], dtype=dst.dtype.element_ty), mask=offs < n)")
    add_body = ("    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)\n"
                "    m = offs < n\n"
                "    tl.store(dst + offs, tl.load(dst + offs, mask=m) + tl.load(src + offs, mask=m), mask=m)")
    fill = KernelSpec("gpu_check_fill", "util", "util",
                      HEADER + "\n\n" + function_text("gpu_check_fill", ["dst", "n", "BLOCK: tl.constexpr"],
                                                      fill_body),
                      [KernelArg("dst", "*fp32", "output"), KernelArg("n", "i32", "size")], {"BLOCK": 1024},
                      ("cdiv(n, BLOCK)",))
    add = KernelSpec("gpu_check_add", "util", "util",
                     HEADER + "\n\n" + function_text("gpu_check_add", ["dst", "src", "n", "BLOCK: tl.constexpr"],
                                                     add_body),
                     [KernelArg("dst", "*fp32", "output"), KernelArg("src", "*fp32", "input"),
                      KernelArg("n", "i32", "size")], {"BLOCK": 1024}, ("cdiv(n, BLOCK)",))
    return fill, add


def _scalar(a, v):
    return float(v) if a.type.startswith("fp") else int(v)


class Backend:
    """Buffers (numpy arrays, torch tensors or JAX arrays) and kernel launches."""
    name = "?"
    interpreter = False

    def __init__(self):
        import numpy as np
        self.np = np
        self.fill, self.add = _util_specs()

    def numel(self, shape) -> int:
        return int(math.prod(shape))

    def launcher(self, spec, args: dict):
        raise NotImplementedError

    def add_into(self, dst, src, n: int):
        return self.launcher(self.add, {"dst": dst, "src": src, "n": n})

    def gpu_ms(self, call, reps: int):
        return None


class InterpBackend(Backend):
    """numpy arrays; kernels run under Triton's interpreter (mlc.backends.triton.interp)."""
    name = "interpreter"
    interpreter = True

    def from_numpy(self, a):
        return self.np.array(a, order="C", copy=True)

    def zeros(self, shape, dtype):
        return self.np.zeros(shape, dtype)

    def view(self, flat, offset: int, shape):
        return flat[offset:offset + self.numel(shape)].reshape(shape)

    def to_numpy(self, b):
        return self.np.array(b)

    def zero(self, b):
        b[...] = 0

    def sync(self):
        pass

    def launcher(self, spec, args: dict):
        from mlc.backends.triton import interp
        vals = {a.name: (args[a.name] if a.is_pointer else _scalar(a, args[a.name])) for a in spec.args}
        return lambda: interp.run(spec, vals)


class GpuBackend(Backend):
    """Compiled launches: `fn[grid](*args, **constexprs, num_warps=, num_stages=)`."""

    def __init__(self):
        super().__init__()
        self._fns = {}

    def _fn(self, spec):
        from mlc.backends.triton import loader
        key = (spec.name, spec.key)
        if key not in self._fns:
            self._fns[key] = loader.load(spec, interpret=False)
        return self._fns[key]

    def launcher(self, spec, args: dict):
        fn = self._fn(spec)
        call = [args[a.name] if a.is_pointer else _scalar(a, args[a.name]) for a in spec.args]
        sizes = {a.name: call[i] for i, a in enumerate(spec.args) if not a.is_pointer}
        grid = spec.grid_for(**sizes)
        kw = dict(spec.constexprs, num_warps=spec.num_warps, num_stages=NUM_STAGES)
        launch = fn[grid]
        return lambda: launch(*call, **kw)


class TorchBackend(GpuBackend):
    name = "torch"

    def __init__(self):
        super().__init__()
        import torch
        self.torch = torch
        self.dev = torch.device("cuda")

    def from_numpy(self, a):
        import ml_dtypes
        a = self.np.array(a, order="C")
        if a.dtype == ml_dtypes.bfloat16:
            return self.torch.from_numpy(a.astype(self.np.float32)).to(self.dev).to(self.torch.bfloat16)
        return self.torch.from_numpy(a.copy()).to(self.dev)

    def zeros(self, shape, dtype):
        return self.from_numpy(self.np.zeros(shape, dtype))

    def view(self, flat, offset: int, shape):
        return flat[offset:offset + self.numel(shape)].reshape(tuple(shape))

    def to_numpy(self, b):
        self.sync()
        t = b.detach()
        if t.dtype == self.torch.bfloat16:
            t = t.float()
        return t.cpu().numpy()

    def zero(self, b):
        b.zero_()

    def sync(self):
        self.torch.cuda.synchronize()

    def gpu_ms(self, call, reps: int):
        from triton.testing import do_bench
        return float(do_bench(call, warmup=10, rep=max(20, 5 * reps), return_mode="median"))


class JaxBuf:
    """What Triton's launcher needs of a tensor: data_ptr() and dtype (here over a JAX array)."""
    __slots__ = ("base", "offset", "shape", "dtype", "_ptr")

    def __init__(self, base, offset: int, shape, dtype):
        self.base, self.offset, self.shape, self.dtype = base, offset, tuple(shape), dtype
        self._ptr = base.unsafe_buffer_pointer() + offset

    def data_ptr(self) -> int:
        return self._ptr


class JaxBackend(GpuBackend):
    """JAX GPU arrays as Triton's buffers (no torch): kernels go to the default stream; the
    context is synchronized with cuCtxSynchronize and results copied back with cuMemcpyDtoH."""
    name = "jax"

    def __init__(self, device):
        super().__init__()
        import ctypes
        import jax
        self.jax, self.device = jax, device
        self.cuda = ctypes.CDLL("libcuda.so.1")
        self.cuda.cuCtxSynchronize.restype = ctypes.c_int
        self.cuda.cuMemcpyDtoH_v2.restype = ctypes.c_int
        self.cuda.cuMemcpyDtoH_v2.argtypes = [ctypes.c_void_p, ctypes.c_uint64, ctypes.c_size_t]
        from triton.runtime import driver
        d = driver.active
        d.get_current_stream(d.get_current_device())  # makes the primary context current here

    def from_numpy(self, a):
        a = self.np.array(a, order="C")
        arr = self.jax.device_put(a, self.device)
        arr.block_until_ready()
        return JaxBuf(arr, 0, a.shape, self.np.dtype(a.dtype))

    def zeros(self, shape, dtype):
        return self.from_numpy(self.np.zeros(shape, dtype))

    def view(self, flat, offset: int, shape):
        return JaxBuf(flat.base, flat.offset + offset * flat.dtype.itemsize, shape, flat.dtype)

    def to_numpy(self, b):
        self.sync()
        out = self.np.empty(b.shape, b.dtype)
        if out.nbytes:
            rc = self.cuda.cuMemcpyDtoH_v2(out.ctypes.data, b.data_ptr(), out.nbytes)
            if rc != 0:
                raise RuntimeError(f"cuMemcpyDtoH failed: CUresult {rc}")
        return out

    def zero(self, b):
        self.launcher(self.fill, {"dst": b, "n": self.numel(b.shape)})()

    def sync(self):
        rc = self.cuda.cuCtxSynchronize()
        if rc != 0:
            raise RuntimeError(f"cuCtxSynchronize failed: CUresult {rc}")


# ---- choosing a backend -------------------------------------------------------------------------
def _torch_cuda_in_subprocess() -> tuple[bool, str]:
    """Whether torch sees CUDA, asked in a child process (importing torch here would change
    how Triton picks streams even when torch has no GPU)."""
    import importlib.util
    if importlib.util.find_spec("torch") is None:
        return False, "torch is not installed"
    try:
        r = subprocess.run([sys.executable, "-c", "import torch; print(torch.cuda.is_available())"],
                           capture_output=True, text=True, timeout=180)
    except Exception as e:  # noqa: BLE001
        return False, f"torch check failed: {e}"
    ok = r.stdout.strip().endswith("True")
    return ok, "" if ok else f"torch.cuda.is_available() is False {r.stderr.strip()[-200:]}".strip()


def _jax_gpu():
    import jax
    why = "jax sees no GPU"
    for plat in ("cuda", "gpu"):
        try:
            devs = jax.devices(plat)
            if devs:
                return devs[0], ""
        except Exception as e:  # noqa: BLE001
            why = f"jax.devices('{plat}'): {e}"
    return None, why


def pick_backend(args):
    """(backend, jax device for the XLA side, notes); exits 2 when there is no GPU."""
    if args.interpret:
        import jax
        return InterpBackend(), jax.devices("cpu")[0], []
    notes = []
    torch_ok, torch_why = (False, "--backend jax") if args.backend == "jax" else _torch_cuda_in_subprocess()
    jdev, jax_why = _jax_gpu()
    if args.backend == "torch" and not torch_ok:
        fail(f"--backend torch: {torch_why}")
    if torch_ok:
        backend = TorchBackend()
    elif jdev is not None:
        notes.append(f"torch with CUDA not available ({torch_why}): JAX arrays as Triton buffers")
        backend = JaxBackend(jdev)
    else:
        fail("no CUDA GPU here: " + "; ".join(w for w in (torch_why, jax_why) if w) +
             ".\nRun it on a GPU machine, or with --interpret to check the kernels on the CPU under "
             "Triton's interpreter (correctness only).")
    if jdev is None:
        import jax
        jdev = jax.devices()[0]
        notes.append(f"JAX has no GPU backend ({jax_why}): the XLA side runs on {jdev.platform}; its times "
                     f"are not comparable (install jax[cuda12]==0.10.2 or another jax with CUDA)")
    return backend, jdev, notes


def fail(msg: str, code: int = 2):
    print(f"gpu_check: {msg}", file=sys.stderr)
    sys.exit(code)


# ---- the environment ---------------------------------------------------------------------------
def _run(cmd) -> str:
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=20)
        return r.stdout.strip() if r.returncode == 0 else ""
    except Exception:  # noqa: BLE001
        return ""


def environment(backend, jdev, args, notes) -> dict:
    import importlib.metadata as md
    vers = {}
    for pkg in ("jax", "jaxlib", "triton", "torch", "numpy", "optax", "ml_dtypes", "jax-triton"):
        try:
            vers[pkg] = md.version(pkg)
        except Exception:  # noqa: BLE001
            pass
    meta = {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "command": " ".join([Path(sys.executable).name] + sys.argv),
            "mode": "interpreter" if backend.interpreter else "gpu", "backend": backend.name,
            "host": platform.node(), "python": platform.python_version(), "versions": vers,
            "xla_device": f"{jdev.platform}: {getattr(jdev, 'device_kind', str(jdev))}", "notes": list(notes)}
    commit = _run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"])
    if commit:
        dirty = _run(["git", "-C", str(ROOT), "status", "--porcelain", "--untracked-files=no"])
        meta["commit"] = commit + (" (uncommitted changes)" if dirty else "")
    if backend.interpreter:
        cpu = ""
        with contextlib.suppress(OSError):
            cpu = next((ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
                        if ln.startswith("model name")), "")
        meta["device"] = f"CPU ({cpu or platform.machine()}, {os.cpu_count()} cores): Triton interpreter"
        meta["driver"] = meta["cuda"] = "n/a"
        return meta
    smi = _run(["nvidia-smi", "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"])
    name = driver = ""
    if smi:
        parts = [p.strip() for p in smi.splitlines()[0].split(",")]
        name, driver = parts[0], parts[1] if len(parts) > 1 else ""
        meta["memory"] = parts[2] if len(parts) > 2 else ""
    cuda = []
    with contextlib.suppress(Exception):
        import ctypes
        v = ctypes.c_int()
        ctypes.CDLL("libcuda.so.1").cuDriverGetVersion(ctypes.byref(v))
        cuda.append(f"driver API {v.value // 1000}.{v.value % 1000 // 10}")
    if backend.name == "torch":
        t = backend.torch
        name = name or t.cuda.get_device_name()
        cap = t.cuda.get_device_capability()
        meta["compute_capability"] = f"sm_{cap[0]}{cap[1]}"
        cuda.append(f"torch built with CUDA {t.version.cuda}")
    else:
        with contextlib.suppress(Exception):
            from triton.runtime import driver as tdriver
            cap = tdriver.active.get_device_capability(0)
            meta["compute_capability"] = f"sm_{cap[0]}{cap[1]}"
    with contextlib.suppress(Exception):
        from jax._src.lib import cuda_versions
        if cuda_versions is not None:
            cuda.append(f"jaxlib CUDA runtime {cuda_versions.cuda_runtime_get_version()}")
    meta["device"] = name or getattr(jdev, "device_kind", "?")
    meta["driver"] = driver or "?"
    meta["cuda"] = ", ".join(cuda) or "?"
    return meta


# ---- graphs and values --------------------------------------------------------------------------
def example_graph(name: str, notes: list):
    """The optimized graph of examples/NAME.dml (or of its embedded IR when lowering fails)."""
    from mlc.ir.pipeline import lower_file, optimize
    try:
        g = lower_file(ROOT / "examples" / f"{name}.dml")
    except Exception as e:  # noqa: BLE001  (no lark, no data, ...)
        from mlc.ir.text import parse_graph
        notes.append(f"{name}: lowering failed ({type(e).__name__}: {e}); used the IR embedded in gpu_check.py")
        g = parse_graph(EMBEDDED_IR[name])
    g, _ = optimize(g)
    return g


def without_dropout(g):
    from mlc.ir.graph import clone
    g = clone(g)
    for op in g.ops:
        if op.opcode == "dropout":
            op.attrs["rate"] = 0.0
    return g


def random_values(graph, rng, rows: int):
    """(params, inputs): O(1) values, indices in range, 0/1 targets (as tests/helpers_ir.py)."""
    import numpy as np
    params = {}
    for name, p in graph.params.items():
        shape = tuple(rows if isinstance(d, str) else d for d in p.type.shape)
        std = 0.5 if len(shape) < 2 else 1.0 / np.sqrt(shape[0])
        params[name] = rng.normal(0, std, shape).astype(np.float32)
    ranges = {}
    for op in graph.ops:
        for i, a in enumerate(op.args):
            if a in graph.inputs and graph.inputs[a].dtype == "i32":
                if op.opcode == "gather" and i == 1:
                    k = graph.type_of(op.args[0]).shape[0]
                elif op.opcode == "one_hot":
                    k = op.attrs["depth"]
                elif op.opcode == "softmax_ce" and i == 1:
                    k = graph.type_of(op.args[0]).shape[-1]
                else:
                    continue
                ranges[a] = min(ranges.get(a, k), k)
    inputs = {}
    for name, t in graph.inputs.items():
        shape = tuple(rows if isinstance(d, str) else d for d in t.shape)
        if t.dtype == "i32":
            inputs[name] = rng.integers(0, ranges.get(name, 2), shape).astype(np.int32)
        elif name.startswith("y_"):
            inputs[name] = rng.integers(0, 2, shape).astype(np.float32)
        else:
            inputs[name] = rng.normal(0, 1, shape).astype(np.float32)
    return params, inputs


def all_values(graph, params, inputs) -> dict:
    """Every value of the graph (JAX back end, matmuls at precision 'highest')."""
    import jax
    import numpy as np
    from mlc.backends.jax_backend import build
    from mlc.ir.graph import clone
    g = clone(graph)
    g.outputs = {op.result: op.result for op in g.ops}
    with jax.default_matmul_precision("highest"):
        out = jax.jit(build(g, list(g.outputs)))(params, inputs)
    env = {**params, **inputs}
    env.update({k: np.asarray(v) for k, v in out.items()})
    return env


def sub_graph(g, ops, inputs, outputs, name="sub"):
    """These ops as a graph of their own: `inputs` are read, `outputs` returned."""
    from mlc.ir.graph import Graph, Op
    mine = {op.result for op in ops}
    consts = [op for op in g.ops if op.opcode == "const" and op.result not in mine and op.result not in inputs
              and any(op.result in o.args for o in ops)]
    sub = Graph(name)
    for v in inputs:
        sub.inputs[v] = g.type_of(v)
    sub.ops = [Op(o.result, o.opcode, tuple(o.args), dict(o.attrs), o.type) for o in consts + list(ops)]
    sub.outputs = {v: v for v in outputs}
    return sub


def ref_functions(sub, outs, wrt, train: bool):
    """fwd(vals, key) -> outputs; vjp(vals, ups, key) -> (outputs, grads wrt `wrt`)."""
    import jax
    from mlc.backends.jax_backend import build
    fn = build(sub, list(outs))

    def fwd(vals, key=None):
        o = fn({}, vals, key, train)
        return tuple(o[v] for v in outs)

    def vjp(vals, ups, key=None):
        def f(*ws):
            return fwd({**vals, **dict(zip(wrt, ws))}, key)
        out, back = jax.vjp(f, *[vals[w] for w in wrt])
        return out, back(tuple(u.astype(o.dtype) for u, o in zip(ups, out)))

    return fwd, vjp


# ---- one kernel against its reference ------------------------------------------------------------
@dataclass
class XlaRef:
    fn: object  # to jit
    args: tuple  # numpy arrays / pytrees of them, or ("key",) for a PRNG key
    donate: tuple = ()
    carry: int = 0  # the first `carry` args are replaced by the first outputs after each call


@dataclass
class KernelCheck:
    source: str
    kernel: str
    family: str
    direction: str
    io: str
    shape: str
    launches: list  # [(spec, {arg: numpy array or number})], run in order; arrays shared by identity
    expect: dict  # arg name of the last launch -> reference
    tol: str
    tspec: object = None  # what is timed (dropout on); default: the last launch's spec
    xla: XlaRef | None = None
    note: str = ""


def _shape_str(spec, rows) -> str:
    if spec.family in ("matmul_epilogue", "matmul") and spec.variant == "fwd":
        return f"{rows}x{spec.extra['K']}x{spec.extra['N']}"
    widths = [int(d) for a in spec.args for d in a.shape[1:2] if a.shape[:1] == ("B",)]
    return f"{rows}x{max(widths) if widths else 1}"


def spec_check(source, g, ops, spec, env, rng, rows, *, io="fp32", gpu=True, tspec=None, tg=None, tops=None,
               kernel_label=None, family=None, dloss=1.0):
    """The kernel `spec` (over `ops` of graph `g`) on values `env`, against jnp of the same ops;
    timed as `tspec` against jnp of `tops` of graph `tg` (dropout on)."""
    import jax
    import numpy as np
    args = spec.args
    ins = [a.value for a in args if a.role == "input"]
    outs = [a.value for a in args if a.role == "output"]
    gouts = [a.value for a in args if a.role == "grad_output"]
    gins = [a.value for a in args if a.role == "grad_input"]
    variant = spec.variant
    fouts = outs if variant in ("fwd", "fwd_bwd") else gouts
    sub = sub_graph(g, ops, ins, fouts)
    vals = {v: np.asarray(env[v]) for v in ins}
    ups = {}
    if variant == "fwd_bwd":
        ups = {v: np.full((), dloss, np.float32) if g.type_of(v).shape == ()
               else np.zeros(_ref_shape(g, v, rows), np.float32) for v in fouts}
    elif variant != "fwd":
        ups = {v: rng.normal(0, 1, _ref_shape(g, v, rows)).astype(np.float32) for v in fouts}
    if io == "bf16":
        vals = {k: bf16_round(v) for k, v in vals.items()}
        ups = {k: bf16_round(v) for k, v in ups.items()}
    fwd, vjp = ref_functions(sub, fouts, gins, train=False)
    with jax.default_matmul_precision("highest"):
        if variant == "fwd":
            ref_out, ref_grad = jax.jit(fwd)(vals), ()
        else:
            ref_out, ref_grad = jax.jit(vjp)(vals, tuple(ups[v] for v in fouts))
    ref = {("output", v): np.asarray(x) for v, x in zip(fouts, ref_out)} if variant in ("fwd", "fwd_bwd") else {}
    ref.update({("grad_input", v): np.asarray(x) for v, x in zip(gins, ref_grad)})

    launch, expect = {}, {}
    for a in args:
        if a.role == "input":
            launch[a.name] = np.array(vals[a.value], dtype=np_dtype(a.type), order="C")
        elif a.role == "grad_output":
            launch[a.name] = np.array(ups[a.value], dtype=np_dtype(a.type), order="C")
        elif a.role in ("output", "grad_input"):
            launch[a.name] = np.zeros(_shape(a.shape, rows), np_dtype(a.type))
            expect[a.name] = ref[(a.role, a.value)]
        elif a.name == "n_rows":
            launch[a.name] = rows
        elif a.role == "seed":
            launch[a.name] = 0
        elif a.name == "dloss":
            launch[a.name] = dloss
        else:
            raise ValueError(f"{spec.name}: no value for argument {a.name}")
    has_dot = spec.family in ("matmul_epilogue", "matmul") and variant == "fwd"
    if io == "bf16":
        tol = "bf16"
    elif has_dot:
        tol = "tf32" if gpu else "f32_sum"
    else:
        tol = "f32" if variant in ("fwd", "fwd_bwd") else "f32_sum"
    direction = {"fwd": "fwd", "fwd_bwd": "fwd+bwd"}.get(variant, "bwd")

    # the XLA side for timing: the same ops with dropout on, as training runs them
    tg = tg if tg is not None else g
    tops = tops if tops is not None else ops
    tsub = sub_graph(tg, tops, ins, fouts)
    tfwd, tvjp = ref_functions(tsub, fouts, gins, train=True)
    cast = (lambda x: x.astype(np_dtype("*bf16")) if x.dtype == np.float32 else x) if io == "bf16" else (lambda x: x)
    tvals = {k: cast(v) for k, v in vals.items()}
    if variant == "fwd":
        xla = XlaRef(lambda vs, key: tfwd(vs, key), (tvals, "key"))
    else:
        xla = XlaRef(lambda vs, us, key: tvjp(vs, us, key), (tvals, tuple(cast(ups[v]) for v in fouts), "key"))
    return KernelCheck(source, kernel_label or spec.name, family or spec.family, direction, io,
                       _shape_str(spec, rows), [(spec, launch)], expect, tol, tspec=tspec, xla=xla)


def _shape(shape, rows):
    return tuple(rows if d == "B" else int(d) for d in shape)


def _ref_shape(g, v, rows):
    return _shape(g.type_of(v).shape, rows)


def bf16_round(x):
    import ml_dtypes
    import numpy as np
    x = np.asarray(x)
    return x.astype(ml_dtypes.bfloat16).astype(np.float32) if x.dtype == np.float32 else x


def matmul_checks(source, g, gen, env, rng, rows, gpu):
    """The strided matmul kernel's two backward launches for each matmul group: dX = dZ W^T, dW = X^T dZ."""
    import jax.numpy as jnp
    import numpy as np
    from mlc.backends.triton.matmul import matmul_backward_launches
    mm = next((s for s in gen.specs if s.variant == "matmul"), None)
    if mm is None:
        return []
    out = []
    for fwd in [s for s in gen.specs if s.variant == "fwd" and s.family in ("matmul_epilogue", "matmul")]:
        x, w, K, N = fwd.extra["x"], fwd.extra["w"], fwd.extra["K"], fwd.extra["N"]
        X = np.ascontiguousarray(env[x], np.float32)
        W = np.ascontiguousarray(env[w], np.float32)
        dZ = rng.normal(0, 1, (rows, N)).astype(np.float32)
        bufs = {"dZ": dZ, "W": W, "X": X, "dX": np.zeros((rows, K), np.float32), "dW": np.zeros((K, N), np.float32)}
        launches = matmul_backward_launches(rows, K, N)
        whiches = ["dW"] + (["dX"] if x not in g.inputs else [])
        for which in whiches:
            args = {k: bufs[v] if isinstance(v, str) else v for k, v in launches[which].items()}
            if which == "dX":
                want = (dZ.astype(np.float64) @ W.T.astype(np.float64)).astype(np.float32)
                xla = XlaRef(lambda dz, w_: jnp.matmul(dz, w_.T), (dZ, W))
                shape = f"{rows}x{N}x{K}"
            else:
                want = (X.T.astype(np.float64) @ dZ.astype(np.float64)).astype(np.float32)
                xla = XlaRef(lambda x_, dz: jnp.matmul(x_.T, dz), (X, dZ))
                shape = f"{K}x{rows}x{N}"
            out.append(KernelCheck(source, f"{mm.name} ({which} of {fwd.group})", "matmul_epilogue", "bwd", "fp32",
                                   shape, [(mm, args)], {"c": want}, "tf32" if gpu else "f32_sum", xla=xla,
                                   note=f"matmul {which}"))
    return out


def _decay_mask(params):
    from mlc.backends.triton.adamw import default_decay
    return {k: default_decay(k, tuple(v.shape)) for k, v in params.items()}


def adamw_check(source, g, gen, rng, steps=3):
    """The fused AdamW update over the flat buffers, `steps` steps, against optax.adamw."""
    import jax.numpy as jnp
    import numpy as np
    import optax
    from mlc.backends.triton.adamw import flat_layout
    spec = next((s for s in gen.specs if s.variant == "update"), None)
    if spec is None:
        return None
    order = spec.extra["order"]
    layout = flat_layout({p: tuple(g.params[p].type.shape) for p in order})
    assert layout.offsets == spec.extra["offsets"], "flat layout differs from the generated kernel's"
    params = {p: rng.normal(0, 0.5, layout.shapes[p]).astype(np.float32) for p in order}
    wd = HYPER["weight_decay"] if spec.extra.get("weight_decay", True) else 0.0
    opt = optax.adamw(HYPER["lr"], b1=HYPER["b1"], b2=HYPER["b2"], eps=HYPER["eps"], weight_decay=wd,
                      mask=_decay_mask)
    ref = {k: jnp.asarray(v) for k, v in params.items()}
    state = opt.init(ref)
    p, m, v = layout.pack(params), np.zeros(layout.size, np.float32), np.zeros(layout.size, np.float32)
    launches = []
    grads = None
    for step in range(1, steps + 1):
        grads = {k: rng.normal(0, 1, s).astype(np.float32) for k, s in layout.shapes.items()}
        upd, state = opt.update({k: jnp.asarray(x) for k, x in grads.items()}, state, ref)
        ref = optax.apply_updates(ref, upd)
        launches.append((spec, {"p_ptr": p, "g_ptr": layout.pack(grads), "m_ptr": m, "v_ptr": v,
                                "n_elements": layout.size, "n_decay": layout.n_decay, "step": step,
                                "lr": HYPER["lr"], "b1": HYPER["b1"], "b2": HYPER["b2"], "eps": HYPER["eps"],
                                "weight_decay": wd, "grad_scale": 1.0}))
    want = layout.pack({k: np.asarray(x) for k, x in ref.items()})

    def xla_update(ps, st, gs):
        u, st = opt.update(gs, st, ps)
        return optax.apply_updates(ps, u), st

    xla = XlaRef(xla_update, (params, "optstate", grads), donate=(0, 1), carry=2)
    xla.opt = opt
    return KernelCheck(source, spec.name, "adamw_update", "update", "fp32", f"{layout.size} params",
                       launches, {"p_ptr": want}, "adamw", xla=xla, note=f"{steps} steps")


def example_checks(name, g_real, rows, rng, gpu, notes):
    """Every kernel generate() makes for one example program."""
    from mlc.backends.triton import generate
    from mlc.fusion import kernels
    g_exact = without_dropout(g_real)
    gen = generate(g_exact)
    gen_real = generate(g_real)
    for grp, why in gen.skipped:
        notes.append(f"{name}: group {grp} has no kernel (runs on the XLA path): {why}")
    ks = {k.name: k for k in kernels(gen.graph)}
    ks_real = {k.name: k for k in kernels(gen_real.graph)}
    tspecs = {s.name: s for s in gen_real.specs}
    params, inputs = random_values(gen.graph, rng, rows)
    env = all_values(gen.graph, params, inputs)
    checks = []
    for spec in gen.specs:
        if spec.variant in ("matmul", "update"):
            continue
        k = ks[spec.group]
        ops = k.ops[1:] if spec.variant == "epilogue_bwd" else k.ops
        tops = ks_real[spec.group].ops
        tops = tops[1:] if spec.variant == "epilogue_bwd" else tops
        checks.append(spec_check(name, gen.graph, ops, spec, env, rng, rows, gpu=gpu,
                                 tspec=tspecs.get(spec.name), tg=gen_real.graph, tops=tops))
    checks += matmul_checks(name, gen.graph, gen, env, rng, rows, gpu)
    a = adamw_check(name, gen.graph, gen, rng)
    if a is not None:
        checks.append(a)
    return checks


def catalog_checks(rows, rng, gpu, quick):
    """Families the two programs lack: elementwise chains, layer norm, softmax cross-entropy,
    embedding gather / scatter-add, the input layer (one-hot + embedding + concat)."""
    from mlc.backends.triton import catalog as C
    from mlc.backends.triton.tile import tile_kernel
    if gpu:
        cases = [(C.elementwise_chain(255), ("fp32", "bf16")), (C.layernorm(255, "gelu"), ("fp32", "bf16")),
                 (C.softmax_ce(1001, 0.1), ("fp32", "bf16")), (C.row_loss("huber"), ("fp32",)),
                 (C.embedding(1009, 63), ("fp32",)), (C.assemble(100, 20, 1000, 32), ("fp32",))]
    else:
        cases = [(C.elementwise_chain(53), ("fp32", "bf16")), (C.layernorm(53, "gelu"), ("fp32", "bf16")),
                 (C.softmax_ce(53, 0.1), ("fp32",)), (C.row_loss("huber"), ("fp32",)),
                 (C.embedding(11, 13), ("fp32",)), (C.assemble(), ("fp32",))]
    out = []
    for case, ios in cases:
        values = C.draw(case, rows, seed=int(rng.integers(1 << 30)))
        for io in ios[:1] if quick else ios:
            kw = dict(io=io, family=case.family)
            variants = ["fwd", "bwd"]
            if any(case.types[o].shape == () for o in case.outputs):
                variants.append("fwd_bwd")
            for variant in variants:
                if io == "bf16" and variant == "fwd_bwd":
                    continue
                spec = tile_kernel(f"check_{case.name}_{io}_{variant}", case.ops, case.inputs, case.outputs,
                                   case.types, variant=variant, wrt=case.wrt if variant != "fwd" else (), **kw)
                out.append(spec_check("catalog", case.graph, case.ops, spec, values, rng, rows, io=io, gpu=gpu,
                                      kernel_label=f"{case.name} {variant}" + (" bf16" if io == "bf16" else "")))
    return out


# ---- running a kernel check -----------------------------------------------------------------------
def jax_args(args, jdev, xla):
    import jax
    import jax.numpy as jnp
    out = []
    for a in args:
        if isinstance(a, str) and a == "key":
            out.append(jax.device_put(jax.random.PRNGKey(0), jdev))
        elif isinstance(a, str) and a == "optstate":
            out.append(None)  # filled below from the params
        else:
            out.append(jax.device_put(jax.tree_util.tree_map(jnp.asarray, a), jdev))
    if any(isinstance(a, str) and a == "optstate" for a in args):
        i = [j for j, a in enumerate(args) if isinstance(a, str) and a == "optstate"][0]
        out[i] = jax.device_put(xla.opt.init(out[0]), jdev)
    return out


def time_xla(xla: XlaRef, jdev, cfg):
    import jax
    args = jax_args(xla.args, jdev, xla)
    jf = jax.jit(xla.fn, donate_argnums=xla.donate)
    holder = {"out": None, "args": args}

    def call():
        out = jf(*holder["args"])
        holder["out"] = out
        if xla.carry:
            holder["args"] = list(out[:xla.carry]) + holder["args"][xla.carry:]

    return bench(call, lambda: jax.block_until_ready(holder["out"]), cfg.warmup, cfg.reps, cfg.inner)


def run_check(B, chk: KernelCheck, jdev, cfg) -> dict:
    import numpy as np
    row = {"source": chk.source, "kernel": chk.kernel, "family": chk.family, "dir": chk.direction,
           "io": chk.io, "shape": chk.shape, "tol": chk.tol, "rtol_atol": list(TOLS[chk.tol]), "note": chk.note,
           "max_abs": None, "max_rel": None, "ok": False, "error": None,
           "triton_ms": None, "triton_gpu_ms": None, "xla_ms": None, "ratio": None}
    try:
        dev = {}

        def d(v):
            if isinstance(v, np.ndarray):
                if id(v) not in dev:
                    dev[id(v)] = (v, B.from_numpy(v))
                return dev[id(v)][1]
            return v

        dargs = None
        for spec, args in chk.launches:
            dargs = {k: d(v) for k, v in args.items()}
            for a in spec.args:
                if a.zero_init:
                    B.zero(dargs[a.name])
            B.launcher(spec, dargs)()
        B.sync()
        res = merge([compare(B.to_numpy(dargs[k]), want, chk.tol) for k, want in chk.expect.items()])
        row.update(max_abs=res["max_abs"], max_rel=res["max_rel"], ok=res["ok"])
        if res.get("why"):
            row["error"] = res["why"]
    except Exception as e:  # noqa: BLE001
        row["error"] = f"{type(e).__name__}: {e}"
        if cfg.verbose:
            traceback.print_exc()
        return row
    if B.interpreter:
        return row
    if cfg.timing_skipped():
        row["note"] = (row["note"] + "; " if row["note"] else "") + f"not timed: {cfg.timing_skipped()}"
        return row
    try:
        spec = chk.tspec or chk.launches[-1][0]
        targs = dict(dargs)
        for a in spec.args:
            if a.name not in targs:
                if a.role == "seed":
                    targs[a.name] = 0
                else:
                    raise ValueError(f"timed kernel {spec.name}: no value for {a.name}")
        launch = B.launcher(spec, targs)
        zero = [targs[a.name] for a in spec.args if a.zero_init]

        def call():
            for z in zero:
                B.zero(z)
            launch()

        row["triton_ms"] = bench(call, B.sync, cfg.warmup, cfg.reps, cfg.inner)
        row["triton_gpu_ms"] = B.gpu_ms(call, cfg.reps)
        if chk.xla is not None and cfg.xla_on_gpu:
            row["xla_ms"] = time_xla(chk.xla, jdev, cfg)
            row["ratio"] = row["triton_ms"] / row["xla_ms"]
    except Exception as e:  # noqa: BLE001
        row["error"] = f"timing: {type(e).__name__}: {e}"
        row["ok"] = False
        if cfg.verbose:
            traceback.print_exc()
    return row


def setup_error(source, e, cfg) -> dict:
    """A failing row for checks that could not even be set up."""
    if cfg.verbose:
        traceback.print_exc()
    return {"source": source, "kernel": "(setting up the checks)", "family": "-", "dir": "-", "io": "-",
            "shape": "-", "tol": "f32", "rtol_atol": list(TOLS["f32"]), "note": "", "max_abs": None,
            "max_rel": None, "ok": False, "error": f"{type(e).__name__}: {e}", "triton_ms": None,
            "triton_gpu_ms": None, "xla_ms": None, "ratio": None}


# ---- a whole training step from the generated kernels ------------------------------------------------
class Chain:
    """The generated kernels of one Generation, chained into a training step on device buffers,
    in runner.train_step's order: forwards (the loss group's fused fwd_bwd instead of its
    forward), backwards in reverse (epilogue backward, then the strided matmul for dW and dX),
    then one AdamW update over the flat parameter buffer. Buffers are allocated once."""

    def __init__(self, B, gen, params, inputs, rows, seed=0):
        import numpy as np
        from mlc.backends.triton.adamw import flat_layout
        from mlc.backends.triton.matmul import matmul_backward_launches
        g = gen.graph
        if gen.skipped:
            raise ValueError(f"groups without kernels: {gen.skipped}")
        self.B, self.g, self.rows = B, g, rows
        upd = next(s for s in gen.specs if s.variant == "update")
        order = upd.extra["order"]
        self.layout = layout = flat_layout({p: tuple(g.params[p].type.shape) for p in order})
        if set(order) != set(g.params):
            raise ValueError("the update group does not hold every parameter")
        self.P = B.from_numpy(layout.pack(params))
        self.G = B.zeros((layout.size,), np.float32)
        self.M = B.zeros((layout.size,), np.float32)
        self.V = B.zeros((layout.size,), np.float32)
        env = {p: B.view(self.P, layout.offsets[p], layout.shapes[p]) for p in order}
        env.update({k: B.from_numpy(v) for k, v in inputs.items()})
        self.env = env
        grads: dict = {}
        zeros_cache: dict = {}
        self.calls = [lambda: B.zero(self.G)]

        def zeros_like(shape):
            if shape not in zeros_cache:
                zeros_cache[shape] = B.zeros(shape, np.float32)
            return zeros_cache[shape]

        def target(v, zero_init, shape):
            """(buffer to write d v into, buffers to zero first, (dst, src) to add after)."""
            if v not in grads:
                if v in g.params:
                    buf, zero = B.view(self.G, layout.offsets[v], layout.shapes[v]), []
                else:
                    buf = B.zeros(shape, np.float32)
                    zero = [buf] if zero_init else []
                grads[v] = buf
                return buf, zero, None
            if zero_init:
                return grads[v], [], None
            tmp = B.zeros(shape, np.float32)
            return tmp, [], (grads[v], tmp, int(np.prod(shape)))

        def add_launch(spec, argmap, zero, post):
            launch = B.launcher(spec, argmap)
            adds = [B.add_into(dst, src, n) for dst, src, n in post]

            def call():
                for z in zero:
                    B.zero(z)
                launch()
                for a in adds:
                    a()
            self.calls.append(call)

        def plan(spec, dloss=None):
            argmap, zero, post = {}, [], []
            for a in spec.args:
                shape = _shape(a.shape, rows)
                if a.role == "input":
                    argmap[a.name] = env[a.value]
                elif a.role == "output":
                    if a.value not in env:
                        env[a.value] = B.zeros(shape, np_dtype(a.type))
                    argmap[a.name] = env[a.value]
                    if a.zero_init:
                        zero.append(env[a.value])
                elif a.role == "grad_output":
                    argmap[a.name] = grads.get(a.value) if a.value in grads else zeros_like(shape)
                elif a.role == "grad_input":
                    buf, z, p = target(a.value, a.zero_init, shape)
                    argmap[a.name] = buf
                    zero += z
                    if p:
                        post.append(p)
                elif a.name == "n_rows":
                    argmap[a.name] = rows
                elif a.role == "seed":
                    argmap[a.name] = seed
                elif a.name == "dloss":
                    argmap[a.name] = 1.0 if dloss is None else dloss
                else:
                    raise ValueError(f"{spec.name}: no value for argument {a.name}")
            add_launch(spec, argmap, zero, post)

        groups: dict = {}
        for s in gen.specs:
            if s.group is not None and s.variant != "update":
                groups.setdefault(s.group, {})[s.variant] = s
        consumers: dict = {}
        for gname, variants in groups.items():
            for a in variants["fwd"].args:
                if a.role == "input":
                    consumers.setdefault(a.value, set()).add(gname)
        self.loss_value = loss_value = g.outputs["loss"]
        fused = set()
        for gname, variants in groups.items():
            fb = variants.get("fwd_bwd")
            outs = [a.value for a in variants["fwd"].args if a.role == "output"]
            if fb is not None and loss_value in outs and not any(consumers.get(o) for o in outs):
                plan(fb, dloss=1.0)
                fused.add(gname)
            else:
                plan(variants["fwd"])
        if loss_value not in grads and not fused:
            grads[loss_value] = B.from_numpy(np.ones((), np.float32))
        mm = next((s for s in gen.specs if s.variant == "matmul"), None)
        for gname in reversed(list(groups)):
            if gname in fused:
                continue
            variants = groups[gname]
            fwd = variants["fwd"]
            if fwd.family in ("matmul_epilogue", "matmul"):
                x, w, z, K, N = (fwd.extra[k] for k in ("x", "w", "z", "K", "N"))
                eb = variants.get("epilogue_bwd")
                if eb is not None:
                    plan(eb)
                    dz = grads.pop(z)
                else:
                    dz = grads.get(z, zeros_like((rows, N)))
                launches = matmul_backward_launches(rows, K, N)
                for which in ("dW",) + (("dX",) if x not in g.inputs else ()):
                    v, shape = (w, (K, N)) if which == "dW" else (x, (rows, K))
                    buf, zero, post = target(v, False, shape)
                    bufs = {"dZ": dz, "W": env[w], "X": env[x], which: buf}
                    add_launch(mm, {k: bufs[b] if isinstance(b, str) else b for k, b in launches[which].items()},
                               zero, [post] if post else [])
            elif "bwd" in variants:
                plan(variants["bwd"])
        wd = HYPER["weight_decay"] if upd.extra.get("weight_decay", True) else 0.0
        add_launch(upd, {"p_ptr": self.P, "g_ptr": self.G, "m_ptr": self.M, "v_ptr": self.V,
                         "n_elements": layout.size, "n_decay": layout.n_decay, "step": 1, "lr": HYPER["lr"],
                         "b1": HYPER["b1"], "b2": HYPER["b2"], "eps": HYPER["eps"], "weight_decay": wd,
                         "grad_scale": 1.0}, [], [])
        self.n_launches = len(self.calls)

    def step(self):
        for c in self.calls:
            c()

    def results(self):
        B = self.B
        return (B.to_numpy(self.env[self.loss_value]), self.layout.unpack(B.to_numpy(self.G)),
                self.layout.unpack(B.to_numpy(self.P)))


def jax_step_fns(g, train):
    import jax
    import optax
    from mlc.backends.jax_backend import build
    fn = build(g, ["loss"])
    opt = optax.adamw(HYPER["lr"], b1=HYPER["b1"], b2=HYPER["b2"], eps=HYPER["eps"],
                      weight_decay=HYPER["weight_decay"], mask=_decay_mask)

    def step(params, state, inputs, key):
        loss, grads = jax.value_and_grad(lambda p: fn(p, inputs, key, train)["loss"])(params)
        updates, state = opt.update(grads, state, params)
        return optax.apply_updates(params, updates), state, loss, grads

    return step, opt


def step_check(name, g_real, batch, B, jdev, rng, cfg) -> dict:
    import jax
    import numpy as np
    import optax
    from mlc.backends.triton import generate
    row = {"program": name, "batch": batch, "launches": None, "max_abs": None, "max_rel": None, "ok": False,
           "tol": None, "error": None, "note": "", "triton_ms": None, "triton_graph_ms": None, "jax_ms": None,
           "ratio": None, "graph_ratio": None}
    tol = "tf32" if not B.interpreter else "f32_sum"
    row["tol"] = tol
    try:
        g_exact = without_dropout(g_real)
        gen = generate(g_exact)
        params, inputs = random_values(gen.graph, rng, batch)
        chain = Chain(B, gen, params, inputs, batch)
        row["launches"] = chain.n_launches
        chain.step()
        loss, grads, new_params = chain.results()
        step, opt = jax_step_fns(gen.graph, train=False)
        with jax.default_matmul_precision("highest"):
            p0 = {k: jax.device_put(v, jdev) for k, v in params.items()}
            xs = {k: jax.device_put(v, jdev) for k, v in inputs.items()}
            _, _, jloss, jgrads = jax.jit(step)(p0, opt.init(p0), xs, None)
            # the update is judged on the chain's own gradients (JAX's differ by TF32 rounding on a GPU,
            # and Adam's first step, g / (|g| + eps), turns a tiny gradient's rounding into a whole step)
            tg = {k: jax.device_put(v, jdev) for k, v in grads.items()}
            upd, _ = jax.jit(opt.update)(tg, opt.init(p0), p0)
            p1 = jax.jit(optax.apply_updates)(p0, upd)
        parts = [compare(loss, np.asarray(jloss), tol)]
        parts += [compare(grads[k], np.asarray(jgrads[k]), tol) for k in gen.graph.params]
        parts += [compare(new_params[k], np.asarray(p1[k]), "adamw") for k in gen.graph.params]
        res = merge(parts)
        row.update(max_abs=res["max_abs"], max_rel=res["max_rel"], ok=res["ok"])
        if res.get("why"):
            row["error"] = res["why"]
    except Exception as e:  # noqa: BLE001
        row["error"] = f"{type(e).__name__}: {e}"
        if cfg.verbose:
            traceback.print_exc()
        return row
    if B.interpreter:
        return row
    if cfg.timing_skipped():
        row["note"] = f"not timed: {cfg.timing_skipped()}"
        return row
    try:
        gen_r = generate(g_real)
        chain = Chain(B, gen_r, params, inputs, batch)
        row["triton_ms"] = bench(chain.step, B.sync, cfg.warmup, cfg.reps, cfg.inner)
        if B.name == "torch":
            row["triton_graph_ms"] = cuda_graph_ms(B, chain, cfg)
        if cfg.xla_on_gpu:
            step, opt = jax_step_fns(gen_r.graph, train=True)
            jstep = jax.jit(step, donate_argnums=(0, 1))
            p = {k: jax.device_put(v, jdev) for k, v in params.items()}
            h = {"p": p, "s": jax.device_put(opt.init(p), jdev), "out": None}
            xs = {k: jax.device_put(v, jdev) for k, v in inputs.items()}
            key = jax.device_put(jax.random.PRNGKey(0), jdev)

            def call():
                out = jstep(h["p"], h["s"], xs, key)
                h["p"], h["s"], h["out"] = out[0], out[1], out

            row["jax_ms"] = bench(call, lambda: jax.block_until_ready(h["out"]), cfg.warmup, cfg.reps, cfg.inner)
            row["ratio"] = row["triton_ms"] / row["jax_ms"]
            if row["triton_graph_ms"]:
                row["graph_ratio"] = row["triton_graph_ms"] / row["jax_ms"]
    except Exception as e:  # noqa: BLE001
        row["error"] = f"timing: {type(e).__name__}: {e}"
        row["ok"] = False
        if cfg.verbose:
            traceback.print_exc()
    return row


def cuda_graph_ms(B, chain, cfg):
    """The chain captured once as a CUDA graph and replayed (None when capture fails)."""
    torch = B.torch
    try:
        s = torch.cuda.Stream()
        s.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(s):
            for _ in range(3):
                chain.step()
        torch.cuda.current_stream().wait_stream(s)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            chain.step()
        return bench(graph.replay, B.sync, cfg.warmup, cfg.reps, cfg.inner)
    except Exception as e:  # noqa: BLE001
        log(f"  CUDA graph capture failed ({type(e).__name__}: {e}); column left empty")
        return None


# ---- the whole jitted training step: mlc_fused primitives vs XLA -------------------------------------
def fused_step_check(name, g_real, batch, launcher, jdev, rng, cfg) -> dict:
    """jax.jit(jax.value_and_grad(loss)) in train mode (key given), the loss built by
    primitive.build (each fused group an `mlc_fused` primitive: its Triton kernels through
    jax-triton on cuda, under Triton's interpreter with launcher="interpret") against
    jax_backend.build (XLA). Correctness on a dropout-free copy (the loss and every parameter
    gradient); times with dropout on, as training runs it; xla_over_fused = xla_ms / fused_ms."""
    import jax
    import numpy as np
    from mlc.backends import jax_backend
    from mlc.backends.triton import primitive
    interp = launcher == "interpret"
    row = {"program": name, "batch": batch, "launcher": launcher, "max_abs": None, "max_rel": None,
           "tol": "f32_sum" if interp else "tf32", "ok": False, "skipped": None, "error": None, "note": "",
           "fused_compile_s": None, "fused_ms": None, "xla_ms": None, "xla_over_fused": None}
    if not interp:
        from mlc.backends.triton import jax_call
        why = jax_call.cuda_kernel_calls()
        if why is None and jdev.platform not in ("gpu", "cuda"):
            why = f"JAX has no GPU backend (the XLA side runs on {jdev.platform}): mlc_fused would lower to its " \
                  f"jax.numpy reference, not to the Triton kernels"
        if why is not None:
            row["skipped"] = why
            log(f"  fused step {name}: skipped: {why}")
            return row
    if cfg.hard_deadline is not None and time.perf_counter() > cfg.hard_deadline:
        row["skipped"] = "time budget spent (--budget): not run"
        return row

    def vg(fn):
        return jax.jit(jax.value_and_grad(lambda p, x, k: fn(p, x, k, True)["loss"]))

    def put(tree):
        return jax.device_put(tree, jdev)

    key = put(jax.random.PRNGKey(0))
    try:
        g_exact = without_dropout(g_real)
        params, inputs = random_values(g_exact, rng, batch)
        p, xs = put(params), put(inputs)
        with jax.default_matmul_precision("highest"):
            jloss, jgrads = vg(jax_backend.build(g_exact, ["loss"]))(p, xs, key)
            floss, fgrads = vg(primitive.build(g_exact, ["loss"], launcher=launcher))(p, xs, key)
        missing = sorted(set(g_exact.params) - set(fgrads))
        parts = [compare(np.asarray(floss), np.asarray(jloss), row["tol"])]
        parts += [compare(np.asarray(fgrads[k]), np.asarray(jgrads[k]), row["tol"]) for k in g_exact.params
                  if k in fgrads]
        res = merge(parts)
        row.update(max_abs=res["max_abs"], max_rel=res["max_rel"], ok=res["ok"] and not missing)
        if missing:
            row["error"] = f"no gradient for {missing}"
        elif res.get("why"):
            row["error"] = res["why"]
    except Exception as e:  # noqa: BLE001
        row["error"] = f"{type(e).__name__}: {e}"
        if cfg.verbose:
            traceback.print_exc()
        return row
    if cfg.timing_skipped():
        row["note"] = f"not timed: {cfg.timing_skipped()}"
        return row
    # timed with dropout on; under the interpreter the same code runs once (a smoke test of
    # this path for the GPU run), its times not reported
    warmup, reps, inner = (1, 1, 1) if interp else (cfg.warmup, cfg.reps, cfg.inner)
    try:
        times = {}
        for side, fn in (("fused", primitive.build(g_real, ["loss"], launcher=launcher)),
                         ("xla", jax_backend.build(g_real, ["loss"]))):
            f = vg(fn)
            t0 = time.perf_counter()
            jax.block_until_ready(f(p, xs, key))
            if side == "fused":
                row["fused_compile_s"] = round(time.perf_counter() - t0, 2)
            h = {"out": None}

            def call(f=f, h=h):
                h["out"] = f(p, xs, key)

            times[side] = bench(call, lambda h=h: jax.block_until_ready(h["out"]), warmup, reps, inner)
        if interp:
            row["note"] = "timing path run once under the interpreter; times not reported"
        else:
            row.update(fused_ms=times["fused"], xla_ms=times["xla"], xla_over_fused=times["xla"] / times["fused"])
    except Exception as e:  # noqa: BLE001
        row["error"] = f"timing: {type(e).__name__}: {e}"
        row["ok"] = False
        if cfg.verbose:
            traceback.print_exc()
    return row


# ---- the report ---------------------------------------------------------------------------------
def _f(x, spec="{:.3g}"):
    return "-" if x is None else spec.format(x)


def _ms(x):
    return "-" if x is None else (f"{x:.4f}" if x < 0.1 else f"{x:.3f}" if x < 10 else f"{x:.1f}")


def table(headers, rows) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]
    line = lambda cells: "  ".join(c.ljust(w) for c, w in zip(cells, widths)).rstrip()  # noqa: E731
    return "\n".join([line(headers), line(["-" * w for w in widths])] + [line(r) for r in rows])


def summarize(rows) -> list[dict]:
    out = []
    for fam in FAMILIES:
        for d in DIRECTIONS:
            rs = [r for r in rows if r["family"] == fam and r["dir"] == d]
            if not rs:
                continue
            ratios = [r["ratio"] for r in rs if r["ratio"]]
            rels = [r["max_rel"] for r in rs if r["max_rel"] is not None]
            out.append({"family": fam, "dir": d, "kernels": len(rs), "passed": sum(bool(r["ok"]) for r in rs),
                        "ok": all(r["ok"] for r in rs), "worst_rel": max(rels) if rels else None,
                        "geomean_ratio": math.exp(sum(map(math.log, ratios)) / len(ratios)) if ratios else None,
                        "triton_ms": sum(r["triton_ms"] for r in rs) if all(r["triton_ms"] for r in rs) else None,
                        "xla_ms": sum(r["xla_ms"] for r in rs) if all(r["xla_ms"] for r in rs) else None})
    return out


def fused_section(fused, interp: bool) -> list[str]:
    """The whole jitted training step, mlc_fused against XLA: its printed lines."""
    lines = ["", "Whole jitted training step: mlc_fused (Triton kernels via jax-triton) vs XLA",
             "  jax.jit(jax.value_and_grad(loss)), train mode, key given; loss from primitive.build vs "
             "jax_backend.build; correct: the loss and every parameter gradient (dropout rates 0); "
             + ("launcher \"interpret\": the same kernels under Triton's interpreter, no timings" if interp else
                "times with dropout on; xla/fused = xla ms / fused ms (above 1: mlc_fused faster)")]
    t = (lambda x: "interp") if interp else _ms
    lines.append(table(["program", "batch", "launcher", "max abs", "max rel", "tol", "ok", "fused compile s",
                        "fused ms", "xla ms", "xla/fused"],
                       [[s["program"], str(s["batch"]), s["launcher"], _f(s["max_abs"]), _f(s["max_rel"]),
                         s["tol"], "SKIPPED" if s["skipped"] else "PASS" if s["ok"] else "FAIL",
                         "-" if interp or s["skipped"] else _f(s["fused_compile_s"], "{:.1f}"),
                         "-" if s["skipped"] else t(s["fused_ms"]), "-" if s["skipped"] else t(s["xla_ms"]),
                         "-" if interp else _f(s["xla_over_fused"], "{:.2f}")] for s in fused]))
    for s in fused:
        why = s["skipped"] and f"skipped: {s['skipped']}" or s["error"] or s["note"]
        if why:
            lines.append(f"  fused step {s['program']} batch {s['batch']}: {why}")
    return lines


def report(meta, rows, fams, steps, cfg, fused=()) -> str:
    interp = meta["mode"] == "interpreter"
    lines = [f"mlc gpu_check  {meta['date']}",
             f"device: {meta['device']}" + (f" ({meta['compute_capability']})" if meta.get("compute_capability")
                                              else "") + (f", {meta['memory']}" if meta.get("memory") else ""),
             f"driver: {meta['driver']}; CUDA: {meta['cuda']}",
             "versions: " + ", ".join(f"{k} {v}" for k, v in meta["versions"].items()) +
             f", python {meta['python']}",
             f"buffers: {meta['backend']}; XLA side on {meta['xla_device']}" +
             (f"; mlc {meta['commit']}" if meta.get("commit") else ""),
             f"command: {meta['command']}"]
    if interp:
        lines.append("times: Triton's interpreter on the CPU: correctness only, no timings (ratios not computed)")
    else:
        lines.append(f"times: ms per call, median of {cfg.reps} runs of {cfg.inner} back-to-back calls + sync "
                     f"after {cfg.warmup} warmup calls; ratio = Triton / XLA (below 1: Triton faster); "
                     f"triton gpu = do_bench median (CUDA events)")
    for n in meta["notes"]:
        lines.append(f"note: {n}")
    t = (lambda x: "interp") if interp else _ms
    lines += ["", "Kernels (each against the jax.numpy reference of its ops)"]
    lines.append(table(
        ["source", "kernel", "family", "dir", "io", "shape", "max abs", "max rel", "tol", "ok", "triton ms",
         "triton gpu", "xla ms", "ratio"],
        [[r["source"], r["kernel"], r["family"], r["dir"], r["io"], r["shape"], _f(r["max_abs"]), _f(r["max_rel"]),
          f"{r['tol']} {TOLS[r['tol']][0]:g}", "PASS" if r["ok"] else "FAIL", t(r["triton_ms"]),
          "-" if interp else _ms(r["triton_gpu_ms"]), t(r["xla_ms"]), "-" if interp else _f(r["ratio"], "{:.2f}")]
         for r in rows]))
    for r in rows:
        if r["error"]:
            lines.append(f"  {r['source']} {r['kernel']}: {r['error']}")
    untimed = [r for r in rows if "not timed" in (r["note"] or "")]
    if untimed:
        lines.append(f"  {len(untimed)} kernels not timed: {untimed[0]['note'].split('not timed: ')[-1]}")
    lines += ["", "Families (geomean of the kernels' ratios)"]
    lines.append(table(["family", "dir", "kernels", "correct", "worst rel", "triton ms", "xla ms", "ratio"],
                       [[f["family"], f["dir"], str(f["kernels"]), f"{f['passed']}/{f['kernels']}",
                         _f(f["worst_rel"]), t(f["triton_ms"]), t(f["xla_ms"]),
                         "-" if interp else _f(f["geomean_ratio"], "{:.2f}")] for f in fams]))
    lines += ["", "Training step (generated-kernel chain vs the jitted JAX step; forward, backward, AdamW)"]
    lines.append(table(["program", "batch", "launches", "max abs", "max rel", "tol", "ok", "triton ms",
                        "triton graph ms", "jax ms", "ratio", "graph ratio"],
                       [[s["program"], str(s["batch"]), _f(s["launches"], "{}"), _f(s["max_abs"]), _f(s["max_rel"]),
                         s["tol"] or "-", "PASS" if s["ok"] else "FAIL", t(s["triton_ms"]),
                         "-" if interp else _ms(s["triton_graph_ms"]), t(s["jax_ms"]),
                         "-" if interp else _f(s["ratio"], "{:.2f}"),
                         "-" if interp else _f(s["graph_ratio"], "{:.2f}")] for s in steps]))
    for s in steps:
        if s["error"] or s["note"]:
            lines.append(f"  step {s['program']} batch {s['batch']}: {s['error'] or s['note']}")
    lines += fused_section(fused, interp)
    ran = [s for s in fused if not s["skipped"]]
    n_ok = sum(r["ok"] for r in rows) + sum(s["ok"] for s in steps) + sum(s["ok"] for s in ran)
    n = len(rows) + len(steps) + len(ran)
    skipped = len(fused) - len(ran)
    lines += ["", f"{'ALL PASS' if n_ok == n else 'FAILED'}: {n_ok}/{n} checks pass"
              + (f" ({skipped} whole-step mlc_fused checks skipped, reasons above)" if skipped else "")]
    return "\n".join(lines)


# ---- main ----------------------------------------------------------------------------------------
@dataclass
class Config:
    warmup: int
    reps: int
    inner: int
    verbose: bool = False
    no_timing: bool = False
    xla_on_gpu: bool = True
    deadline: float = float("inf")  # time.perf_counter() after which timings are skipped
    hard_deadline: float | None = None  # after which the whole-step mlc_fused checks are not even started

    def timing_skipped(self) -> str | None:
        if self.no_timing:
            return "--no-timing"
        if time.perf_counter() > self.deadline:
            return "time budget spent (--budget)"
        return None


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="fewer repeats, a smaller batch, no bf16 rows")
    p.add_argument("--interpret", action="store_true",
                   help="no GPU: run the kernels under Triton's interpreter on the CPU (tiny shapes, correctness only)")
    p.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    p.add_argument("--rows", type=int, help="batch rows for the kernel checks (default 50000, --quick 10000, "
                                            "--interpret 37)")
    p.add_argument("--reps", type=int, help="timed repeats (default 30, --quick 10)")
    p.add_argument("--backend", choices=("auto", "torch", "jax"), default="auto",
                   help="device buffers: torch tensors or JAX arrays (auto: torch when it sees CUDA)")
    p.add_argument("--no-timing", action="store_true", help="correctness only")
    p.add_argument("--budget", type=float, default=270.0,
                   help="seconds for the timings: kernels until 60%%, training-step chains until 75%%, "
                        "mlc_fused steps until 90%%; correctness still runs, mlc_fused steps not started past "
                        "100%% (default 270, to stay under five minutes)")
    p.add_argument("--verbose", action="store_true", help="print tracebacks of failing checks")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    os.environ.setdefault("TRITON_DEFAULT_FP_FUSION", "1")  # Triton 3.9 warns when it is implicit
    if args.interpret:
        os.environ["TRITON_INTERPRET"] = "1"
        os.environ["JAX_PLATFORMS"] = "cpu"
    else:
        os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")  # leave memory to Triton's buffers
    try:
        import triton  # noqa: F401
    except ImportError as e:
        fail(f"triton is not importable ({e}); pip install triton (3.9.0 is the tested version)")
    t_start = time.perf_counter()
    _import_mlc()
    import numpy as np

    notes: list[str] = []
    backend, jdev, bnotes = pick_backend(args)
    notes += bnotes
    gpu = not backend.interpreter
    rows = args.rows or (37 if not gpu else 10000 if args.quick else 50000)
    reps = args.reps or (10 if args.quick else 30)
    cfg = Config(warmup=3 if args.quick else 5, reps=reps, inner=5 if args.quick else 10, verbose=args.verbose,
                 no_timing=args.no_timing, xla_on_gpu=jdev.platform not in ("cpu",),
                 deadline=t_start + 0.6 * args.budget)  # the rest is kept for the training steps
    meta = environment(backend, jdev, args, notes)
    meta.update(rows=rows, reps=reps, inner=cfg.inner, warmup=cfg.warmup, quick=args.quick)
    log(f"gpu_check: {meta['device']}; buffers: {backend.name}; rows {rows}")

    rng = np.random.default_rng(0)
    checks, graphs, results = [], {}, []
    for name in EXAMPLES:
        log(f"  generating kernels for examples/{name}.dml")
        try:
            graphs[name] = example_graph(name, notes)
            checks += example_checks(name, graphs[name], rows, rng, gpu, notes)
        except Exception as e:  # noqa: BLE001
            results.append(setup_error(name, e, cfg))
    have = {(c.family, c.direction) for c in checks}
    lacking = [f"{f} {d}" for f in FAMILIES[:4] for d in ("fwd", "bwd") if (f, d) not in have]
    if lacking:
        notes.append(f"{' and '.join(EXAMPLES)} generate no {', '.join(lacking)} kernels: the catalog cases "
                     f"(mlc/backends/triton/catalog.py) stand in for them")
    log("  catalog cases")
    try:
        checks += catalog_checks(rows, rng, gpu, args.quick)
    except Exception as e:  # noqa: BLE001
        results.append(setup_error("catalog", e, cfg))
    for i, chk in enumerate(checks, 1):
        t0 = time.perf_counter()
        r = run_check(backend, chk, jdev, cfg)
        results.append(r)
        log(f"  [{i}/{len(checks)}] {chk.source} {chk.kernel}: {'pass' if r['ok'] else 'FAIL'}"
            f" ({time.perf_counter() - t0:.1f}s)" + (f" {r['error']}" if r["error"] else ""))
    steps = []
    cfg.deadline = t_start + 0.75 * args.budget  # the rest is kept for the mlc_fused steps
    batches = [37] if not gpu else sorted({128, rows})
    for name in graphs:
        for batch in batches:
            t0 = time.perf_counter()
            s = step_check(name, graphs[name], batch, backend, jdev, rng, cfg)
            steps.append(s)
            log(f"  step {name} batch {batch}: {'pass' if s['ok'] else 'FAIL'} ({time.perf_counter() - t0:.1f}s)"
                + (f" {s['error']}" if s["error"] else ""))
    # the whole jitted step with mlc_fused primitives: at the programs' batch size on a GPU
    # (under the interpreter: a small batch, and with --quick one program)
    cfg.deadline, cfg.hard_deadline = t_start + 0.9 * args.budget, t_start + args.budget
    fused = []
    launcher = "triton" if gpu else "interpret"
    fused_batch = 128 if gpu else 16 if args.quick else 37
    for name in list(graphs)[:1] if (args.quick and not gpu) else graphs:
        t0 = time.perf_counter()
        s = fused_step_check(name, graphs[name], fused_batch, launcher, jdev, rng, cfg)
        fused.append(s)
        log(f"  fused step {name} batch {fused_batch} ({launcher}): "
            f"{'skipped' if s['skipped'] else 'pass' if s['ok'] else 'FAIL'} ({time.perf_counter() - t0:.1f}s)"
            + (f" {s['error']}" if s["error"] else ""))
    fams = summarize(results)
    meta["notes"] = notes
    meta["seconds"] = round(time.perf_counter() - t_start, 1)
    print(report(meta, results, fams, steps, cfg, fused))
    print(f"({meta['seconds']} s)")
    ok = all(r["ok"] for r in results) and all(s["ok"] for s in steps) and \
        all(s["ok"] for s in fused if not s["skipped"])
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps({"meta": meta, "kernels": results, "families": fams, "steps": steps,
                                               "fused_steps": fused, "ok": ok}, indent=1, default=str))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
