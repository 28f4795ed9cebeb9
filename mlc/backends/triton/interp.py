"""Run generated kernels on the CPU with Triton's interpreter, on numpy arrays.

Triton 3.9's interpreter handles each tensor argument the way it handles a torch
tensor on a device: `untyped_storage().data_ptr()` to group arguments by
storage, `storage.cpu()`, `new_empty(0, device=...)` and `set_(storage, offset,
size, stride)` to make a host view, `data_ptr()` and `dtype` to build the
pointer, and `copy_` to write results back. `NumpyTensor` answers all of these
without copying: the "host view" is the same numpy array, so kernels read and
write the caller's arrays in place.

Two more things make the interpreter usable in a process that also compiles
kernels (tests do both):
- Triton's library functions (`tl.sum`, `tl.max`, `tl.rand`, ...) are
  JITFunctions unless TRITON_INTERPRET=1 was set before `import triton`; while a
  kernel runs here they are swapped for interpreted twins, then restored.
- A nested interpreted call patches triton.language and never restores it,
  which breaks later compilation; our twins restore what they patch.
"""
from __future__ import annotations

import contextlib
import sys

import numpy as np

from .spec import KernelSpec


class _Storage:
    def __init__(self, array: np.ndarray):
        self.array = array

    def data_ptr(self) -> int:
        return self.array.ctypes.data

    def cpu(self):
        return self

    def copy_(self, other):
        return self  # the host view is this very array: nothing to copy back


class NumpyTensor:
    """A zero-copy, torch-like view of a numpy array, as the interpreter expects."""

    def __init__(self, array: np.ndarray | None = None):
        self.array = array

    @property
    def dtype(self):
        return self.array.dtype  # numpy's names (float32, bfloat16 via ml_dtypes, int32) are Triton's

    def data_ptr(self) -> int:
        return self.array.ctypes.data

    def untyped_storage(self) -> _Storage:
        return _Storage(self.array)

    def storage_offset(self) -> int:
        return 0

    def size(self):
        return self.array.shape

    def stride(self):
        return tuple(s // self.array.itemsize for s in self.array.strides)

    def new_empty(self, *args, **kwargs) -> "NumpyTensor":
        return NumpyTensor(None)

    def set_(self, storage: _Storage, offset, size, stride) -> "NumpyTensor":
        self.array = storage.array
        return self

    def copy_(self, other) -> "NumpyTensor":
        return self


_twins: dict[int, object] = {}


def _twin(jit_fn):
    from triton.runtime.interpreter import InterpretedFunction, _patch_lang

    class _LibFunction(InterpretedFunction):
        def __call__(self, *args, **kwargs):
            scope = _patch_lang(self.fn)
            try:
                return self.rewrite()(*args, **kwargs)
            finally:
                scope.restore()

    t = _twins.get(id(jit_fn))
    if t is None:
        t = _twins[id(jit_fn)] = _LibFunction(jit_fn.fn)
    return t


def _bf16_dot(original):
    """Triton 3.9's interpreter multiplies bf16 dot operands as their raw uint16 storage.
    Widen them to fp32 first, as the tensor cores do (bf16 products are exact in fp32,
    accumulated in fp32)."""
    import triton.language as tl
    from triton.runtime.interpreter import TensorHandle

    def widen(h):
        if h.dtype.scalar == tl.bfloat16:
            return TensorHandle((h.data.astype(np.uint32) << 16).view(np.float32), tl.float32)
        return h

    def create_dot(a, b, d, input_precision, max_num_imprecise_acc):
        return original(widen(a), widen(b), d, input_precision, max_num_imprecise_acc)

    return create_dot


@contextlib.contextmanager
def interpreted_library():
    """Swap triton.language's JITFunctions for interpreted twins while a kernel runs
    (and widen bf16 dot operands, see _bf16_dot)."""
    # Triton imports gluon lazily, and gluon asserts that tl's functions are JITFunctions: import it first
    import triton.experimental.gluon  # noqa: F401
    from triton.runtime.interpreter import interpreter_builder
    from triton.runtime.jit import JITFunction

    interpreter_builder.create_dot = _bf16_dot(type(interpreter_builder).create_dot.__get__(interpreter_builder))
    saved = []
    for name, mod in list(sys.modules.items()):
        if mod is None or not (name == "triton.language" or name.startswith("triton.language.")):
            continue
        for attr, val in list(vars(mod).items()):
            if isinstance(val, JITFunction):
                saved.append((mod, attr, val))
                setattr(mod, attr, _twin(val))
    try:
        yield
    finally:
        for mod, attr, val in reversed(saved):
            setattr(mod, attr, val)
        del interpreter_builder.create_dot


def run(spec: KernelSpec, values: dict, **constexprs) -> None:
    """Launch the spec's kernel under the interpreter. `values` maps each argument name
    to a numpy array (pointers, written in place) or a Python number."""
    from . import loader

    fn = loader.load(spec, interpret=True)
    consts = {**spec.constexprs, **constexprs}
    call = []
    for a in spec.args:
        v = values[a.name]
        if a.is_pointer:
            if not isinstance(v, np.ndarray):
                raise TypeError(f"{spec.name}: argument {a.name} must be a numpy array")
            if not v.flags.c_contiguous:
                raise ValueError(f"{spec.name}: argument {a.name} must be C-contiguous")
            call.append(NumpyTensor(v))
        else:
            call.append(v)
    sizes = {a.name: values[a.name] for a in spec.args if not a.is_pointer}
    grid = spec.grid_for(**sizes, **consts)
    # masked-off lanes compute on padding (log(0), 0/0, ...) by design, as on a GPU
    with interpreted_library(), np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        fn[grid](*call, **consts)
