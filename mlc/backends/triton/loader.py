"""Generated source -> a module file in the cache dir -> the imported kernel.

The text written here is exactly what Triton compiles (and what `--emit triton`
prints): Triton reads a kernel's source from its file. A module is imported
either for real compilation (a JITFunction) or for Triton's interpreter (an
InterpretedFunction, chosen at decoration time), under different module names.
"""
from __future__ import annotations

import hashlib
import importlib.util
import os
import sys
from pathlib import Path

from .spec import KernelSpec

_modules: dict[str, object] = {}


def cache_dir() -> Path:
    """$MLC_CACHE_DIR/triton, default ~/.cache/mlc/triton."""
    root = os.environ.get("MLC_CACHE_DIR") or os.path.join(os.path.expanduser("~"), ".cache", "mlc")
    return Path(root) / "triton"


def _write_atomic(path: Path, data: bytes):
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def source_path(spec: KernelSpec) -> Path:
    digest = hashlib.sha256(spec.source.encode()).hexdigest()[:16]
    path = cache_dir() / "src" / f"{spec.name}_{digest}.py"
    if not path.exists() or path.read_text() != spec.source:
        _write_atomic(path, spec.source.encode())
    return path


def load(spec: KernelSpec, interpret: bool = False):
    """The kernel function of this spec (a JITFunction, or an InterpretedFunction)."""
    import triton

    path = source_path(spec)
    modname = f"mlc_triton_{path.stem}" + ("_interp" if interpret else "")
    mod = _modules.get(str(path) + str(interpret))
    if mod is None:
        with triton.knobs.runtime.scope():
            triton.knobs.runtime.interpret = interpret
            ms = importlib.util.spec_from_file_location(modname, path)
            mod = importlib.util.module_from_spec(ms)
            sys.modules[modname] = mod
            ms.loader.exec_module(mod)
        _modules[str(path) + str(interpret)] = mod
    return getattr(mod, spec.name)
