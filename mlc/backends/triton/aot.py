"""Ahead-of-time compilation of generated kernels to PTX and cubin, without a GPU.

`triton.compile(ASTSource(fn, signature, constexprs), target=GPUTarget("cuda",
cc, 32))` runs Triton's whole pipeline (TTIR -> TTGIR -> LLIR -> PTX -> cubin
with the bundled ptxas) on a CPU-only machine. Results are cached on disk under
`cache_dir()/aot/<key>/`, keyed by a hash of the source, the signature, the
constants, the options, the target and the Triton version; Triton's own cache
is kept under `cache_dir()/triton` so nothing is written to ~/.triton.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from . import loader
from .spec import KernelSpec

FP_FUSION = True  # Triton's default, stated explicitly (Triton 3.9 warns when it is left implicit)
NUM_STAGES = 3


def parse_arch(arch) -> int:
    """'sm_90' | 'sm_80' | 90 -> compute capability as an int."""
    if isinstance(arch, int):
        return arch
    a = str(arch).lower().removeprefix("sm_").removeprefix("sm").rstrip("a")
    if not a.isdigit():
        raise ValueError(f"unknown GPU architecture `{arch}` (expected sm_80, sm_90, ...)")
    return int(a)


def arch_name(arch) -> str:
    return f"sm_{parse_arch(arch)}"


@dataclass
class Compiled:
    name: str
    arch: str
    ptx: str
    cubin: bytes
    metadata: dict = field(default_factory=dict)
    cache_hit: bool = False
    path: Path | None = None


def cache_key(spec: KernelSpec, arch) -> str:
    import triton
    blob = json.dumps({"spec": spec.key, "arch": parse_arch(arch), "triton": triton.__version__,
                       "options": {"num_warps": spec.num_warps, "num_stages": NUM_STAGES,
                                   "enable_fp_fusion": FP_FUSION}}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()


def compile_spec(spec: KernelSpec, arch="sm_90") -> Compiled:
    """PTX and cubin for one kernel and one architecture (from the cache when there)."""
    cc = parse_arch(arch)
    key = cache_key(spec, cc)
    d = loader.cache_dir() / "aot" / key
    meta_path = d / "meta.json"
    if meta_path.exists():
        meta = json.loads(meta_path.read_text())
        return Compiled(spec.name, arch_name(cc), (d / "kernel.ptx").read_text(), (d / "kernel.cubin").read_bytes(),
                        meta, cache_hit=True, path=d)

    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    fn = loader.load(spec, interpret=False)
    src = ASTSource(fn, spec.signature, dict(spec.constexprs))
    options = {"num_warps": spec.num_warps, "num_stages": NUM_STAGES, "enable_fp_fusion": FP_FUSION}
    with triton.knobs.cache.scope():
        triton.knobs.cache.dir = str(loader.cache_dir() / "triton")
        kernel = triton.compile(src, target=GPUTarget("cuda", cc, 32), options=options)
    ptx, cubin = kernel.asm["ptx"], kernel.asm["cubin"]
    md = kernel.metadata
    meta = {"name": md.name, "arch": arch_name(cc), "shared": md.shared, "num_warps": md.num_warps,
            "num_stages": NUM_STAGES, "triton": triton.__version__, "signature": spec.signature,
            "constexprs": spec.constexprs, "grid": list(spec.grid)}
    tmp = d.with_name(f".{key}.{os.getpid()}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    (tmp / "kernel.ptx").write_text(ptx)
    (tmp / "kernel.cubin").write_bytes(cubin)
    (tmp / "source.py").write_text(spec.source)
    (tmp / "meta.json").write_text(json.dumps(meta, indent=1))
    try:
        os.replace(tmp, d)
    except OSError:  # another process got there first: its result is as good
        shutil.rmtree(tmp, ignore_errors=True)
    return Compiled(spec.name, arch_name(cc), ptx, cubin, meta, cache_hit=False, path=d)
